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


# --- The lock is keyed on the name authentication matches, and on the client address ----------

# What authentication takes for "clin": surrounding white space is stripped (the form and the API
# serializer), the log-in form NFKC-normalises (full-width letters), and a long run of white space
# is stripped before the length is checked.
VARIANTS = [" clin", "clin ", "clin\t", "ｃｌｉｎ", "\u3000clin", " " * 200 + "clin"]


def token(client, password, username="clin", **extra):
    return client.post(reverse("api_token"), {"username": username, "password": password}, **extra)


def test_the_variants_of_a_name_are_that_name_for_authentication(client, clinician):
    for variant in VARIANTS:
        assert login(client, PASSWORD, username=variant).status_code == 302, repr(variant)
        client.logout()
    for variant in VARIANTS[:3] + VARIANTS[4:]:  # the API does not NFKC-normalise
        assert token(client, PASSWORD, username=variant).status_code == 200, repr(variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_of_a_name_share_its_lock_on_the_login_page(client, clinician, settings, variant):
    settings.LOGIN_MAX_FAILURES = 3
    assert login(client, "wrong", username=variant).status_code == 200
    assert login(client, "wrong", username="clin").status_code == 200
    assert login(client, "wrong", username=variant).status_code == 429
    assert login(client, PASSWORD, username=variant).status_code == 429
    assert login(client, PASSWORD, username="clin").status_code == 429
    failed = AuditEvent.objects.filter(action="user.login_failed")
    assert [event.after["username"] for event in failed] == ["clin"] * 3
    assert token(client, PASSWORD, username=variant).status_code == 429


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_of_a_name_share_its_lock_on_the_token_endpoint(
    client, clinician, settings, variant
):
    settings.LOGIN_MAX_FAILURES = 3
    assert token(client, "wrong", username=variant).status_code == 400
    assert token(client, "wrong", username="clin").status_code == 400
    assert token(client, "wrong", username=variant).status_code == 429
    assert token(client, PASSWORD, username=variant).status_code == 429
    assert token(client, PASSWORD, username="clin").status_code == 429
    assert login(client, PASSWORD, username=variant).status_code == 429


def test_another_case_is_another_name(client, clinician, settings):
    # The user-name match is case-sensitive (PostgreSQL and SQLite alike), so is the lock.
    settings.LOGIN_MAX_FAILURES = 2
    assert login(client, PASSWORD, username="CLIN").status_code == 200
    assert login(client, "wrong", username="CLIN").status_code == 429
    assert login(client, PASSWORD, username="clin").status_code == 302


def test_one_address_is_refused_after_failures_for_many_names(client, clinician, settings):
    settings.LOGIN_MAX_FAILURES, settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 5, 4
    for name in ("a1", "a2", "a3"):
        assert login(client, "wrong", username=name).status_code == 200
    locked = token(client, "wrong", username="a4")
    assert locked.status_code == 429 and "from this address" in locked.json()["detail"]
    assert login(client, PASSWORD).status_code == 429  # the right password too
    assert AuditEvent.objects.filter(action="address.login_locked").count() == 1
    elsewhere = {"username": "clin", "password": PASSWORD}
    assert client.post(reverse("login"), elsewhere, REMOTE_ADDR="10.0.0.2").status_code == 302


def test_x_forwarded_for_counts_only_behind_a_trusted_proxy(client, clinician, settings):
    settings.LOGIN_MAX_FAILURES, settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 50, 3

    def attempt(forwarded: str):
        data = {"username": f"n-{forwarded}", "password": "wrong"}
        return client.post(reverse("login"), data, HTTP_X_FORWARDED_FOR=forwarded)

    # No trusted proxy: the header is the client's to forge and is ignored.
    assert [attempt(f"192.0.2.{i}").status_code for i in range(3)] == [200, 200, 429]

    # Behind one proxy: the address it appended is the client; what the client wrote before it
    # does not change that.
    settings.TRUSTED_PROXY_COUNT = 1
    assert attempt("198.51.100.7").status_code == 200  # another client, behind the proxy
    statuses = [attempt(f"192.0.2.{i}, 203.0.113.9").status_code for i in range(3)]
    assert statuses == [200, 200, 429]


def test_failures_for_unknown_names_are_summarised_not_audited_one_by_one(
    client, clinician, settings
):
    from cases.audit.login_guard import login_failures_prune
    from cases.models import LoginFailure

    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 0
    before = AuditEvent.objects.count()
    for i in range(30):
        assert login(client, "wrong", username=f"guess-{i}").status_code == 200
    login(client, "wrong")  # an existing name is audited as before
    assert AuditEvent.objects.count() == before + 1
    assert LoginFailure.objects.count() == 31

    assert login_failures_prune() == 0  # still inside the window: still counted
    later = timezone.now() + timedelta(minutes=16)
    with mock.patch("cases.audit.login_guard.timezone.now", return_value=later):
        assert login_failures_prune() == 31
    summary = AuditEvent.objects.get(action="user.login_failed_unknown")
    assert summary.after["count"] == 30 and summary.after["distinct_usernames"] == 30
    assert summary.after["addresses"] == {"127.0.0.1": 30}
    assert len(summary.after["usernames"]) == 20
    assert AuditEvent.objects.count() == before + 2 and not LoginFailure.objects.exists()
