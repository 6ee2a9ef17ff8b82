"""Every operation of the generated schema, walked as five callers: anonymous, a user of another
site, a clinician, a reviewer and a lab admin. Each expected status is the pages' rule for the
same action: another site's object is 404, a role that may not act is 403, a role that may act
but finds the case in the wrong state is 409 (the case awaits review and nobody has claimed it).

An operation added to the API without a row here fails test_every_operation_has_a_row.
"""

import functools

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.generators import SchemaGenerator

from tests.api.conftest import client_for
from tests.cases.web_helpers import cell_png

CALLERS = ("anonymous", "other_site", "clinician", "reviewer", "admin")
ALL = (200, 200, 200, 200)  # other_site, clinician, reviewer, admin
MEMBERS = (404, 200, 200, 200)
REVIEWER_ONLY_409 = (404, 403, 409, 403)
REVIEWER_ONLY = (404, 403, 200, 403)

# operationId -> (other_site, clinician, reviewer, admin); anonymous is 401 unless given.
EXPECTED: dict[str, tuple[int, ...]] = {
    "auth_token_create": (200, 200, 200, 200),
    "me_retrieve": ALL,
    "sites_list": ALL,
    "sites_retrieve": MEMBERS,
    "patients_list": ALL,
    "patients_create": (400, 201, 403, 201),
    "patients_retrieve": MEMBERS,
    "cases_list": ALL,
    "cases_create": (400, 201, 403, 201),
    "cases_retrieve": MEMBERS,
    "cases_partial_update": (404, 200, 403, 200),
    "cases_history_list": MEMBERS,
    "cases_images_list": MEMBERS,
    "cases_images_create": (404, 201, 403, 201),
    "cases_fields_list": MEMBERS,
    "cases_red_cell_count_update": MEMBERS,
    "cases_review_counts_retrieve": MEMBERS,
    "cases_claim_create": REVIEWER_ONLY,
    "cases_release_create": REVIEWER_ONLY,
    "cases_confirm_remaining_retrieve": REVIEWER_ONLY,
    "cases_confirm_remaining_create": REVIEWER_ONLY_409,
    "cases_sign_off_create": REVIEWER_ONLY_409,
    "cases_send_back_create": REVIEWER_ONLY,
    "cases_reopen_create": (404, 403, 403, 409),
    "cases_reports_retrieve": MEMBERS,
    "cases_exports_list": MEMBERS,
    "cases_exports_create": (404, 202, 202, 202),
    "exports_retrieve": MEMBERS,
    "exports_file_retrieve": MEMBERS,
    "review_queue_list": (403, 403, 200, 403),
    "images_retrieve": MEMBERS,
    "images_file_retrieve": MEMBERS,
    "images_reviews_list": MEMBERS,
    "images_reviews_create": REVIEWER_ONLY_409,
    "images_removal_create": REVIEWER_ONLY_409,
    "images_removal_destroy": REVIEWER_ONLY_409,
    "fields_retrieve": MEMBERS,
    "fields_cells_create": REVIEWER_ONLY_409,
    "notifications_list": ALL,
    "notifications_read_create": ALL,
    "audit_events_list": (403, 403, 403, 200),
    "model_versions_list": ALL,
    "model_versions_retrieve": ALL,
    # The admin site's right (classifier.change_modelversion), which a lab admin role lacks.
    "model_versions_activate_create": (403, 403, 403, 403),
}
ANONYMOUS = {"auth_token_create": 200}


@functools.cache
def schema_operations() -> dict[str, tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        operation["operationId"]: (path, method.upper())
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    }


def test_every_operation_has_a_row(db):
    assert set(schema_operations()) == set(EXPECTED)


def _body(operation: str, world) -> tuple[dict | None, str]:
    bodies = {
        "auth_token_create": {"username": "clin", "password": "pass-for-tests-123"},
        "patients_create": {"site": world.site.pk, "identifier": "NEW-1"},
        "cases_create": {"patient": world.patient.pk},
        "cases_partial_update": {"clinical_notes": "Fever, 4 days"},
        "cases_images_create": {"files": [SimpleUploadedFile("new.png", cell_png(77))]},
        "cases_red_cell_count_update": {"red_cells_per_ul": 5_000_000},
        "cases_confirm_remaining_create": {"expected": 0},
        "cases_sign_off_create": {"diagnosis": "positive"},
        "cases_send_back_create": {"reason": "Blurred photographs"},
        "cases_reopen_create": {"reason": "Wrong patient"},
        "cases_exports_create": {"kind": "csv"},
        "images_reviews_create": {"decision": "confirm"},
        "fields_cells_create": {"x": 30, "y": 30},
        "notifications_read_create": {},
    }
    fmt = "multipart" if operation == "cases_images_create" else "json"
    return bodies.get(operation), fmt


def _url(path: str, world) -> str:
    values = {
        "site_id": world.site.pk,
        "patient_id": world.patient.pk,
        "case_id": world.case.pk,
        "image_id": world.cell.pk,
        "field_id": world.field.pk,
        "export_id": world.export.pk,
        "version_id": world.version.pk,
        "which": "file",
        "kind": "csv",
    }
    return path.format(**values)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("operation", sorted(EXPECTED))
def test_each_caller_gets_the_pages_answer(operation, caller, world, callers, enqueued):
    path, method = schema_operations()[operation]
    if caller == "anonymous":
        expected = ANONYMOUS.get(operation, 401)
    else:
        expected = EXPECTED[operation][CALLERS.index(caller) - 1]
    body, fmt = _body(operation, world)
    client = client_for(callers[caller])
    response = getattr(client, method.lower())(_url(path, world), body, format=fmt)
    assert response.status_code == expected, (operation, caller, response.content[:300])
    if expected >= 400:
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["status"] == expected
    if expected == 401:
        assert response["WWW-Authenticate"] == "Token"
