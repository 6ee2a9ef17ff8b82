"""URLs of the analysis pages (included from malariaweb.urls)."""

from django.urls import path

from cases.analysis import views

urlpatterns = [
    path("cases/<int:case_id>/reanalyse/", views.case_reanalyse, name="case_reanalyse"),
]
