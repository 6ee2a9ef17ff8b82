"""Webhooks: deliveries recorded with the case's event, sent to a receiver on 127.0.0.1, signed
with HMAC-SHA256 over timestamp and body, retried with back-off, recorded, replayed from the
admin."""

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from integrations.models import Webhook, WebhookDelivery
from integrations.tasks import deliver_webhook
from tests.cases.review_helpers import add_cells

SECRET = "s3cret-for-tests"


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records what it is sent and answers `statuses`."""

    def __init__(self, statuses: list[int]):
        self.statuses, self.requests = list(statuses), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                status = (
                    receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                )
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"thanks" if status < 300 else b"broken")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(*statuses: int) -> Receiver:
        made.append(Receiver(list(statuses) or [200]))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture(autouse=True)
def _retries_run_in_process():
    # apply() runs a retry at once, in this process; a retry's Retry exception must not escape.
    conf = deliver_webhook.app.conf
    before, conf.task_eager_propagates = conf.task_eager_propagates, False
    yield
    conf.task_eager_propagates = before


def hook(site, url: str, events=None) -> Webhook:
    return Webhook.objects.create(site=site, url=url, secret=SECRET, events=events or [])


def test_an_analysed_case_records_one_delivery_per_interested_webhook(
    site, other_site, case, clinician, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr(deliver_webhook, "delay", lambda pk: sent.append(pk))
    wanted = hook(site, "http://127.0.0.1:9/a", ["case.analysed"])
    hook(site, "http://127.0.0.1:9/b", ["case.signed_off"])
    hook(other_site, "http://127.0.0.1:9/c")
    with django_capture_on_commit_callbacks(execute=True):
        add_cells(case, clinician, [0.9, 0.1])
    delivery = WebhookDelivery.objects.get()
    assert delivery.webhook == wanted and delivery.event == "case.analysed"
    assert delivery.payload["case"]["id"] == case.pk and sent == [delivery.pk]


def test_a_delivery_is_signed_and_its_answer_recorded(site, case, receiver):
    endpoint = receiver(200)
    delivery = WebhookDelivery.objects.create(
        webhook=hook(site, endpoint.url), case=case, event="case.signed_off", payload={"a": 1}
    )
    deliver_webhook.apply(args=[delivery.pk], throw=False)
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.attempts == 1
    assert delivery.response_status == 200 and delivery.response_body == "thanks"
    headers, body = endpoint.requests[0]
    stamp = headers["X-Malaria-Timestamp"]
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Malaria-Signature"] == f"sha256={expected}"
    assert headers["X-Malaria-Event"] == "case.signed_off"
    assert json.loads(body) == {"a": 1, "delivery": delivery.pk}


def test_a_failing_receiver_is_retried_then_the_delivery_fails(site, case, receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    endpoint = receiver(500, 503, 500)
    delivery = WebhookDelivery.objects.create(
        webhook=hook(site, endpoint.url), case=case, event="case.reopened", payload={}
    )
    deliver_webhook.apply(args=[delivery.pk], throw=False)
    delivery.refresh_from_db()
    assert len(endpoint.requests) == 3 and delivery.attempts == 3
    assert delivery.status == "failed" and delivery.response_status == 500


def test_a_receiver_that_recovers_gets_the_delivery_on_a_retry(site, case, receiver):
    endpoint = receiver(502, 200)
    delivery = WebhookDelivery.objects.create(
        webhook=hook(site, endpoint.url), case=case, event="case.analysed", payload={}
    )
    deliver_webhook.apply(args=[delivery.pk], throw=False)
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.attempts == 2


def test_an_admin_replays_a_failed_delivery(
    site, case, receiver, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(
        deliver_webhook, "delay", lambda pk: deliver_webhook.apply(args=[pk], throw=False)
    )
    endpoint = receiver(200)
    failed = WebhookDelivery.objects.create(
        webhook=hook(site, endpoint.url),
        case=case,
        event="case.signed_off",
        payload={"b": 2},
        status="failed",
        attempts=6,
    )
    admin = User.objects.create_superuser("root", password="pass-for-tests-123")
    from django.test import Client

    client = Client()
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:integrations_webhookdelivery_changelist"),
            {"action": "replay", "_selected_action": [failed.pk]},
        )
    assert response.status_code == 302
    replay = WebhookDelivery.objects.get(replay_of=failed)
    assert replay.status == "delivered" and json.loads(endpoint.requests[0][1])["b"] == 2
    failed.refresh_from_db()
    assert failed.status == "failed"
