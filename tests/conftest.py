"""Fixtures shared by the whole suite: two sites, named users in each role, a patient and a case."""

from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User

from cases.intake import services
from cases.models import Site


@pytest.fixture(autouse=True)
def _private_media(settings, tmp_path):
    # Every test writes uploads and heatmaps into its own temporary folder.
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    settings.SECURE_SSL_REDIRECT = False
    settings.STORAGES["staticfiles"] = {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
    }


def make_user(username: str, role: str | None, sites: list[Site]) -> User:
    user = User.objects.create_user(username=username, password="pass-for-tests-123")
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    for site in sites:
        site.members.add(user)
    return user


@pytest.fixture
def site(db) -> Site:
    return Site.objects.create(name="Chittagong Lab", code="ctg")


@pytest.fixture
def other_site(db) -> Site:
    return Site.objects.create(name="Other Clinic", code="other")


@pytest.fixture
def clinician(site) -> User:
    return make_user("clin", "clinician", [site])


@pytest.fixture
def reviewer(site) -> User:
    return make_user("rev", "reviewer", [site])


@pytest.fixture
def lab_admin(site) -> User:
    return make_user("labadmin", "admin", [site])


@pytest.fixture
def outsider(other_site) -> User:
    return make_user("outsider", "clinician", [other_site])


@pytest.fixture
def patient(site, clinician):
    return services.patient_create(
        site=site, identifier="P-001", by=clinician, sex="F", age_years=34
    )


@pytest.fixture
def case(patient, clinician):
    return services.case_create(patient=patient, by=clinician, clinical_notes="Fever 3 days")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A real .keras file of the production architecture, trained for seconds on synthetic cells."""
    from classifier.testing import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("models") / "tiny.keras")


def register_model(
    path,
    name: str = "tiny-v1",
    active: bool = True,
    threshold: float = 0.5,
    kind: str = "classifier",
):
    """Register a model file through the registry's own writer (classifier.registry.
    register_version: stored as models/<name>.keras, SHA-256 checked), optionally active.

    Activation sets the flags directly, as cases.analysis.model_versions.model_activate leaves
    them (this version the one active of its kind), but without its `model.activated` audit
    event: tests that activate count those events and expect only their own.
    """
    from classifier.models import ModelVersion
    from classifier.registry import register_version

    version = register_version(name=name, model_path=path, threshold=threshold, kind=kind)
    if active:
        ModelVersion.objects.filter(kind=kind, is_active=True).update(is_active=False)
        ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
        version.is_active = True
    return version


@pytest.fixture
def active_model(db, tiny_model_path):
    from classifier.runtime import forget_loaded_model

    forget_loaded_model()
    version = register_model(tiny_model_path)
    yield version
    forget_loaded_model()


SHIPPED_DETECTOR = Path(__file__).resolve().parents[1] / "classifier" / "default_detector"


@pytest.fixture
def active_detector(db):
    """The shipped cell detector (classifier/default_detector/), registered and active."""
    import json

    from classifier.runtime import forget_loaded_model

    manifest = json.loads((SHIPPED_DETECTOR / "manifest.json").read_text())
    forget_loaded_model()
    version = register_model(
        SHIPPED_DETECTOR / manifest["file"],
        name=manifest["name"],
        threshold=manifest["threshold"],
        kind="detector",
    )
    yield version
    forget_loaded_model()
