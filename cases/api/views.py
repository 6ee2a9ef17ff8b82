"""REST API v1, intake: sites, patients, cases, uploads, images and their files, fields.

Thin views over the same selectors and services as the pages: fetch through a site-scoped
selector (404 outside the caller's sites), call one service (which decides 403/409), respond.
Errors leave as problem details (cases.api.problems).
"""

from django.contrib.auth.models import AnonymousUser
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response

from cases.access import require_writer, user_sites
from cases.api.base import AnyMediaJSONRenderer, ApiListView, ApiView
from cases.api.problems import PayloadTooLarge, problem_response
from cases.api.serializers import (
    CaseInSerializer,
    CaseOutSerializer,
    PatientInSerializer,
    PatientOutSerializer,
)
from cases.api.shapes import (
    CaseFilter,
    CaseNotesSerializer,
    CaseProgressSerializer,
    CellAddSerializer,
    FieldSerializer,
    FieldSummarySerializer,
    HistoryEventSerializer,
    PatientFilter,
    RedCellCountSerializer,
    ResultFilter,
    ResultSerializer,
    ReviewCountsSerializer,
    SiteSerializer,
    UploadOutcomeSerializer,
    UploadSerializer,
)
from cases.fields import services as field_services
from cases.fields.selectors import case_fields_panel, field_get, field_payload
from cases.intake import selectors, services
from cases.intake.files import IMAGE_FILES, stream_private_file
from cases.intake.limits import upload_request_refusal
from cases.intake.presenters import case_status_payload
from cases.models import Review
from cases.review.selectors import case_review_counts
from cases.storage import StorageUnavailable

IMAGE_TYPES = ("image/png", "image/jpeg", "image/tiff", "image/bmp")
# Seconds an uploader is asked to wait after a storage fault before sending the files again.
STORAGE_RETRY_AFTER = 60


class PatientCreateSerializer(PatientInSerializer):
    """The patient input, scoped to the caller's sites (a schema without a caller: none)."""

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, user=user or AnonymousUser(), **kwargs)


class CaseCreateSerializer(CaseInSerializer):
    """The case input, scoped to the caller's patients (a schema without a caller: none)."""

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, user=user or AnonymousUser(), **kwargs)


# --- Sites and patients ----------------------------------------------------------------------


class SiteList(ApiListView):
    serializer_class = SiteSerializer
    filter_backends = [OrderingFilter]
    ordering_fields = ["name", "code", "id"]

    def get_queryset(self):
        return user_sites(self.request.user).order_by("name", "id")

    @extend_schema(summary="The caller's sites", tags=["sites"])
    def get(self, request: Request) -> Response:
        return self.list(request)


class SiteDetail(ApiView):
    serializer_class = SiteSerializer

    @extend_schema(summary="One of the caller's sites", tags=["sites"])
    def get(self, request: Request, site_id: int) -> Response:
        site = get_object_or_404(user_sites(request.user), pk=site_id)
        return Response(SiteSerializer(site).data)


class PatientList(ApiListView):
    serializer_class = PatientOutSerializer
    filter_backends = [OrderingFilter]
    ordering_fields = ["identifier", "created_at", "id"]
    filter_serializer = PatientFilter

    def get_queryset(self):
        patients = selectors.patients_visible(self.request.user).order_by("identifier", "id")
        wanted = self.query()
        if "site" in wanted:
            patients = patients.filter(site_id=wanted["site"])
        if "identifier" in wanted:
            patients = patients.filter(identifier__icontains=wanted["identifier"].strip())
        return patients

    @extend_schema(
        summary="Patients of the caller's sites", tags=["patients"], parameters=[PatientFilter]
    )
    def get(self, request: Request) -> Response:
        return self.list(request)

    @extend_schema(
        summary="Create a patient (clinicians, lab admins)",
        tags=["patients"],
        request=PatientCreateSerializer,
        responses={201: PatientOutSerializer},
    )
    def post(self, request: Request) -> Response:
        require_writer(request.user)
        data = PatientCreateSerializer(data=request.data, user=request.user)
        data.is_valid(raise_exception=True)
        patient = services.patient_create(by=request.user, **data.validated_data)
        return Response(PatientOutSerializer(patient).data, status=status.HTTP_201_CREATED)


class PatientDetail(ApiView):
    serializer_class = PatientOutSerializer

    @extend_schema(summary="One patient", tags=["patients"])
    def get(self, request: Request, patient_id: int) -> Response:
        return Response(PatientOutSerializer(selectors.patient_get(request.user, patient_id)).data)


# --- Cases -----------------------------------------------------------------------------------


class CaseList(ApiListView):
    serializer_class = CaseOutSerializer
    filter_backends = [OrderingFilter]
    ordering_fields = ["created_at", "updated_at", "status", "id"]
    filter_serializer = CaseFilter

    def get_queryset(self):
        wanted = self.query()
        cases = selectors.case_list(
            self.request.user,
            search=wanted.get("patient_identifier", ""),
            status=wanted.get("status", ""),
        ).select_related("signed_off_by")
        if "site" in wanted:
            cases = cases.filter(patient__site_id=wanted["site"])
        if "patient" in wanted:
            cases = cases.filter(patient_id=wanted["patient"])
        if "diagnosis" in wanted:
            cases = cases.filter(final_diagnosis=wanted["diagnosis"])
        if "created_after" in wanted:
            cases = cases.filter(created_at__date__gte=wanted["created_after"])
        if "created_before" in wanted:
            cases = cases.filter(created_at__date__lte=wanted["created_before"])
        return cases

    @extend_schema(summary="Cases of the caller's sites", tags=["cases"], parameters=[CaseFilter])
    def get(self, request: Request) -> Response:
        return self.list(request)

    @extend_schema(
        summary="Create a case for a patient (clinicians, lab admins)",
        tags=["cases"],
        request=CaseCreateSerializer,
        responses={201: CaseOutSerializer},
    )
    def post(self, request: Request) -> Response:
        require_writer(request.user)
        data = CaseCreateSerializer(data=request.data, user=request.user)
        data.is_valid(raise_exception=True)
        case = services.case_create(by=request.user, **data.validated_data)
        return Response(CaseOutSerializer(case).data, status=status.HTTP_201_CREATED)


class CaseDetailSerializer(CaseOutSerializer, CaseProgressSerializer):
    """A case, its progress and the AI's counts (the case page's status.json without images)."""

    assigned_reviewer = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    def to_representation(self, instance) -> dict:
        data = CaseOutSerializer(instance).data
        progress = case_status_payload(instance, with_images=False)
        return {
            **data,
            "domain_status": instance.domain_status,
            "red_cells_per_ul": instance.red_cells_per_ul,
            "assigned_reviewer": instance.assigned_reviewer.get_username()
            if instance.assigned_reviewer_id
            else None,
            **{k: progress[k] for k in ("status_label", "done", "counts", "summary", "headline")},
        }

    class Meta(CaseOutSerializer.Meta):
        fields = [
            *CaseOutSerializer.Meta.fields,
            "domain_status",
            "red_cells_per_ul",
            "assigned_reviewer",
            "status_label",
            "done",
            "counts",
            "summary",
            "headline",
        ]


def _case_detail(case) -> dict:
    return CaseDetailSerializer(case).data


class CaseDetail(ApiView):
    serializer_class = CaseDetailSerializer
    problem_codes = (409,)

    @extend_schema(summary="A case with its progress and counts", tags=["cases"])
    def get(self, request: Request, case_id: int) -> Response:
        return Response(_case_detail(selectors.case_get(request.user, case_id)))

    @extend_schema(
        summary="Change the clinical notes (clinicians, lab admins; 409 once signed off)",
        tags=["cases"],
        request=CaseNotesSerializer,
        responses={200: CaseDetailSerializer},
    )
    def patch(self, request: Request, case_id: int) -> Response:
        case = selectors.case_get(request.user, case_id)
        require_writer(request.user)
        data = CaseNotesSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        case = services.case_update(case=case, by=request.user, **data.validated_data)
        return Response(_case_detail(selectors.case_get(request.user, case.pk)))


class CaseRedCellCount(ApiView):
    serializer_class = RedCellCountSerializer
    problem_codes = (409,)

    @extend_schema(
        summary="Set or clear the red-cell count per µL (clinicians, reviewers, lab admins)",
        tags=["cases"],
        request=RedCellCountSerializer,
        responses={200: RedCellCountSerializer},
    )
    def put(self, request: Request, case_id: int) -> Response:
        case = selectors.case_get(request.user, case_id)
        data = RedCellCountSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        case = field_services.case_set_red_cell_count(
            case=case, by=request.user, red_cells_per_ul=data.validated_data["red_cells_per_ul"]
        )
        return Response({"red_cells_per_ul": case.red_cells_per_ul})


class CaseHistory(ApiListView):
    """The case page's history: its audit events, newest first."""

    serializer_class = HistoryEventSerializer
    filter_backends = [OrderingFilter]
    ordering_fields = ["seq", "created_at"]

    def get_queryset(self):
        case = selectors.case_get(self.request.user, self.kwargs["case_id"])
        return selectors.case_history(case)

    @extend_schema(summary="The case's history (audit events)", tags=["cases"])
    def get(self, request: Request, case_id: int) -> Response:
        return self.list(request)


class CaseReviewCounts(ApiView):
    serializer_class = ReviewCountsSerializer

    @extend_schema(summary="The AI's and the reviewers' counts of a case", tags=["review"])
    def get(self, request: Request, case_id: int) -> Response:
        counts = case_review_counts(selectors.case_get(request.user, case_id))
        return Response(ReviewCountsSerializer(counts).data)


# --- Images and their results ----------------------------------------------------------------


def _with_reviews(images):
    reviews = Review.objects.select_related("reviewer").order_by("-created_at", "-id")
    return images.prefetch_related(Prefetch("reviews", queryset=reviews, to_attr="review_history"))


class CaseImages(ApiListView):
    """The case's results list, and its batch upload."""

    serializer_class = ResultSerializer
    filter_backends = [OrderingFilter]
    ordering_fields = ["id", "created_at", "status", "prediction__probability"]
    filter_serializer = ResultFilter
    problem_codes = (409, 413, 503)

    def get_queryset(self):
        case = selectors.case_get(self.request.user, self.kwargs["case_id"])
        images = _with_reviews(selectors.case_images(case).select_related("case"))
        wanted = self.query()
        for name in ("status", "kind"):
            if name in wanted:
                images = images.filter(**{name: wanted[name]})
        if "label" in wanted:
            images = images.filter(prediction__label=wanted["label"])
        if "quality_ok" in wanted:
            images = images.filter(prediction__quality_ok=wanted["quality_ok"])
        return images

    @extend_schema(
        summary="The case's images with their analysis results",
        tags=["images"],
        parameters=[ResultFilter],
    )
    def get(self, request: Request, case_id: int) -> Response:
        return self.list(request)

    @extend_schema(
        summary="Upload images or zip archives (clinicians, lab admins)",
        description="Each file stands or falls on its own: 201 when at least one was stored, "
        "200 when all were already in the case, 400 (with the same per-file lists) when none "
        "was accepted. A signed-off case answers 409. A storage fault (read-only or full disk) "
        "answers 503 with Retry-After and keeps nothing of the request: send it again later.",
        tags=["images"],
        request={"multipart/form-data": UploadSerializer},
        responses={201: UploadOutcomeSerializer, 200: UploadOutcomeSerializer},
    )
    def post(self, request: Request, case_id: int) -> Response:
        refused = upload_request_refusal(request)  # also the middleware's rule; never read past it
        if refused:
            raise PayloadTooLarge(refused)
        case = selectors.case_get(request.user, case_id)
        require_writer(request.user)
        data = UploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            outcome = services.images_add(
                case=case,
                files=[(f.name, f) for f in data.validated_data["files"]],  # streamed
                by=request.user,
                kind=data.validated_data["kind"],
            )
        except StorageUnavailable as exc:
            response = problem_response(
                503, services.storage_fault_message(exc), code="storage_unavailable"
            )
            response["Retry-After"] = str(STORAGE_RETRY_AFTER)
            return response
        body = _outcome(outcome)
        if outcome.stored:
            return Response(body, status=status.HTTP_201_CREATED)
        if outcome.rejected:
            detail = f"No file was accepted ({len(outcome.rejected)} rejected)."
            return problem_response(400, detail, code="upload_rejected", **body)
        return Response(body, status=status.HTTP_200_OK)


def _outcome(outcome: services.UploadOutcome) -> dict:
    body = outcome.as_dict()
    body["files"] = (
        [
            {"name": img.original_name, "outcome": "stored", "id": img.pk, "reason": ""}
            for img in outcome.stored
        ]
        + [
            {"name": name, "outcome": "duplicate", "id": None, "reason": ""}
            for name in outcome.duplicates
        ]
        + [
            {"name": r.name, "outcome": "rejected", "id": None, "reason": r.reason}
            for r in outcome.rejected
        ]
        + [
            {"name": s.name, "outcome": "skipped", "id": None, "reason": s.reason}
            for s in outcome.skipped
        ]
    )
    return body


class ImageDetail(ApiView):
    serializer_class = ResultSerializer

    @extend_schema(summary="One image with its analysis result", tags=["images"])
    def get(self, request: Request, image_id: int) -> Response:
        image = selectors.image_get(request.user, image_id)
        image = _with_reviews(selectors.case_images(image.case).select_related("case")).get(
            pk=image.pk
        )
        return Response(ResultSerializer(image).data)


class ImageContent(ApiView):
    """The upload, the Grad-CAM overlay or the bare heatmap, through the permission check."""

    renderer_classes = [AnyMediaJSONRenderer]

    @extend_schema(
        operation_id="images_file_retrieve",
        summary="An image's file, overlay or heatmap",
        tags=["images"],
        responses={
            (200, media): OpenApiResponse(OpenApiTypes.BINARY, description="The file.")
            for media in IMAGE_TYPES
        },
    )
    def get(self, request: Request, image_id: int, which: str):
        image = selectors.image_get(request.user, image_id)
        return stream_private_file(IMAGE_FILES[which](image))


# --- Fields: whole-field photographs and their detected cells -------------------------------


class CaseFields(ApiListView):
    serializer_class = FieldSummarySerializer

    def get_queryset(self):
        case = selectors.case_get(self.request.user, self.kwargs["case_id"])
        return case_fields_panel(case)["fields"]

    @extend_schema(summary="The case's field photographs with their counts", tags=["fields"])
    def get(self, request: Request, case_id: int) -> Response:
        return self.list(request)


class FieldDetail(ApiView):
    serializer_class = FieldSerializer

    @extend_schema(summary="A field photograph with its detected cells", tags=["fields"])
    def get(self, request: Request, field_id: int) -> Response:
        return Response(field_payload(field_get(request.user, field_id)))


class FieldCellAdd(ApiView):
    serializer_class = CellAddSerializer
    problem_codes = (409,)

    @extend_schema(
        summary="Add a missed cell (the claiming reviewer)",
        tags=["fields"],
        request=CellAddSerializer,
        responses={201: FieldSerializer},
    )
    def post(self, request: Request, field_id: int) -> Response:
        field = field_get(request.user, field_id)
        data = CellAddSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        field_services.cell_add(field=field, by=request.user, **data.validated_data)
        return Response(field_payload(field), status=status.HTTP_201_CREATED)


class CellRemoval(ApiView):
    """Remove a false detection (POST) or restore it (DELETE): the claiming reviewer."""

    serializer_class = FieldSerializer
    problem_codes = (409,)

    def _apply(self, request: Request, image_id: int, service) -> Response:
        cell = selectors.image_get(request.user, image_id)
        if cell.parent_id is None:
            return problem_response(404, "Not a cell of a field photograph.")
        field = field_get(request.user, cell.parent_id)
        service(cell=cell, by=request.user)
        return Response(field_payload(field))

    @extend_schema(
        summary="Remove a detected cell from the counts",
        tags=["fields"],
        request=None,
        responses={200: FieldSerializer},
    )
    def post(self, request: Request, image_id: int) -> Response:
        return self._apply(request, image_id, field_services.cell_remove)

    @extend_schema(
        summary="Restore a removed cell",
        tags=["fields"],
        request=None,
        responses={200: FieldSerializer},
    )
    def delete(self, request: Request, image_id: int) -> Response:
        return self._apply(request, image_id, field_services.cell_restore)
