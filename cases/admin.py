"""Django admin. Sites and their members are managed here; the clinical records are view-only,
because every change to them must go through cases.services and leave an audit event."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

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
    Site,
)
from cases.services import model_activate
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


@admin.register(ModelVersion)
class ActivatableModelVersionAdmin(ModelVersionAdmin):
    actions = ["activate_version"]

    @admin.action(description="Activate selected version")
    def activate_version(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.WARNING)
            return
        version = model_activate(version=queryset.get(), by=request.user)
        self.message_user(request, f"{version.name} is now the active model.", messages.SUCCESS)
