from django.urls import path
from rest_framework.authtoken.views import obtain_auth_token

from cases import api

urlpatterns = [
    path("auth/token/", obtain_auth_token, name="api_token"),
    path("patients/", api.patient_list, name="api_patient_list"),
    path("cases/", api.case_list, name="api_case_list"),
    path("cases/<int:case_id>/", api.case_detail, name="api_case_detail"),
    path("cases/<int:case_id>/images/", api.case_images, name="api_case_images"),
    path("images/<int:image_id>/", api.image_detail, name="api_image_detail"),
]
