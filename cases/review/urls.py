"""URLs of the review workflow, all under /review/ (included from cases.intake.urls)."""

from django.urls import path

from cases.review import views

urlpatterns = [
    path("review/", views.queue, name="review_queue"),
    path("review/case/<int:case_id>/", views.review_case, name="review_case"),
    path("review/case/<int:case_id>/claim/", views.claim, name="review_claim"),
    path("review/case/<int:case_id>/release/", views.release, name="review_release"),
    path(
        "review/case/<int:case_id>/confirm-remaining/",
        views.confirm_remaining,
        name="review_confirm_remaining",
    ),
    path("review/case/<int:case_id>/sign-off/", views.sign_off, name="review_sign_off"),
    path("review/case/<int:case_id>/send-back/", views.send_back, name="review_send_back"),
    path("review/case/<int:case_id>/reopen/", views.reopen, name="review_reopen"),
    path("review/case/<int:case_id>/report.pdf", views.report_pdf, name="review_report_pdf"),
    path("review/case/<int:case_id>/report.csv", views.report_csv, name="review_report_csv"),
    path("review/case/<int:case_id>/fhir.json", views.report_fhir, name="review_report_fhir"),
    path("review/case/<int:case_id>/exports/", views.exports, name="review_exports"),
    path("review/exports/<int:export_id>/", views.export_download, name="review_export_download"),
    path("review/image/<int:image_id>/decide/", views.decide, name="review_decide"),
    path("review/audit/", views.audit_list, name="review_audit"),
    path("review/audit.csv", views.audit_csv, name="review_audit_csv"),
    path("review/notifications/", views.notifications, name="review_notifications"),
]
