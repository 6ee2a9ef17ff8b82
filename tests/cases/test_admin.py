"""The admin: every model is listed, the audit trail is read-only, a model version is activated."""

import pytest
from django.contrib import admin
from django.urls import reverse

from cases.models import AuditEvent
from classifier.models import ModelVersion
from tests.cases.web_helpers import model_version


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", password="pass-for-tests-123")
    client.force_login(user)
    return user


def test_every_model_has_a_working_changelist(client, staff, case):
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert client.get(url).status_code == 200, url


def test_the_audit_trail_cannot_be_changed_in_the_admin(client, staff, case):
    event = AuditEvent.objects.first()
    model_admin = admin.site._registry[AuditEvent]
    request = client.get("/").wsgi_request
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, event)
    assert not model_admin.has_delete_permission(request, event)
    assert client.get(reverse("admin:cases_auditevent_add")).status_code == 403
    assert client.get(reverse("admin:cases_auditevent_delete", args=[event.pk])).status_code == 403
    assert "action" in [getattr(f, "__name__", f) for f in model_admin.list_filter]
    filtered = client.get(reverse("admin:cases_auditevent_changelist"), {"action": "case.created"})
    assert filtered.status_code == 200


def activate(client, versions) -> list[str]:
    response = client.post(
        reverse("admin:classifier_modelversion_changelist"),
        {"action": "activate_version", "_selected_action": [v.pk for v in versions]},
        follow=True,
    )
    return [str(m) for m in response.context["messages"]]


def test_the_admin_action_activates_exactly_one_version(client, staff):
    first, second = model_version("v1"), model_version("v2")
    assert activate(client, [second]) == ["v2 is now the active model."]
    assert list(ModelVersion.objects.filter(is_active=True)) == [second]
    event = AuditEvent.objects.get(action="model.activated")
    assert event.actor == staff and event.after["active"] == "v2"
    assert activate(client, [first, second]) == ["Select exactly one version to activate."]
    assert list(ModelVersion.objects.filter(is_active=True)) == [second]
