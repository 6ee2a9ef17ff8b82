"""Fixtures of the API tests: a site with a case awaiting review (analysed cells, a field
photograph with a detected cell, a finished export), the five callers of the permission walk,
and the throttle's counters cleared between tests."""

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from rest_framework.test import APIClient

from cases.models import Case, Image, Notification, ReportExport
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
    """A field photograph with one detected, analysed cell (both with files)."""
    field = Image.objects.create(
        case=case,
        file=default_storage.save(f"cases/{case.pk}/images/field.png", ContentFile(cell_png(7))),
        original_name="field.png",
        kind=Image.Kind.FIELD,
        sha256="f" * 64,
        width=48,
        height=48,
        uploaded_by=by,
        status=Image.Status.DONE,
    )
    cell = Image.objects.create(
        case=case,
        parent=field,
        bbox={"x": 4, "y": 4, "w": 20, "h": 20},
        file=default_storage.save(f"cases/{case.pk}/cells/c.png", ContentFile(cell_png(8))),
        original_name="field.png cell 1",
        kind=Image.Kind.CELL,
        sha256="c" * 64,
        width=20,
        height=20,
        uploaded_by=by,
        status=Image.Status.DONE,
    )
    predict(cell, model_version(), 0.9)
    return field, cell


@pytest.fixture
def world(site, patient, case, clinician, reviewer, lab_admin, outsider) -> World:
    cells = add_cells(case, clinician, [0.9, 0.1], files=True)
    field, cell = add_field(case, clinician)
    export = ReportExport.objects.create(
        case=case,
        kind=ReportExport.Kind.CSV,
        status=ReportExport.Status.DONE,
        file=default_storage.save(f"reports/{case.pk}/final-x.csv", ContentFile(b"a,b\n")),
        created_by=clinician,
        finished_at=timezone.now(),
    )
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
