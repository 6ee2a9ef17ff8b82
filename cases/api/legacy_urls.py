"""The first, unversioned API paths under /api/, kept working for existing scripts.

They are served by the same v1 views (so they answer in v1's shapes, problem details included)
and are left out of the schema. Deprecated: they will be removed in release 1.0 (README,
"Integrate"); new clients use /api/v1/.
"""

from django.urls import path, re_path
from drf_spectacular.utils import extend_schema

from cases.api import account_views as account
from cases.api import views as intake


def _legacy(view_class):
    return extend_schema(exclude=True)(view_class).as_view()


urlpatterns = [
    path("auth/token/", _legacy(type("LegacyToken", (account.TokenObtain,), {})), name="api_token"),
    path(
        "patients/",
        _legacy(type("LegacyPatients", (intake.PatientList,), {})),
        name="api_patient_list",
    ),
    path("cases/", _legacy(type("LegacyCases", (intake.CaseList,), {})), name="api_case_list"),
    path(
        "cases/<int:case_id>/",
        _legacy(type("LegacyCase", (intake.CaseDetail,), {})),
        name="api_case_detail",
    ),
    path(
        "cases/<int:case_id>/images/",
        _legacy(type("LegacyCaseImages", (intake.CaseImages,), {})),
        name="api_case_images",
    ),
    path(
        "images/<int:image_id>/",
        _legacy(type("LegacyImage", (intake.ImageDetail,), {})),
        name="api_image_detail",
    ),
    re_path(
        r"^images/(?P<image_id>[0-9]+)/(?P<which>file|heatmap|heatmap-raw)$",
        _legacy(type("LegacyImageContent", (intake.ImageContent,), {})),
        name="api_image_content",
    ),
]
