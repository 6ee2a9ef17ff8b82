"""Recovery without a manual step (issue 15): the publisher, the sweep and re-analysis, against the
database; the broker is replaced by a recorder where only what is sent matters."""

from datetime import timedelta

import numpy as np
import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from cases.analysis import queue
from cases.analysis.reanalysis import case_failed_images_reanalyse
from cases.intake import services
from cases.models import AuditEvent, Case, Image
from classifier.synthetic import make_cell, png_bytes


class Broker:
    """Records what is published; `down` makes it refuse like an unreachable Redis."""

    def __init__(self) -> None:
        self.sent: list[list[int]] = []
        self.down = False

    def delay(self, ids) -> None:
        if self.down:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.sent.append(list(ids))

    def ids(self) -> list[int]:
        return sorted(i for batch in self.sent for i in batch)


@pytest.fixture
def broker(monkeypatch) -> Broker:
    recorder = Broker()
    monkeypatch.setattr(queue, "analyse_images", recorder)
    return recorder


def upload(case, by, n: int, capture) -> list[int]:
    rng = np.random.default_rng(n)
    files = [(f"c{i}.png", png_bytes(make_cell(rng, i % 2 == 0, 64))) for i in range(n)]
    with capture(execute=True):
        return [img.pk for img in services.images_add(case=case, files=files, by=by).stored]


def test_an_upload_with_the_broker_down_is_stored_and_its_images_stay_queued(
    case, clinician, broker, django_capture_on_commit_callbacks
):
    broker.down = True
    ids = upload(case, clinician, 5, django_capture_on_commit_callbacks)  # does not raise
    assert len(ids) == 5
    images = Image.objects.filter(pk__in=ids)
    assert {img.status for img in images} == {Image.Status.QUEUED}
    assert {img.enqueued_at for img in images} == {None}  # never sent: the sweep's to send


def test_the_upload_page_answers_success_with_the_broker_down(
    client, case, clinician, broker, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    broker.down = True
    client.force_login(clinician)
    data = png_bytes(make_cell(np.random.default_rng(1), True, 64))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("case_upload", args=[case.pk]),
            {"kind": "auto", "files": [SimpleUploadedFile("a.png", data)]},
            headers={"Accept": "application/json"},
        )
    assert response.status_code == 200
    assert len(response.json()["stored"]) == 1


def test_the_sweep_sends_never_sent_images_once_the_broker_is_back(
    case, clinician, broker, django_capture_on_commit_callbacks
):
    broker.down = True
    ids = upload(case, clinician, 5, django_capture_on_commit_callbacks)
    assert queue.analysis_sweep().never_sent == 0  # still down: nothing sent, nothing lost
    broker.down = False
    assert queue.analysis_sweep().never_sent == 5
    assert broker.ids() == sorted(ids)
    assert queue.analysis_sweep().never_sent == 0  # sent once, not at every sweep
    assert broker.ids() == sorted(ids)


def test_the_sweep_resends_images_of_a_dead_worker_after_the_stale_limit(
    case, clinician, broker, settings, django_capture_on_commit_callbacks
):
    settings.ANALYSIS_STALE_AFTER = 60
    ids = upload(case, clinician, 3, django_capture_on_commit_callbacks)
    now = timezone.now()
    Image.objects.filter(pk=ids[0]).update(
        status=Image.Status.PROCESSING, claimed_at=now - timedelta(seconds=61), attempts=1
    )
    Image.objects.filter(pk=ids[1]).update(
        status=Image.Status.PROCESSING, claimed_at=now - timedelta(seconds=30), attempts=1
    )
    broker.sent.clear()
    report = queue.analysis_sweep(now=now)
    assert report.stalled == 1 and broker.ids() == [ids[0]]
    assert Image.objects.get(pk=ids[0]).status == Image.Status.QUEUED
    assert Image.objects.get(pk=ids[1]).status == Image.Status.PROCESSING  # alive: left alone


def test_the_sweep_fails_an_image_that_stopped_the_worker_too_often(
    case, clinician, broker, settings, django_capture_on_commit_callbacks
):
    settings.ANALYSIS_MAX_ATTEMPTS = 2
    ids = upload(case, clinician, 1, django_capture_on_commit_callbacks)
    Image.objects.filter(pk=ids[0]).update(
        status=Image.Status.PROCESSING, claimed_at=None, attempts=2
    )
    broker.sent.clear()
    report = queue.analysis_sweep()
    image = Image.objects.get(pk=ids[0])
    assert report.given_up == ids and broker.sent == []
    assert image.status == Image.Status.FAILED and "stopped 2 times" in image.error


def test_the_sweep_resends_lost_messages_only_when_the_queue_is_empty(
    case, clinician, broker, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.ANALYSIS_REQUEUE_AFTER = 60
    ids = upload(case, clinician, 2, django_capture_on_commit_callbacks)
    old = timezone.now() - timedelta(seconds=120)
    Image.objects.filter(pk__in=ids).update(enqueued_at=old)
    broker.sent.clear()
    monkeypatch.setattr(queue, "broker_queue_depth", lambda: 40)  # a backlog: still coming
    assert queue.analysis_sweep().lost == 0 and broker.sent == []
    monkeypatch.setattr(queue, "broker_queue_depth", lambda: 0)  # drained: these were lost
    assert queue.analysis_sweep().lost == 2 and broker.ids() == sorted(ids)


def test_workers_starting_together_send_each_pending_image_once(
    case, clinician, broker, django_capture_on_commit_callbacks
):
    ids = upload(case, clinician, 6, django_capture_on_commit_callbacks)
    broker.sent.clear()
    started = timezone.now()  # both workers started now, after the upload's message
    assert queue.analysis_requeue_pending(sent_before=started) == 6
    assert queue.analysis_requeue_pending(sent_before=started) == 0
    assert broker.ids() == sorted(ids)


def test_a_reviewer_reanalyses_failed_images_and_it_is_audited(
    case, clinician, reviewer, broker, django_capture_on_commit_callbacks
):
    ids = upload(case, clinician, 2, django_capture_on_commit_callbacks)
    Image.objects.filter(pk__in=ids).update(
        status=Image.Status.FAILED, error="storage error: No space left on device", attempts=3
    )
    Case.objects.filter(pk=case.pk).update(status=Case.Status.OPEN)
    broker.sent.clear()
    with pytest.raises(PermissionDenied):
        case_failed_images_reanalyse(case=case, by=clinician)
    with django_capture_on_commit_callbacks(execute=True):
        assert case_failed_images_reanalyse(case=case, by=reviewer) == ids
    assert broker.ids() == sorted(ids)
    assert {(i.status, i.attempts, i.error) for i in Image.objects.filter(pk__in=ids)} == {
        (Image.Status.QUEUED, 0, "")
    }
    case.refresh_from_db()
    assert case.status == Case.Status.ANALYSING
    event = AuditEvent.objects.get(action="analysis.requeued")
    assert event.actor == reviewer and event.after["images"] == ids


def test_the_case_page_offers_reanalysis_to_a_reviewer(
    client, case, clinician, reviewer, broker, django_capture_on_commit_callbacks
):
    ids = upload(case, clinician, 1, django_capture_on_commit_callbacks)
    Image.objects.filter(pk__in=ids).update(status=Image.Status.FAILED, error="storage error")
    client.force_login(clinician)
    assert b"reanalyse-form" not in client.get(reverse("case_detail", args=[case.pk])).content
    client.force_login(reviewer)
    assert b"reanalyse-form" in client.get(reverse("case_detail", args=[case.pk])).content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("case_reanalyse", args=[case.pk]))
    assert response.status_code == 302
    assert Image.objects.get(pk=ids[0]).status == Image.Status.QUEUED


def stray(name: str) -> str:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    return default_storage.save(name, ContentFile(b"written by a run that crashed"))


def test_files_left_by_an_image_the_sweep_gives_up_on_are_deleted(
    case, clinician, broker, settings, django_capture_on_commit_callbacks
):
    from django.core.files.storage import default_storage

    settings.ANALYSIS_MAX_ATTEMPTS = 2
    poison, healthy = upload(case, clinician, 2, django_capture_on_commit_callbacks)
    # The runs that crashed on it wrote its heatmaps, never recorded.
    left = [stray(f"cases/{case.pk}/heatmaps/{poison}-{n}-overlay.png") for n in range(3)]
    kept = stray(f"cases/{case.pk}/heatmaps/{healthy}-abcd-overlay.png")
    Image.objects.filter(pk=poison).update(
        status=Image.Status.PROCESSING, claimed_at=None, attempts=2
    )
    assert queue.analysis_sweep().given_up == [poison]
    assert [default_storage.exists(name) for name in left] == [False] * 3
    assert default_storage.exists(kept)  # another image's file is not touched
    assert all(default_storage.exists(img.file.name) for img in Image.objects.all())


def test_crops_left_by_a_field_the_worker_gives_up_on_are_deleted(
    case, clinician, broker, settings, django_capture_on_commit_callbacks
):
    from django.core.files.storage import default_storage

    from cases.analysis.services import images_analyse

    settings.ANALYSIS_MAX_ATTEMPTS = 2
    [field] = upload(case, clinician, 1, django_capture_on_commit_callbacks)
    Image.objects.filter(pk=field).update(kind=Image.Kind.FIELD, attempts=2)
    crops = [stray(f"cases/{case.pk}/cells/{field}-{n}.png") for n in range(2)]
    other = stray(f"cases/{case.pk}/cells/{field}0-keep.png")  # another field's crop
    images_analyse(image_ids=[field])  # the third claim: given up before any work
    assert Image.objects.get(pk=field).status == Image.Status.FAILED
    assert [default_storage.exists(name) for name in crops] == [False, False]
    assert default_storage.exists(other)


def test_the_sweep_task_logs_one_warning_when_the_database_is_down(monkeypatch, caplog):
    from django.db import OperationalError as DatabaseDown

    from cases.analysis import tasks

    def database_down():
        raise DatabaseDown("connection refused")

    monkeypatch.setattr(tasks, "analysis_sweep_service", database_down)
    with caplog.at_level("WARNING", logger="cases.analysis.tasks"):
        assert tasks.analysis_sweep.apply().get() == {"skipped": "database unavailable"}
    warnings = [r for r in caplog.records if r.name == "cases.analysis.tasks"]
    assert len(warnings) == 1 and warnings[0].exc_info is None
    assert "database is unavailable" in warnings[0].getMessage()
