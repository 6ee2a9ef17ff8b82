"""The admin's model registry pages: versions with their model cards and evaluation plots."""

import numpy as np
from django.contrib.auth.models import User

from classifier.models import ModelVersion
from classifier.registry import register_version
from training import plots
from training.evaluate import record_evaluation
from training.metrics import summarize


def make_version(tmp_path) -> ModelVersion:
    """A version as the real writers leave it: registered by classifier.registry, then evaluated
    through training.evaluate.record_evaluation (metrics and plots stored as evaluate_model does)."""
    model_file = tmp_path / "v1.keras"
    model_file.write_bytes(b"a model file: the admin pages never load it")
    version = register_version(
        name="v1",
        model_path=model_file,
        threshold=0.42,
        card={"intended_use": "Research and decision support", "data": {"patients": 99}},
    )
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 50)
    probabilities = np.clip(labels * 0.6 + rng.uniform(0, 0.4, labels.size), 0, 1)
    groups = np.arange(labels.size) // 5
    result = summarize(labels, probabilities, groups, version.threshold, reps=20)
    folder = tmp_path / "evaluations" / "t1"
    result.update(
        data="/data/nih",
        evaluated_at="t1",
        folder=str(folder),
        plots=plots.write_all(folder, labels, probabilities, version.threshold),
    )
    record_evaluation(version, result)
    return version


def test_the_version_page_shows_its_card_and_plots(client, db, tmp_path):
    admin = User.objects.create_superuser("root", password="pass-for-tests-123")
    client.force_login(admin)
    version = make_version(tmp_path)
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


def test_plots_are_not_served_to_non_staff(client, clinician, tmp_path):
    version = make_version(tmp_path)
    client.force_login(clinician)
    response = client.get(f"/admin/classifier/modelversion/{version.pk}/plots/0/roc.png")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
