"""How the API describes itself (drf-spectacular): the error responses of every operation.

Each operation's error responses are derived here from what the view can answer, so an endpoint
cannot be added without them: 401 (with WWW-Authenticate) unless the view allows anyone, 403
for authenticated views, 404 where the path names an object or the list can be paged, 400 for
writes and filtered lists, 429 (with Retry-After) everywhere, and 409/413 where a view declares
them in `problem_codes` (503 where a storage fault can refuse an upload).
"""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from cases.api.problems import PROBLEM_CONTENT_TYPE


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details: the body of every error answer."""

    type = serializers.CharField(
        required=False, help_text="A URI naming the kind of problem (absent: about:blank)."
    )
    title = serializers.CharField(help_text="The HTTP status phrase.")
    status = serializers.IntegerField(help_text="The HTTP status code.")
    detail = serializers.CharField(help_text="What went wrong, for a person to read.")
    errors = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        help_text="Per-field messages (400 only): field name -> list of messages.",
    )


_DESCRIPTIONS = {
    400: "Invalid request: per-field messages in `errors`.",
    401: "No valid credentials: send `Authorization: Token <key>` or a session cookie.",
    403: "Authenticated, but this role may not do this.",
    404: "No such object among the caller's sites (another site's object answers 404 too), "
    "or no such page.",
    409: "The object's state does not allow this now (signed-off and locked, not claimed, "
    "claimed by another reviewer, still analysing).",
    413: "The request body is larger than the upload limits.",
    429: "Too many requests: retry after `Retry-After` seconds.",
    503: "Storage refused the files (read-only or full); nothing was kept: send them again "
    "after `Retry-After` seconds.",
}
_HEADERS = {
    401: {"WWW-Authenticate": "The scheme to authenticate with (`Token`)."},
    429: {"Retry-After": "Seconds to wait before the next request."},
    503: {"Retry-After": "Seconds to wait before sending the files again."},
}


class ProblemAutoSchema(AutoSchema):
    def _error_codes(self) -> list[int]:
        view = self.view
        anyone = any(p is AllowAny for p in getattr(view, "permission_classes", []))
        is_list = self._is_list_view()
        codes = {429}
        if not anyone:
            codes |= {401, 403}
        if self.method in ("POST", "PUT", "PATCH") or is_list:
            codes.add(400)
        if "{" in self.path or is_list:
            codes.add(404)
        codes |= set(getattr(view, "problem_codes", ()))
        return sorted(codes)

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_codes():
            entry = self._get_response_for_code(
                ProblemSerializer, str(code), media_types=[PROBLEM_CONTENT_TYPE]
            )
            entry["description"] = _DESCRIPTIONS[code]
            if code in _HEADERS:
                entry["headers"] = {
                    name: {"schema": {"type": "string"}, "description": text}
                    for name, text in _HEADERS[code].items()
                }
            responses.setdefault(str(code), entry)
        return responses


def id_parameter(name: str, what: str) -> OpenApiParameter:
    return OpenApiParameter(name, int, OpenApiParameter.PATH, description=f"The {what}'s id.")
