"""Fixtures of the API tests: a site with a case awaiting review (analysed cells, a field
photograph with a detected cell, a finished export), the five callers of the permission walk,
and the throttle's counters cleared between tests."""

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from cases.analysis.status import case_status_refresh
from cases.intake import services
from cases.models import Case, Image, Notification, ReportExport
from cases.reports.exports import report_export_generate
from cases.reports.services import report_export_request
from cases.storage import content_sha256, file_store
from tests.cases.review_helpers import add_cells, model_version
from tests.cases.web_helpers import (
    cell_png,
    enqueued,  # noqa: F401
    predict,
)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Five users per test of the permission walk: a slow password hash would dominate it.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()
    yield
    cache.clear()


@dataclass
class World:
    site: object
    patient: object
    case: Case
    cells: list
    field: Image
    cell: Image
    export: ReportExport
    version: object


def add_field(case: Case, by) -> tuple[Image, Image]:
    """A field photograph with one detected, analysed cell (both with files).

    The field is uploaded through the intake service. Its cell is written directly (detection
    needs the detector model), as the analysis service records a detected cell: its file at the
    path its upload_to builds, the content's SHA-256, its box, then its prediction; the field
    is done."""
    (field,) = services.images_add(
        case=case, files=[("field.png", cell_png(7))], by=by, kind=Image.Kind.FIELD
    ).stored
    data = cell_png(8, size=20)
    cell = Image(
        case=case,
        parent=field,
        bbox={"x": 4, "y": 4, "w": 20, "h": 20},
        detection_score=0.9,
        original_name="field.png cell 1",
        kind=Image.Kind.CELL,
        sha256=content_sha256(data),
        width=20,
        height=20,
        uploaded_by=by,
    )
    cell.file = file_store(cell, "file", "cell.png", data)
    cell.save()
    Image.objects.filter(pk=field.pk).update(status=Image.Status.DONE, processed_at=timezone.now())
    predict(cell, model_version(), 0.9)
    with transaction.atomic():
        case_status_refresh(case=case, by=by)
    field.refresh_from_db()
    return field, cell


@pytest.fixture
def world(site, patient, case, clinician, reviewer, lab_admin, outsider) -> World:
    cells = add_cells(case, clinician, [0.9, 0.1], files=True)
    field, cell = add_field(case, clinician)
    requested = report_export_request(case=case, kind=ReportExport.Kind.CSV, by=clinician)
    export = report_export_generate(export_id=requested.pk)
    for user in (clinician, reviewer, lab_admin, outsider):
        Notification.objects.create(user=user, case=case, message="hello")
    case.refresh_from_db()
    return World(site, patient, case, cells, field, cell, export, model_version())


@pytest.fixture
def callers(clinician, reviewer, lab_admin, outsider) -> dict[str, User | None]:
    return {
        "anonymous": None,
        "other_site": outsider,
        "clinician": clinician,
        "reviewer": reviewer,
        "admin": lab_admin,
    }


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client
