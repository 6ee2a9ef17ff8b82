"""URLs of the field view (cases/fields/views.py), included from cases.intake.urls."""

from django.urls import path

from cases.fields import views

urlpatterns = [
    path("images/<int:image_id>/field/", views.field_view, name="field_view"),
    path("images/<int:image_id>/field.json", views.field_data, name="field_data"),
    path("images/<int:image_id>/field/add-cell", views.field_cell_add, name="field_cell_add"),
    path("images/<int:image_id>/remove-cell", views.field_cell_remove, name="field_cell_remove"),
    path("images/<int:image_id>/restore-cell", views.field_cell_restore, name="field_cell_restore"),
    path("cases/<int:case_id>/red-cells/", views.case_red_cells, name="case_red_cells"),
]
