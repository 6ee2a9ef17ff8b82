"""What every API v1 view shares: query-parameter filters validated by a serializer, lists of
plain Python objects paged like querysets, and a renderer for endpoints that stream files."""

from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response


class ApiView(GenericAPIView):
    """A v1 view. `problem_codes` adds statuses to the documented error answers
    (cases.api.schema.ProblemAutoSchema); `filter_serializer` validates query parameters."""

    problem_codes: tuple[int, ...] = ()
    filter_serializer = None

    def query(self) -> dict:
        """The validated query parameters (400 with per-field errors when invalid)."""
        if self.filter_serializer is None:
            return {}
        params = self.filter_serializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return {k: v for k, v in params.validated_data.items() if v not in (None, "")}


class ApiListView(ListModelMixin, ApiView):
    """A paged list: `get_queryset` (a site-scoped selector, filtered by `query()`), ordered by
    `?ordering=` among `ordering_fields`, serialized by `serializer_class`."""

    def get(self, request: Request, *args, **kwargs) -> Response:
        return self.list(request, *args, **kwargs)


class AnyMediaJSONRenderer(JSONRenderer):
    """For endpoints that answer a file: whatever the client accepts, the file is sent (a
    FileResponse bypasses renderers), and an error still leaves as problem details."""

    media_type = "*/*"
