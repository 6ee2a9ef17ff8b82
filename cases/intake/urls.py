from django.urls import include, path

from cases.audit.views import AuditedLoginView, AuditedLogoutView
from cases.intake import views

urlpatterns = [
    path("login/", AuditedLoginView.as_view(), name="login"),
    path("logout/", AuditedLogoutView.as_view(), name="logout"),
    path("", views.case_list, name="case_list"),
    path("patients/", views.patient_list, name="patient_list"),
    path("patients/new/", views.patient_create, name="patient_create"),
    path("patients/<int:patient_id>/", views.patient_detail, name="patient_detail"),
    path("patients/<int:patient_id>/cases/new/", views.case_create, name="case_create"),
    path("cases/<int:case_id>/", views.case_detail, name="case_detail"),
    path("cases/<int:case_id>/notes/", views.case_update, name="case_update"),
    path("cases/<int:case_id>/upload", views.case_upload, name="case_upload"),
    path("cases/<int:case_id>/status.json", views.case_status, name="case_status"),
    path("images/<int:image_id>/file", views.image_file, name="image_file"),
    path("images/<int:image_id>/heatmap", views.image_heatmap, name="image_heatmap"),
    path("images/<int:image_id>/heatmap-raw", views.image_heatmap_raw, name="image_heatmap_raw"),
    # --- Review workflow (cases/reviews*.py, templates/review/) --------------------------------
    path("", include("cases.review.urls")),
    # --- Field view (cases/field_*.py, templates/cases/field_view.html) -------------------------
    path("", include("cases.fields.urls")),
]
