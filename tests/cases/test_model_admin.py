"""The admin's model registry pages: versions with their model cards and evaluation plots."""

from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from classifier.models import ModelVersion
from classifier.synthetic import png_bytes


def make_version() -> ModelVersion:
    plot = default_storage.save(
        "models/v1/evaluations/t1/roc.png",
        ContentFile(png_bytes(__import__("numpy").zeros((20, 20, 3), "uint8"))),
    )
    return ModelVersion.objects.create(
        name="v1",
        file="models/v1.keras",
        sha256="0" * 64,
        threshold=0.42,
        card={"intended_use": "Research and decision support", "data": {"patients": 99}},
        metrics={
            "auc": 0.99,
            "evaluations": [
                {
                    "evaluated_at": "t1",
                    "data": "/data/nih",
                    "n": 100,
                    "accuracy": 0.97,
                    "auc": 0.99,
                    "sensitivity": 0.98,
                    "specificity": 0.96,
                    "threshold": 0.42,
                    "stored_plots": {"roc": plot},
                }
            ],
        },
    )


def test_the_version_page_shows_its_card_and_plots(client, db):
    admin = User.objects.create_superuser("root", password="pass-for-tests-123")
    client.force_login(admin)
    version = make_version()
    page = client.get(f"/admin/classifier/modelversion/{version.pk}/change/")
    body = page.content.decode()
    assert page.status_code == 200
    assert "Research and decision support" in body and "<strong>patients</strong>: 99" in body
    plot_url = f"/admin/classifier/modelversion/{version.pk}/plots/0/roc.png"
    assert plot_url in body
    response = client.get(plot_url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert (
        client.get(f"/admin/classifier/modelversion/{version.pk}/plots/0/missing.png").status_code
        == 404
    )
    assert (
        client.get(f"/admin/classifier/modelversion/{version.pk}/plots/5/roc.png").status_code
        == 404
    )


def test_plots_are_not_served_to_non_staff(client, clinician):
    version = make_version()
    client.force_login(clinician)
    response = client.get(f"/admin/classifier/modelversion/{version.pk}/plots/0/roc.png")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
