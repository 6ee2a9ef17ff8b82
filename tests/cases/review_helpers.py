"""Helpers of the review-workflow tests: a case with analysed cells, ready for review."""

import hashlib

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from cases.analysis.status import case_status_refresh
from cases.models import Case, Image
from classifier.models import ModelVersion
from tests.cases.web_helpers import cell_png, predict
from tests.conftest import make_user


def model_version(name: str = "review-v1", threshold: float = 0.5) -> ModelVersion:
    version, _ = ModelVersion.objects.get_or_create(
        name=name,
        defaults={"file": "models/dummy.keras", "sha256": "0" * 64, "threshold": threshold},
    )
    return version


def add_image(
    case: Case, by, *, n: int, status: str = Image.Status.DONE, files: bool = False
) -> Image:
    digest = hashlib.sha256(f"{case.pk}-{n}".encode()).hexdigest()
    name = f"cases/{case.pk}/images/{n}.png"
    if files:
        name = default_storage.save(name, ContentFile(cell_png(n)))
    return Image.objects.create(
        case=case,
        file=name,
        original_name=f"cell-{n}.png",
        kind=Image.Kind.CELL,
        sha256=digest,
        width=48,
        height=48,
        uploaded_by=by,
        status=status,
        error="could not decode" if status == Image.Status.FAILED else "",
    )


def add_cells(
    case: Case,
    by,
    probabilities: list[float],
    *,
    quality_ok: list[bool] | None = None,
    failed: int = 0,
    files: bool = False,
) -> list[Image]:
    """Cells with predictions (and `failed` failed images), then the case awaits review."""
    version = model_version()
    start = case.images.count()
    images = []
    for i, probability in enumerate(probabilities):
        image = add_image(case, by, n=start + i, files=files)
        ok = True if quality_ok is None else quality_ok[i]
        predict(
            image,
            version,
            probability,
            quality_ok=ok,
            quality_flags=[] if ok else ["not_a_cell"],
            heatmaps=files,
        )
        images.append(image)
    for j in range(failed):
        add_image(case, by, n=start + len(probabilities) + j, status=Image.Status.FAILED)
    with transaction.atomic():
        case_status_refresh(case=case, by=by)
    case.refresh_from_db()
    return images


def second_reviewer(site):
    return make_user("rev2", "reviewer", [site])
