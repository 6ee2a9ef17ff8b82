"""API v1 under /api/v1/ (malariaweb.urls): the endpoints, the schema and its documentation."""

from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from cases.api import account_views as account
from cases.api import report_views as report
from cases.api import review_views as review
from cases.api import views as intake
from cases.api.problems import json_problem

CASE = "cases/<int:case_id>/"


@csrf_exempt  # answers every method with 404, never Django's HTML CSRF page
def not_found(request, unmatched: str = ""):
    return json_problem(request, 404, "No such API endpoint.")


urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-v1-schema"),
    # The split view serves its start-up script from a URL: the CSP allows no inline script.
    path(
        "docs/", SpectacularSwaggerSplitView.as_view(url_name="api-v1-schema"), name="api-v1-docs"
    ),
    path("auth/token/", account.TokenObtain.as_view(), name="api-v1-token"),
    path("me/", account.Me.as_view(), name="api-v1-me"),
    path("sites/", intake.SiteList.as_view(), name="api-v1-site-list"),
    path("sites/<int:site_id>/", intake.SiteDetail.as_view(), name="api-v1-site-detail"),
    path("patients/", intake.PatientList.as_view(), name="api-v1-patient-list"),
    path(
        "patients/<int:patient_id>/", intake.PatientDetail.as_view(), name="api-v1-patient-detail"
    ),
    path("cases/", intake.CaseList.as_view(), name="api-v1-case-list"),
    path(CASE, intake.CaseDetail.as_view(), name="api-v1-case-detail"),
    path(CASE + "history/", intake.CaseHistory.as_view(), name="api-v1-case-history"),
    path(CASE + "images/", intake.CaseImages.as_view(), name="api-v1-case-images"),
    path(CASE + "fields/", intake.CaseFields.as_view(), name="api-v1-case-fields"),
    path(CASE + "red-cell-count/", intake.CaseRedCellCount.as_view(), name="api-v1-case-red-cells"),
    path(CASE + "review-counts/", intake.CaseReviewCounts.as_view(), name="api-v1-case-counts"),
    path(CASE + "claim/", review.CaseClaim.as_view(), name="api-v1-case-claim"),
    path(CASE + "release/", review.CaseRelease.as_view(), name="api-v1-case-release"),
    path(
        CASE + "confirm-remaining/",
        review.CaseConfirmRemaining.as_view(),
        name="api-v1-case-confirm-remaining",
    ),
    path(CASE + "sign-off/", review.CaseSignOff.as_view(), name="api-v1-case-sign-off"),
    path(CASE + "send-back/", review.CaseSendBack.as_view(), name="api-v1-case-send-back"),
    path(CASE + "reopen/", review.CaseReopen.as_view(), name="api-v1-case-reopen"),
    re_path(
        r"^cases/(?P<case_id>[0-9]+)/reports/(?P<kind>pdf|csv|fhir)$",
        report.CaseReport.as_view(),
        name="api-v1-case-report",
    ),
    path(CASE + "exports/", report.CaseExports.as_view(), name="api-v1-case-exports"),
    path("exports/<int:export_id>/", report.ExportDetail.as_view(), name="api-v1-export-detail"),
    path("exports/<int:export_id>/file", report.ExportFile.as_view(), name="api-v1-export-file"),
    path("review-queue/", review.ReviewQueue.as_view(), name="api-v1-review-queue"),
    path("images/<int:image_id>/", intake.ImageDetail.as_view(), name="api-v1-image-detail"),
    re_path(
        r"^images/(?P<image_id>[0-9]+)/(?P<which>file|heatmap|heatmap-raw)$",
        intake.ImageContent.as_view(),
        name="api-v1-image-content",
    ),
    path(
        "images/<int:image_id>/reviews/", review.ImageReviews.as_view(), name="api-v1-image-reviews"
    ),
    path(
        "images/<int:image_id>/removal/", intake.CellRemoval.as_view(), name="api-v1-cell-removal"
    ),
    path("fields/<int:field_id>/", intake.FieldDetail.as_view(), name="api-v1-field-detail"),
    path("fields/<int:field_id>/cells/", intake.FieldCellAdd.as_view(), name="api-v1-field-cells"),
    path("notifications/", account.NotificationList.as_view(), name="api-v1-notifications"),
    path(
        "notifications/read/", account.NotificationsRead.as_view(), name="api-v1-notifications-read"
    ),
    path("audit-events/", account.AuditEventList.as_view(), name="api-v1-audit-events"),
    path("model-versions/", account.ModelVersionList.as_view(), name="api-v1-model-versions"),
    path(
        "model-versions/<int:version_id>/",
        account.ModelVersionDetail.as_view(),
        name="api-v1-model-version",
    ),
    path(
        "model-versions/<int:version_id>/activate/",
        account.ModelVersionActivate.as_view(),
        name="api-v1-model-version-activate",
    ),
    # Anything else under /api/v1/ answers 404 as problem details, not the HTML page.
    re_path(r"^(?P<unmatched>.*)$", not_found),
]
