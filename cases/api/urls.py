from django.urls import path, re_path

from cases.api import views as api
from cases.audit.views import GuardedObtainAuthToken

urlpatterns = [
    path("auth/token/", GuardedObtainAuthToken.as_view(), name="api_token"),
    path("patients/", api.patient_list, name="api_patient_list"),
    path("cases/", api.case_list, name="api_case_list"),
    path("cases/<int:case_id>/", api.case_detail, name="api_case_detail"),
    path("cases/<int:case_id>/images/", api.case_images, name="api_case_images"),
    path("images/<int:image_id>/", api.image_detail, name="api_image_detail"),
    re_path(
        r"^images/(?P<image_id>[0-9]+)/(?P<which>file|heatmap|heatmap-raw)$",
        api.image_content,
        name="api_image_content",
    ),
]
