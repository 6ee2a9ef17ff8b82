from django.contrib import admin
from django.http import HttpRequest

from classifier.models import ModelVersion

# Metrics worth a column in the list; others are on the detail page.
LISTED_METRICS = ("auc", "sensitivity", "specificity", "accuracy")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "threshold", "created_at", "metrics_summary"]
    list_filter = ["is_active"]
    search_fields = ["name", "sha256"]
    # Registration (file + SHA-256) is done by a management command and activation by an audited
    # admin action added in cases/admin.py (classifier must not import cases); only the notes are
    # edited by hand.
    readonly_fields = [
        "name",
        "file",
        "sha256",
        "created_at",
        "is_active",
        "threshold",
        "temperature",
        "metrics",
        "card",
        "quality_reference",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="metrics")
    def metrics_summary(self, obj: ModelVersion) -> str:
        metrics = obj.metrics or {}
        shown = [
            f"{k} {metrics[k]:.3f}"
            for k in LISTED_METRICS
            if isinstance(metrics.get(k), int | float)
        ]
        return ", ".join(shown) or "—"
