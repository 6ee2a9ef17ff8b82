"""REST API v1, reports: a case's PDF, CSV and FHIR reports, and stored exports of large cases.

The same rules as the pages (cases.review.views): any member of the case's site may read its
reports; a case with more images than REPORT_DIRECT_MAX_IMAGES is rendered by a worker, so its
direct report answers 409 and the client requests an export instead.
"""

from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response

from cases.api.base import AnyMediaJSONRenderer, ApiListView, ApiView
from cases.api.problems import Conflict
from cases.api.shapes import ExportRequestSerializer, ExportSerializer
from cases.intake.selectors import case_get, cases_visible
from cases.models import ReportExport
from cases.reports import documents
from cases.reports import services as reports

REPORT_MEDIA = ("application/pdf", "text/csv", "application/fhir+json")


class CaseReport(ApiView):
    renderer_classes = [AnyMediaJSONRenderer]
    problem_codes = (409,)

    @extend_schema(
        summary="The case's report: pdf, csv or fhir (FHIR R4, signed-off cases only)",
        description="409 when the case is too large to render in the request (request an "
        "export) or when a FHIR report is asked of a case not signed off.",
        tags=["reports"],
        responses={
            (200, media): OpenApiResponse(OpenApiTypes.BINARY, description="The report file.")
            for media in REPORT_MEDIA
        },
    )
    def get(self, request: Request, case_id: int, kind: str) -> HttpResponse:
        case = case_get(request.user, case_id)
        if documents.is_large(case):
            raise Conflict(
                f"This case has more than {documents.REPORT_DIRECT_MAX_IMAGES} images: "
                "request an export (POST .../exports/) and download it when it is ready."
            )
        content = documents.report_render(case, kind)
        response = HttpResponse(content, content_type=documents.CONTENT_TYPES[kind])
        filename = documents.report_filename(case, kind)
        response["Content-Disposition"] = documents.attachment_header(filename)
        return documents.no_store(response)


class CaseExports(ApiListView):
    serializer_class = ExportSerializer
    filter_backends = [OrderingFilter]
    ordering_fields = ["created_at", "id"]
    problem_codes = (409,)

    def get_queryset(self):
        case = case_get(self.request.user, self.kwargs["case_id"])
        return case.report_exports.select_related("created_by").order_by("-created_at", "-id")

    @extend_schema(summary="The case's stored report exports", tags=["reports"])
    def get(self, request: Request, case_id: int) -> Response:
        return self.list(request)

    @extend_schema(
        summary="Request a report export, rendered by a worker (a pending one is reused)",
        tags=["reports"],
        request=ExportRequestSerializer,
        responses={202: ExportSerializer},
    )
    def post(self, request: Request, case_id: int) -> Response:
        case = case_get(request.user, case_id)
        data = ExportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        export = reports.report_export_request(
            case=case, kind=data.validated_data["kind"], by=request.user
        )
        return Response(ExportSerializer(export).data, status=status.HTTP_202_ACCEPTED)


def _exports_visible(user):
    return ReportExport.objects.filter(case__in=cases_visible(user)).select_related(
        "case__patient", "created_by"
    )


class ExportDetail(ApiView):
    serializer_class = ExportSerializer

    @extend_schema(summary="A report export: poll until its status is done", tags=["reports"])
    def get(self, request: Request, export_id: int) -> Response:
        export = get_object_or_404(_exports_visible(request.user), pk=export_id)
        return Response(ExportSerializer(export).data)


class ExportFile(ApiView):
    renderer_classes = [AnyMediaJSONRenderer]

    @extend_schema(
        summary="Download a finished export (404 until it is done)",
        tags=["reports"],
        responses={
            (200, media): OpenApiResponse(OpenApiTypes.BINARY, description="The report file.")
            for media in REPORT_MEDIA
        },
    )
    def get(self, request: Request, export_id: int) -> FileResponse:
        export = get_object_or_404(
            _exports_visible(request.user).filter(status=ReportExport.Status.DONE), pk=export_id
        )
        return documents.export_response(export)
