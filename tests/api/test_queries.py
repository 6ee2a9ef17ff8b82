"""No N+1: a list endpoint's query count does not grow with its rows."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cases.intake import services
from cases.models import Notification
from tests.api.conftest import client_for
from tests.cases.review_helpers import add_cells


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def _grow_cases(by, patient, case, n: int) -> None:
    for _ in range(n):
        services.case_create(patient=patient, by=by)


def _grow_patients(by, patient, case, n: int) -> None:
    start = patient.site.patients.count()
    for i in range(start, start + n):
        services.patient_create(site=patient.site, identifier=f"Q-{i}", by=by)


def _grow_images(by, patient, case, n: int) -> None:
    add_cells(case, by, [0.9, 0.2] * (n // 2))


def _grow_notifications(by, patient, case, n: int) -> None:
    Notification.objects.bulk_create(
        [Notification(user=by, case=case, message=f"m{i}") for i in range(n)]
    )


LISTS = [
    ("api-v1-case-list", False, _grow_cases),
    ("api-v1-patient-list", False, _grow_patients),
    ("api-v1-case-images", True, _grow_images),
    ("api-v1-case-history", True, _grow_images),
    ("api-v1-notifications", False, _grow_notifications),
    ("api-v1-audit-events", False, _grow_cases),
]


@pytest.mark.parametrize("name,per_case,grow", LISTS)
def test_a_list_costs_the_same_queries_for_more_rows(
    name, per_case, grow, clinician, lab_admin, patient, case
):
    client = client_for(lab_admin if name == "api-v1-audit-events" else clinician)
    url = reverse(name, args=[case.pk] if per_case else [])
    grow(clinician, patient, case, 2)
    few = queries(client, url)
    grow(clinician, patient, case, 20)
    many = queries(client, url)
    assert many == few, (name, few, many)
