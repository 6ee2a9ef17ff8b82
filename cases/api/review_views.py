"""REST API v1, review workflow: the queue, claim/release, decisions, confirm-remaining,
sign-off, send-back and reopen. Every rule (roles, four-eyes, claims, states) is the services';
the views only fetch the case through the site-scoped selector first (404 outside the caller's
sites) and, for reads the review page alone offers, ask the same role question the page asks."""

from django.core.exceptions import PermissionDenied
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response

from cases.access import is_admin, is_reviewer
from cases.api.base import ApiListView, ApiView
from cases.api.serializers import CaseOutSerializer
from cases.api.shapes import (
    ConfirmRemainingPreviewSerializer,
    ConfirmRemainingSerializer,
    CountSerializer,
    DecisionSerializer,
    QueueCaseSerializer,
    ReasonSerializer,
    ReviewSerializer,
    SignOffSerializer,
)
from cases.intake.selectors import case_get, image_get
from cases.models import Prediction
from cases.review import services as reviews
from cases.review.selectors import (
    case_images_with_reviews,
    high_confidence_pending,
    review_queue,
)


def _require_reviewer_role(user) -> None:
    """The review pages' own question (cases.review.views): reviewers only."""
    if not is_reviewer(user):
        raise PermissionDenied("Only reviewers can review cases.")


def _case(request: Request, case_id: int):
    return CaseOutSerializer(case_get(request.user, case_id)).data


class ReviewQueue(ApiListView):
    serializer_class = QueueCaseSerializer
    filter_backends = [OrderingFilter]
    ordering_fields = ["created_at", "id", "urgency"]

    def get_queryset(self):
        _require_reviewer_role(self.request.user)
        return review_queue(self.request.user)

    @extend_schema(summary="Cases awaiting review, most urgent first (reviewers)", tags=["review"])
    def get(self, request: Request) -> Response:
        return self.list(request)


def _require_admin_role(user) -> None:
    """The reopen page's own question (cases.review.views.reopen): lab admins only."""
    if not is_admin(user):
        raise PermissionDenied("Only an admin can reopen a signed-off case.")


class _CaseAction(ApiView):
    serializer_class = CaseOutSerializer
    problem_codes = (409,)
    service = None
    role_check = staticmethod(_require_reviewer_role)

    def post(self, request: Request, case_id: int) -> Response:
        case = case_get(request.user, case_id)
        type(self).role_check(request.user)
        type(self).service(case=case, by=request.user, **self.arguments(request))
        return Response(_case(request, case_id))

    def arguments(self, request: Request) -> dict:
        return {}


def _with_body(serializer_class):
    def arguments(self, request: Request) -> dict:
        data = serializer_class(data=request.data)
        data.is_valid(raise_exception=True)
        return dict(data.validated_data)

    return arguments


def _action(name: str, service, summary: str, body=None, role_check=None) -> type:
    attrs = {"service": staticmethod(service), "__doc__": summary}
    if role_check is not None:
        attrs["role_check"] = staticmethod(role_check)
    if body is not None:
        attrs["arguments"] = _with_body(body)
    view = type(name, (_CaseAction,), attrs)
    view.post = extend_schema(
        summary=summary, tags=["review"], request=body, responses={200: CaseOutSerializer}
    )(view.post)
    return view


CaseClaim = _action(
    "CaseClaim", reviews.review_claim, "Claim a case awaiting review (reviewers; 409 if taken)"
)
CaseRelease = _action(
    "CaseRelease", reviews.review_release, "Give a claimed case back (its reviewer, or an admin)"
)
CaseSignOff = _action(
    "CaseSignOff",
    reviews.case_sign_off,
    "Sign the case off with a final diagnosis (the claiming reviewer; locks the case)",
    SignOffSerializer,
)
CaseSendBack = _action(
    "CaseSendBack",
    reviews.case_send_back,
    "Send the case back to its clinician with a reason (reviewers)",
    ReasonSerializer,
)
CaseReopen = _action(
    "CaseReopen",
    reviews.case_reopen,
    "Reopen a signed-off case with a reason (lab admins)",
    ReasonSerializer,
    _require_admin_role,
)


class CaseConfirmRemaining(ApiView):
    serializer_class = ConfirmRemainingSerializer
    problem_codes = (409,)

    @extend_schema(
        summary="What 'confirm all remaining' would confirm (reviewers)",
        tags=["review"],
        responses={200: ConfirmRemainingPreviewSerializer},
    )
    def get(self, request: Request, case_id: int) -> Response:
        case = case_get(request.user, case_id)
        _require_reviewer_role(request.user)
        images = high_confidence_pending(case_images_with_reviews(case))
        return Response(
            {
                "count": len(images),
                "positives": sum(
                    img.prediction.label == Prediction.Label.PARASITIZED for img in images
                ),
                "images": [img.pk for img in images],
            }
        )

    @extend_schema(
        summary="Confirm every unreviewed high-confidence result (the claiming reviewer)",
        tags=["review"],
        request=ConfirmRemainingSerializer,
        responses={200: CountSerializer},
    )
    def post(self, request: Request, case_id: int) -> Response:
        case = case_get(request.user, case_id)
        _require_reviewer_role(request.user)
        data = ConfirmRemainingSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        count = reviews.review_confirm_remaining(
            case=case, by=request.user, expected=data.validated_data["expected"]
        )
        return Response({"count": count})


class ImageReviews(ApiListView):
    """An image's reviews (newest first), and a reviewer's decision on it."""

    serializer_class = ReviewSerializer
    filter_backends = [OrderingFilter]
    ordering_fields = ["created_at", "id"]
    problem_codes = (409,)

    def get_queryset(self):
        image = image_get(self.request.user, self.kwargs["image_id"])
        return image.reviews.select_related("reviewer").order_by("-created_at", "-id")

    @extend_schema(summary="The image's reviews, newest first", tags=["review"])
    def get(self, request: Request, image_id: int) -> Response:
        return self.list(request)

    @extend_schema(
        summary="Confirm the model's label or override it with a reason (the claiming reviewer)",
        tags=["review"],
        request=DecisionSerializer,
        responses={201: ReviewSerializer},
    )
    def post(self, request: Request, image_id: int) -> Response:
        image = image_get(request.user, image_id)
        data = DecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        review = reviews.review_submit(image=image, by=request.user, **data.validated_data)
        return Response(ReviewSerializer(review).data, status=status.HTTP_201_CREATED)
