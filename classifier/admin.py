import json
import posixpath

from django.contrib import admin
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from classifier.models import ModelVersion

PLOT_KINDS = ("roc", "confusion_matrix", "reliability")

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
        "model_card",
        "evaluation_plots",
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

    def get_urls(self):
        view = self.admin_site.admin_view(self.plot_view)
        return [
            path("<int:pk>/plots/<int:index>/<str:kind>.png", view, name="classifier_plot"),
            *super().get_urls(),
        ]

    def plot_view(self, request: HttpRequest, pk: int, index: int, kind: str) -> FileResponse:
        """Stream one evaluation plot from storage (staff only, through the admin site)."""
        version = self.get_object(request, str(pk))
        if (
            version is None
            or not self.has_view_permission(request, version)
            or kind not in PLOT_KINDS
        ):
            raise Http404
        evaluations = (version.metrics or {}).get("evaluations", [])
        if not 0 <= index < len(evaluations):
            raise Http404
        name = evaluations[index].get("stored_plots", {}).get(kind)
        if not name or not default_storage.exists(name):
            raise Http404
        return FileResponse(default_storage.open(name, "rb"), content_type="image/png")

    @admin.display(description="model card")
    def model_card(self, obj: ModelVersion):
        card = obj.card or {}
        if not card:
            return "—"
        return format_html(
            "<table>{}</table>",
            format_html_join(
                "",
                "<tr><th>{}</th><td><pre style='white-space:pre-wrap'>{}</pre></td></tr>",
                ((key, _plain(value)) for key, value in card.items()),
            ),
        )

    @admin.display(description="evaluations")
    def evaluation_plots(self, obj: ModelVersion):
        evaluations = (obj.metrics or {}).get("evaluations", [])
        if not evaluations:
            return "No evaluation yet: python manage.py evaluate_model --data DIR --version NAME"
        blocks = []
        for index, evaluation in enumerate(evaluations):
            stored = evaluation.get("stored_plots", {})
            kinds = [k for k in PLOT_KINDS if stored.get(k) and default_storage.exists(stored[k])]
            images = format_html_join(
                "",
                "<img src='{}' alt='{}' style='max-width:32%;margin:2px'>",
                ((reverse("admin:classifier_plot", args=[obj.pk, index, k]), k) for k in kinds),
            )
            if not kinds:
                images = format_html(
                    "<p>Plots are not stored on this installation: run evaluate_model to make "
                    "them.</p>"
                )
            data = posixpath.basename(str(evaluation.get("data") or "").rstrip("/")) or "—"
            blocks.append(
                format_html(
                    "<p><strong>{}</strong> on {}: n={}, accuracy {}, AUC {}, sensitivity {}, "
                    "specificity {}, threshold {}</p><div>{}</div>",
                    str(evaluation.get("evaluated_at") or "")[:16].replace("T", " "),
                    data,
                    evaluation.get("n"),
                    _num(evaluation.get("accuracy")),
                    _num(evaluation.get("auc")),
                    _num(evaluation.get("sensitivity")),
                    _num(evaluation.get("specificity")),
                    _num(evaluation.get("threshold")),
                    images,
                )
            )
        return format_html_join("", "{}", ((block,) for block in blocks))


def _num(value) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "—"


def _plain(value) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2)
    return str(value)
