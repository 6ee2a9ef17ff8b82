"""Admin pages a lab admin can read: the model registry, the audit trail, and 403/404 pages."""

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.urls import reverse

from cases.review import services as reviews
from classifier.models import ModelVersion
from tests.cases.review_helpers import add_cells

VALIDATION = {
    "n": 2304,
    "n_parasitized": 1012,
    "n_groups": 19,
    "accuracy": 0.96484375,
    "auc": 0.9924726807719135,
    "sensitivity": 0.9762845849802372,
    "specificity": 0.9558823529411765,
    "ci95": {"auc": [0.9852436471019992, 0.995587739214023]},
}


@pytest.fixture
def root(client, db):
    client.force_login(User.objects.create_superuser("root", password="pass-for-tests-123"))
    return client


@pytest.fixture
def shipped(db) -> ModelVersion:
    """Shaped like the shipped model's registry row: metrics nested, plots not on this disk."""
    return ModelVersion.objects.create(
        name="nih-cnn-v5",
        file="models/v5.keras",
        sha256="0" * 64,
        threshold=0.4082580401237206,
        metrics={
            "validation": VALIDATION,
            "evaluations": [
                {
                    "evaluated_at": "2026-11-25T22:54:32+00:00",
                    "data": "/work/shared/data/nih_cells",
                    "n": 2304,
                    "auc": 0.99,
                    "stored_plots": {"roc": "models/nih-cnn-v5/evaluations/x/roc.png"},
                }
            ],
        },
        card={
            "data": {"source": "/work/shared/data/nih_cells", "patients": 99},
            "limitations": ["Trained on P. falciparum from one hospital."],
            "hyperparameters": {"learning_rate": 0.0003, "batch_size": 32},
        },
    )


def test_the_version_list_shows_the_nested_validation_metrics_and_a_short_threshold(root, shipped):
    body = root.get("/admin/classifier/modelversion/").content.decode()
    assert "AUC 0.992 · sens 0.976 · spec 0.956 · acc 0.965 · n=2304" in body
    assert "0.408" in body and "0.4082580401237206" not in body


def test_the_version_page_is_readable_without_server_paths_or_broken_plots(root, shipped):
    body = root.get(f"/admin/classifier/modelversion/{shipped.pk}/change/").content.decode()
    assert "/work/shared" not in body
    assert "roc.png" not in body  # not stored here: no broken image
    assert "Plots are not stored on this installation" in body
    assert "<li>Trained on P. falciparum from one hospital.</li>" in body
    assert "<strong>learning rate</strong>: 0.0003" in body
    assert "0.985–0.996" in body  # the AUC interval
    assert "&quot;" not in body.split('id="content-main"')[-1]  # no raw JSON


def test_the_audit_page_shows_changes_not_python_dicts(client, case, clinician, reviewer):
    add_cells(case, clinician, [0.9])
    reviews.review_claim(case=case, by=reviewer)
    staff = User.objects.create_user("auditor", password="pass-for-tests-123", is_staff=True)
    client.force_login(staff)
    body = client.get(reverse("review_audit")).content.decode()
    assert "{&#x27;" not in body and "{'" not in body
    assert "<dt>assigned reviewer</dt>" in body
    assert "→" in body


@override_settings(DEBUG=False)
def test_404_and_403_pages_keep_the_navigation_and_say_what_to_do(client, clinician):
    client.force_login(clinician)
    missing = client.get("/cases/999999/")
    assert missing.status_code == 404
    body = missing.content.decode()
    assert 'aria-label="Main"' in body and "ask a lab admin" in body
    forbidden = client.get(reverse("review_queue"))
    assert forbidden.status_code == 403
    body = forbidden.content.decode()
    assert 'aria-label="Main"' in body and "Only reviewers have a review queue." in body
