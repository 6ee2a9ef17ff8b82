"""The domain guard in the product (cases.analysis.domain_guard): a case or field unlike the images the
model was validated on gets no automatic call or parasitemia, no bulk confirmation, and leads the
review queue flagged."""

from types import SimpleNamespace

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from cases.analysis.domain_guard import domain_check_cells
from cases.models import AuditEvent, DomainStatus, Image
from cases.review import services as reviews
from cases.review.selectors import review_queue
from cases.summary import OUTSIDE_DOMAIN_LABEL, case_summary
from classifier import domain
from tests.cases.review_helpers import add_cells, add_image, model_version
from tests.cases.web_helpers import predict

COLOUR = np.array([170.0, 144.0, 128.0, 17.0, 3.0, 3.0])


def _cells(rng, n: int, shift: float = 0.0):
    """Engine-like results: features and colours of one slide (its own small colour offset)."""
    offset = rng.normal(0, 3, 6) + shift
    return [
        SimpleNamespace(
            features=rng.normal(0, 1, 128).astype(np.float32),
            colour=(COLOUR + offset + rng.normal(0, 2, 6)).astype(np.float32),
        )
        for _ in range(n)
    ]


@pytest.fixture
def version(db):
    rng = np.random.default_rng(0)
    groups = {}
    for g in range(30):
        cells = _cells(rng, 20)
        groups[f"C{g}"] = (
            np.stack([c.features for c in cells]),
            np.stack([c.colour for c in cells]),
        )
    version = model_version()
    version.quality_reference = {"domain": domain.build_reference(groups)}
    version.save()
    return version


def _analysed_case(case, clinician, version, shift: float, n: int = 16):
    images = add_cells(case, clinician, [0.9] + [0.1] * (n - 1))
    domain_check_cells(
        version=version, cells=images, results=_cells(np.random.default_rng(3), n, shift)
    )
    case.refresh_from_db()
    return case


def _summary(case):
    return case_summary(case.images.select_related("prediction"), margin=0.15)


def test_a_case_like_the_validated_images_keeps_its_call(case, clinician, version):
    case = _analysed_case(case, clinician, version, shift=0.0)
    assert case.domain_status == DomainStatus.IN_DOMAIN
    assert case.domain_detail["model_version"] == version.name
    summary = _summary(case)
    assert summary["call"] == "positive" and summary["parasitized_fraction"] == 1 / 16


def test_a_case_unlike_them_says_manual_count_and_gives_no_call_or_parasitemia(
    case, clinician, version
):
    case = _analysed_case(case, clinician, version, shift=40.0)
    assert case.domain_status == DomainStatus.OUT_OF_DOMAIN
    assert case.domain_detail["score"] > case.domain_detail["limit"]
    summary = _summary(case)
    assert summary["call"] == "outside_domain"
    assert summary["call_label"] == OUTSIDE_DOMAIN_LABEL
    assert "manual count required" in summary["call_label"]
    assert summary["parasitized_fraction"] is None and summary["ci95"] is None
    event = AuditEvent.objects.filter(action="domain.judged", case=case).get()
    assert event.after["status"] == DomainStatus.OUT_OF_DOMAIN


def test_judging_again_changes_and_audits_nothing(case, clinician, version):
    case = _analysed_case(case, clinician, version, shift=40.0)
    images = list(case.images.all())
    domain_check_cells(
        version=version, cells=images, results=_cells(np.random.default_rng(3), 16, 40.0)
    )
    assert AuditEvent.objects.filter(action="domain.judged").count() == 1


def test_bulk_confirmation_is_refused_outside_the_domain(case, clinician, reviewer, version):
    case = _analysed_case(case, clinician, version, shift=40.0)
    claimed = reviews.review_claim(case=case, by=reviewer)
    with pytest.raises(ValidationError, match="outside the model's validated domain"):
        reviews.review_confirm_remaining(case=claimed, by=reviewer)


def test_a_refused_case_leads_the_review_queue_flagged(
    case, patient, clinician, reviewer, version, client
):
    from cases.intake import services

    calm = services.case_create(patient=patient, by=clinician)
    add_cells(calm, clinician, [0.9, 0.5])  # probable positive and near threshold: urgent
    refused = _analysed_case(case, clinician, version, shift=40.0)
    assert [c.pk for c in review_queue(reviewer)][0] == refused.pk
    client.force_login(reviewer)
    page = client.get(reverse("review_queue")).content.decode()
    assert "outside validated domain" in page


def test_a_field_is_judged_once_all_of_its_cells_are_analysed(case, clinician, version):
    field = add_image(case, clinician, n=500)
    field.kind = Image.Kind.FIELD
    field.save()
    cells = []
    for k in range(12):
        cell = add_image(case, clinician, n=600 + k, status=Image.Status.PROCESSING)
        cell.parent = field
        cell.save()
        cells.append(cell)
    results = _cells(np.random.default_rng(4), 12, shift=40.0)
    for cell in cells[:6]:
        cell.status = Image.Status.DONE
        cell.save()
        predict(cell, version, 0.1, heatmaps=False)
    domain_check_cells(version=version, cells=cells[:6], results=results[:6])
    field.refresh_from_db()
    assert field.domain_status == DomainStatus.NOT_JUDGED  # half its cells are still running
    for cell in cells[6:]:
        cell.status = Image.Status.DONE
        cell.save()
        predict(cell, version, 0.1, heatmaps=False)
    domain_check_cells(version=version, cells=cells[6:], results=results[6:])
    field.refresh_from_db()
    case.refresh_from_db()
    assert field.domain_status == DomainStatus.OUT_OF_DOMAIN
    assert field.domain_detail["cells"] == 12
    assert case.domain_status == DomainStatus.OUT_OF_DOMAIN


def test_a_version_without_a_domain_reference_judges_nothing_out(case, clinician):
    images = add_cells(case, clinician, [0.1] * 12)
    domain_check_cells(
        version=model_version(), cells=images, results=_cells(np.random.default_rng(1), 12, 40.0)
    )
    case.refresh_from_db()
    assert case.domain_status == DomainStatus.UNDETERMINED
    assert _summary(case)["call"] == "negative"
