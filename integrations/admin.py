"""Admin pages of webhooks: register a URL per site; read the deliveries and replay them."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from integrations.models import Webhook, WebhookDelivery
from integrations.services import delivery_replay


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ["site", "url", "events", "is_active", "created_at"]
    list_filter = ["is_active", "site"]
    exclude = ["created_by"]

    def save_model(self, request: HttpRequest, obj: Webhook, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "event", "case", "webhook", "status", "attempts", "response_status"]
    list_filter = ["status", "event"]
    actions = ["replay"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Replay selected deliveries")
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        replays = [delivery_replay(delivery=d) for d in queryset.select_related("webhook", "case")]
        self.message_user(request, f"{len(replays)} deliveries queued again.", messages.SUCCESS)
