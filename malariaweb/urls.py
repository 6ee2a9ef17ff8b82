from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("cases.api.urls")),
    path("", include("cases.intake.urls")),
    path("", include("cases.analysis.urls")),
]
