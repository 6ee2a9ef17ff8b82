"""REST API: thin views over the same selectors and services as the pages.

Scoping answers 404 for another site's object; roles answer 403 (Django's PermissionDenied and
Http404 are turned into DRF responses by DRF's exception handler).
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

from cases.access import require_writer
from cases.api.serializers import (
    CaseInSerializer,
    CaseOutSerializer,
    ImageOutSerializer,
    PatientInSerializer,
    PatientOutSerializer,
    UploadInSerializer,
)
from cases.intake import selectors, services
from cases.intake.files import IMAGE_FILES, stream_private_file
from cases.intake.presenters import case_status_payload


def _paginated(request: Request, queryset, serializer_class) -> Response:
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(queryset, request)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


def _as_api_error(exc: DjangoValidationError) -> serializers.ValidationError:
    detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
    return serializers.ValidationError(detail)


@api_view(["GET", "POST"])
def patient_list(request: Request) -> Response:
    if request.method == "GET":
        patients = selectors.patients_visible(request.user)
        return _paginated(request, patients, PatientOutSerializer)
    require_writer(request.user)
    data = PatientInSerializer(data=request.data, user=request.user)
    data.is_valid(raise_exception=True)
    try:
        patient = services.patient_create(by=request.user, **data.validated_data)
    except DjangoValidationError as exc:
        raise _as_api_error(exc) from exc
    return Response(PatientOutSerializer(patient).data, status=status.HTTP_201_CREATED)


@api_view(["GET", "POST"])
def case_list(request: Request) -> Response:
    if request.method == "GET":
        cases = selectors.case_list(
            request.user,
            search=request.query_params.get("search", ""),
            status=request.query_params.get("status", ""),
        )
        return _paginated(request, cases, CaseOutSerializer)
    require_writer(request.user)
    data = CaseInSerializer(data=request.data, user=request.user)
    data.is_valid(raise_exception=True)
    case = services.case_create(by=request.user, **data.validated_data)
    return Response(CaseOutSerializer(case).data, status=status.HTTP_201_CREATED)


@api_view(["GET"])
def case_detail(request: Request, case_id: int) -> Response:
    case = selectors.case_get(request.user, case_id)
    progress = case_status_payload(case, with_images=False)
    return Response({**CaseOutSerializer(case).data, **progress})


@api_view(["GET", "POST"])
def case_images(request: Request, case_id: int) -> Response:
    case = selectors.case_get(request.user, case_id)
    if request.method == "GET":
        return _paginated(request, selectors.case_images(case), ImageOutSerializer)
    require_writer(request.user)
    options = UploadInSerializer(data=request.data)
    options.is_valid(raise_exception=True)
    files = request.FILES.getlist("files")
    if not files:
        raise serializers.ValidationError({"files": ["Send one or more files as 'files'."]})
    try:
        outcome = services.images_add(
            case=case,
            files=[(f.name, f.read()) for f in files],
            by=request.user,
            kind=options.validated_data["kind"],
        )
    except DjangoValidationError as exc:
        raise _as_api_error(exc) from exc
    if outcome.stored:
        code = status.HTTP_201_CREATED
    elif outcome.rejected:
        code = status.HTTP_400_BAD_REQUEST
    else:  # only duplicates: nothing new, nothing wrong
        code = status.HTTP_200_OK
    return Response(outcome.as_dict(), status=code)


@api_view(["GET"])
def image_detail(request: Request, image_id: int) -> Response:
    image = selectors.image_get(request.user, image_id)
    return Response(ImageOutSerializer(image).data)


@api_view(["GET"])
def image_content(request: Request, image_id: int, which: str):
    """The upload, overlay or bare heatmap of an image, for API clients (token auth works too)."""
    image = selectors.image_get(request.user, image_id)
    return stream_private_file(IMAGE_FILES[which](image))
