from django.contrib import admin
from django.urls import include, path
from django.views.defaults import server_error

from cases.api.problems import json_problem
from malariaweb import health

urlpatterns = [
    # Answered by malariaweb.health.HealthCheckMiddleware first; routed too, for reverse().
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    # The REST API: v1, its schema at /api/v1/schema/ and documentation at /api/v1/docs/.
    path("api/v1/", include("cases.api.urls")),
    # The first, unversioned paths (deprecated; removed in release 1.0): the same views.
    path("api/", include("cases.api.legacy_urls")),
    path("", include("cases.intake.urls")),
    path("", include("cases.analysis.urls")),
]


def handler500(request):
    """An unhandled error: problem details under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return json_problem(request, 500, "The server failed to answer this request.")
    return server_error(request)
