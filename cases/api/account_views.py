"""REST API v1: the caller (token, me, notifications), the audit trail and the model registry."""

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.filters import OrderingFilter
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from cases.access import is_admin, user_roles, user_sites
from cases.analysis.model_versions import model_activate
from cases.api.base import ApiListView, ApiView
from cases.api.limits import AnonThrottle
from cases.api.problems import PROBLEM_CONTENT_TYPE, problem
from cases.api.schema import ProblemAutoSchema
from cases.api.shapes import (
    AuditFilter,
    CountSerializer,
    HistoryEventSerializer,
    MeSerializer,
    ModelVersionFilter,
    ModelVersionSerializer,
    NotificationFilter,
    NotificationSerializer,
    NotificationsReadSerializer,
    TokenSerializer,
)
from cases.audit import login_guard
from cases.audit.views import GuardedObtainAuthToken
from cases.review import services as reviews
from cases.review.selectors import audit_events_filter, audit_events_visible, notifications_for
from classifier.models import ModelVersion


@extend_schema_view(
    post=extend_schema(
        summary="Obtain an API token (send it as `Authorization: Token <key>`)",
        tags=["auth"],
        request=AuthTokenSerializer,
        responses={200: TokenSerializer},
    )
)
class TokenObtain(GuardedObtainAuthToken):
    """POST a user name and password for an API token, under the log-in page's lockout and
    audit (cases.audit.views). Its answers become problem details here, and a locked name's
    429 says when to retry."""

    schema = ProblemAutoSchema()
    permission_classes = [AllowAny]
    throttle_classes = [AnonThrottle]

    def finalize_response(self, request, response, *args, **kwargs):
        data = response.data if isinstance(response.data, dict) else {}
        if response.status_code >= 400 and "type" not in data:
            if response.status_code == 400:
                body = problem(
                    400,
                    "Wrong user name or password.",
                    code="validation_error",
                    errors={k: [str(m) for m in v] for k, v in data.items()},
                )
            else:
                body = problem(response.status_code, str(data.get("detail", "")))
            if response.status_code == 429 and not response.has_header("Retry-After"):
                response["Retry-After"] = str(60 * _minutes_refused(request))
            response.data = body
            response.content_type = PROBLEM_CONTENT_TYPE
        return super().finalize_response(request, response, *args, **kwargs)


def _minutes_refused(request) -> int:
    data = request.data if hasattr(request.data, "get") else {}
    username = login_guard.canonical_username(data.get("username", ""))
    refused = login_guard.refusal(username, login_guard.client_address(request))
    return refused.minutes if refused else 1


class Me(ApiView):
    serializer_class = MeSerializer

    @extend_schema(summary="The caller: roles and sites", tags=["auth"])
    def get(self, request: Request) -> Response:
        user = request.user
        data = {
            "id": user.pk,
            "username": user.get_username(),
            "roles": sorted(user_roles(user)),
            "sites": user_sites(user).order_by("name", "id"),
            "is_superuser": user.is_superuser,
        }
        return Response(MeSerializer(data).data)


class NotificationList(ApiListView):
    serializer_class = NotificationSerializer
    filter_backends = [OrderingFilter]
    ordering_fields = ["created_at", "id"]
    filter_serializer = NotificationFilter

    def get_queryset(self):
        notes = notifications_for(self.request.user)
        unread = self.query().get("unread")
        if unread is not None:
            notes = notes.filter(read_at__isnull=unread)
        return notes

    @extend_schema(
        summary="The caller's notifications",
        tags=["notifications"],
        parameters=[NotificationFilter],
    )
    def get(self, request: Request) -> Response:
        return self.list(request)


class NotificationsRead(ApiView):
    serializer_class = NotificationsReadSerializer

    @extend_schema(
        summary="Mark the caller's notifications read (all, or the given ids)",
        tags=["notifications"],
        request=NotificationsReadSerializer,
        responses={200: CountSerializer},
    )
    def post(self, request: Request) -> Response:
        data = NotificationsReadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        count = reviews.notifications_mark_read(
            user=request.user, ids=data.validated_data.get("ids")
        )
        return Response({"count": count})


class AuditEventList(ApiListView):
    """The audit trail, as the audit page shows it: lab admins see their sites' events,
    staff the whole trail."""

    serializer_class = HistoryEventSerializer
    filter_backends = [OrderingFilter]
    ordering_fields = ["seq", "created_at"]
    filter_serializer = AuditFilter

    def get_queryset(self):
        user = self.request.user
        if not (is_admin(user) or user.is_staff):
            raise PermissionDenied("Only admins can read the audit trail.")
        wanted = self.query()
        return audit_events_filter(
            audit_events_visible(user),
            action=wanted.get("action", ""),
            user=wanted.get("user", ""),
            date_from=wanted.get("created_after"),
            date_to=wanted.get("created_before"),
            case_id=wanted.get("case"),
        )

    @extend_schema(
        summary="Audit events, newest first (lab admins, staff)",
        tags=["audit"],
        parameters=[AuditFilter],
    )
    def get(self, request: Request) -> Response:
        return self.list(request)


class ModelVersionList(ApiListView):
    serializer_class = ModelVersionSerializer
    filter_backends = [OrderingFilter]
    ordering_fields = ["created_at", "name", "id"]
    filter_serializer = ModelVersionFilter

    def get_queryset(self):
        versions = ModelVersion.objects.order_by("-created_at", "-id")
        wanted = self.query()
        if "kind" in wanted:
            versions = versions.filter(kind=wanted["kind"])
        if wanted.get("is_active") is not None:
            versions = versions.filter(is_active=wanted["is_active"])
        return versions

    @extend_schema(
        summary="Registered model versions", tags=["models"], parameters=[ModelVersionFilter]
    )
    def get(self, request: Request) -> Response:
        return self.list(request)


class ModelVersionDetail(ApiView):
    serializer_class = ModelVersionSerializer

    @extend_schema(summary="One model version", tags=["models"])
    def get(self, request: Request, version_id: int) -> Response:
        return Response(ModelVersionSerializer(get_object_or_404(ModelVersion, pk=version_id)).data)


class ModelVersionActivate(ApiView):
    serializer_class = ModelVersionSerializer

    @extend_schema(
        summary="Make this version the active one of its kind (admins who may change models)",
        description="The same right as the admin site's 'Activate selected version' action: "
        "the `classifier.change_modelversion` permission (superusers hold it).",
        tags=["models"],
        request=None,
        responses={200: ModelVersionSerializer},
    )
    def post(self, request: Request, version_id: int) -> Response:
        version = get_object_or_404(ModelVersion, pk=version_id)
        if not request.user.has_perm("classifier.change_modelversion"):
            raise PermissionDenied("Only admins who may change models can activate one.")
        version = model_activate(version=version, by=request.user)
        return Response(ModelVersionSerializer(version).data)
