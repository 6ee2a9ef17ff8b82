"""Repeated failed log-ins lock the user name for a while; log-out is audited."""

from datetime import timedelta
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from cases.models import AuditEvent

PASSWORD = "pass-for-tests-123"
pytestmark = pytest.mark.django_db


def login(client, password, username="clin"):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_the_fifth_failure_locks_the_name_and_the_right_password_is_then_refused(
    client, clinician, settings
):
    settings.LOGIN_MAX_FAILURES, settings.LOGIN_LOCKOUT_MINUTES = 5, 15
    for _ in range(4):
        assert login(client, "wrong").status_code == 200
    locked = login(client, "wrong")
    assert locked.status_code == 429
    assert "blocked for 15 more minutes" in locked.content.decode()
    assert AuditEvent.objects.filter(action="user.login_locked").count() == 1

    with mock.patch("django.contrib.auth.forms.authenticate") as authenticate:
        refused = login(client, PASSWORD)
    assert not authenticate.called  # the password of a locked name is not even checked
    assert refused.status_code == 429 and "_auth_user_id" not in client.session
    # While locked, attempts are not checked and do not grow the audit trail.
    assert AuditEvent.objects.filter(action="user.login_failed").count() == 5
    assert not AuditEvent.objects.filter(action="user.login").exists()
    # Another name is not affected.
    assert login(client, "wrong", username="someone-else").status_code == 200

    later = timezone.now() + timedelta(minutes=16)
    with mock.patch("cases.audit.login_guard.timezone.now", return_value=later):
        assert login(client, PASSWORD).status_code == 302
    assert AuditEvent.objects.filter(action="user.login", actor=clinician).exists()


def test_a_successful_login_resets_the_count(client, clinician, settings):
    settings.LOGIN_MAX_FAILURES = 3
    login(client, "wrong")
    login(client, "wrong")
    assert login(client, PASSWORD).status_code == 302
    client.logout()
    login(client, "wrong")
    assert login(client, "wrong").status_code == 200
    assert login(client, PASSWORD).status_code == 302


def test_zero_never_locks(client, clinician, settings):
    settings.LOGIN_MAX_FAILURES = 0
    for _ in range(8):
        assert login(client, "wrong").status_code == 200
    assert login(client, PASSWORD).status_code == 302


def test_logout_is_audited(client, clinician):
    assert login(client, PASSWORD).status_code == 302
    response = client.post(reverse("logout"))
    assert response.status_code == 302 and "_auth_user_id" not in client.session
    event = AuditEvent.objects.get(action="user.logout")
    assert event.actor == clinician
