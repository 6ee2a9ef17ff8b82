"""Django admin. Sites and their members are managed here; the clinical records are view-only,
because every change to them must go through cases.intake.services and leave an audit event."""

import posixpath

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from cases.analysis.model_versions import model_activate
from cases.models import (
    AuditEvent,
    AuditHead,
    Case,
    Image,
    Notification,
    Patient,
    Prediction,
    ReportExport,
    Review,
    SignOff,
    Site,
)
from classifier.admin import ModelVersionAdmin
from classifier.models import ModelVersion


class ViewOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ["name", "code"]
    search_fields = ["name", "code"]
    filter_horizontal = ["members"]


@admin.register(Patient)
class PatientAdmin(ViewOnlyAdmin):
    list_display = ["identifier", "site", "sex", "age_years", "created_at"]
    list_filter = ["site", "sex"]
    search_fields = ["identifier"]


@admin.register(Case)
class CaseAdmin(ViewOnlyAdmin):
    list_display = ["id", "patient", "status", "created_by", "created_at"]
    list_filter = ["status", "patient__site"]
    search_fields = ["patient__identifier"]
    date_hierarchy = "created_at"


@admin.register(Image)
class ImageAdmin(ViewOnlyAdmin):
    list_display = ["id", "original_name", "case", "kind", "status", "created_at"]
    list_filter = ["status", "kind"]
    search_fields = ["original_name", "sha256"]
    list_select_related = ["case__patient"]


@admin.register(Prediction)
class PredictionAdmin(ViewOnlyAdmin):
    list_display = ["image", "label", "probability", "threshold", "quality_ok", "model_version"]
    list_filter = ["label", "quality_ok", "model_version"]
    list_select_related = ["image", "model_version"]


@admin.register(Review)
class ReviewAdmin(ViewOnlyAdmin):
    list_display = ["image", "decision", "label", "reason_code", "reviewer", "created_at"]
    list_filter = ["decision", "label", "reason_code"]
    list_select_related = ["image", "reviewer"]


@admin.register(SignOff)
class SignOffAdmin(ViewOnlyAdmin):
    list_display = [
        "case",
        "diagnosis",
        "positive_cells",
        "reviewed_cells",
        "signed_by",
        "signed_at",
    ]
    list_filter = ["diagnosis"]
    list_select_related = ["case", "signed_by"]


@admin.register(Notification)
class NotificationAdmin(ViewOnlyAdmin):
    list_display = ["user", "case", "message", "created_at", "read_at"]
    list_filter = ["read_at"]


@admin.register(ReportExport)
class ReportExportAdmin(ViewOnlyAdmin):
    list_display = ["case", "kind", "status", "created_by", "created_at"]
    list_filter = ["kind", "status"]


@admin.register(AuditEvent)
class AuditEventAdmin(ViewOnlyAdmin):
    """The trail is append-only: the admin can read and search it, never change it."""

    list_display = ["seq", "created_at", "actor_name", "action", "object_type", "object_id", "case"]
    list_filter = ["action", "created_at"]
    search_fields = ["actor_name", "action", "object_id", "hash"]
    date_hierarchy = "created_at"


@admin.register(AuditHead)
class AuditHeadAdmin(ViewOnlyAdmin):
    list_display = ["last_seq", "last_hash"]


# The activation action lives here because it calls a cases service and classifier must not import
# cases (ARCHITECTURE.md): the registry's admin is re-registered with the action added.
admin.site.unregister(ModelVersion)


def _validation(metrics: dict | None) -> dict:
    """The validation metrics: the training writer nests them under "validation" (older rows
    had them at the top level)."""
    metrics = metrics or {}
    nested = metrics.get("validation")
    return nested if isinstance(nested, dict) else metrics


def _readable(value, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
        return "–".join(_readable(v) for v in value)
    return str(value)


def _is_plain(value) -> bool:
    """A scalar, or a list of numbers (an interval): shown inline."""
    if isinstance(value, list):
        return all(isinstance(v, int | float) for v in value)
    return not isinstance(value, dict)


def _rows(data: dict):
    """Card sections as readable rows: numbers rounded, lists of sentences as bullet points,
    a section's nested detail left to card.md."""
    for key, value in data.items():
        label = key.replace("_", " ")
        if isinstance(value, dict):
            plain = ((k.replace("_", " "), _readable(v)) for k, v in value.items() if _is_plain(v))
            yield label, format_html_join("", "<div><strong>{}</strong>: {}</div>", plain)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = format_html_join("", "<li>{}</li>", ((v,) for v in value))
            yield label, format_html("<ul>{}</ul>", items)
        elif isinstance(value, list):
            yield label, f"{len(value)} entries"
        else:
            yield label, _readable(value)


@admin.register(ModelVersion)
class ActivatableModelVersionAdmin(ModelVersionAdmin):
    """The registry's admin made readable for a lab admin: validation metrics in the list,
    thresholds to three decimals, the model card as a page rather than raw JSON, evaluation
    plots only where this installation has them, and no server paths."""

    actions = ["activate_version"]
    list_display = [
        "name",
        "kind",
        "is_active",
        "threshold_shown",
        "created_at",
        "metrics_summary",
    ]
    list_filter = ["kind", "is_active"]
    readonly_fields = [
        "name",
        "kind",
        "is_active",
        "threshold_shown",
        "temperature_shown",
        "created_at",
        "sha256",
        "validation_summary",
        "evaluation_plots",
        "model_card",
    ]
    fields = [*readonly_fields, "notes"]

    @admin.display(description="threshold")
    def threshold_shown(self, obj: ModelVersion) -> str:
        return f"{obj.threshold:.3f}"

    @admin.display(description="temperature")
    def temperature_shown(self, obj: ModelVersion) -> str:
        return f"{obj.temperature:.3f}"

    @admin.display(description="validation metrics")
    def metrics_summary(self, obj: ModelVersion) -> str:
        metrics = _validation(obj.metrics)
        shown = [
            f"{name} {metrics[key]:.3f}"
            for key, name in (("auc", "AUC"), ("sensitivity", "sens"), ("specificity", "spec"))
            + (("accuracy", "acc"), ("precision", "precision"), ("recall", "recall"))
            if isinstance(metrics.get(key), int | float)
        ]
        if shown and isinstance(metrics.get("n"), int):
            shown.append(f"n={metrics['n']}")
        return " · ".join(shown) or "—"

    @admin.display(description="validation")
    def validation_summary(self, obj: ModelVersion):
        metrics = _validation(obj.metrics)
        if not metrics:
            return "—"
        ci = metrics.get("ci95") or {}
        rows = (
            (
                name,
                _readable(metrics[key]),
                "–".join(f"{x:.3f}" for x in ci[key]) if key in ci else "",
            )
            for key, name in (
                ("accuracy", "Accuracy"),
                ("auc", "AUC"),
                ("sensitivity", "Sensitivity"),
                ("specificity", "Specificity"),
            )
            if isinstance(metrics.get(key), int | float)
        )
        return format_html(
            "<p>{} cells ({} parasitized) of {} held-out patients.</p>"
            "<table><tr><th></th><th>value</th><th>95% CI (patient bootstrap)</th></tr>{}</table>",
            metrics.get("n", "?"),
            metrics.get("n_parasitized", "?"),
            metrics.get("n_groups", "?"),
            format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description="model card")
    def model_card(self, obj: ModelVersion):
        card = {
            k: v
            for k, v in (obj.card or {}).items()
            if k not in ("evaluations", "validation", "threshold_candidates", "model_file")
        }
        if isinstance(card.get("data"), dict):  # server paths mean nothing to a reader
            card["data"] = {
                k: (posixpath.basename(str(v).rstrip("/")) if k == "source" else v)
                for k, v in card["data"].items()
            }
        if not card:
            return "—"
        return format_html(
            "<table class='model-card'>{}</table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", _rows(card)),
        )

    @admin.action(description="Activate selected version")
    def activate_version(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.WARNING)
            return
        version = model_activate(version=queryset.get(), by=request.user)
        self.message_user(request, f"{version.name} is now the active model.", messages.SUCCESS)
