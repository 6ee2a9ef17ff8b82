"""Helpers of the review-workflow tests: a case with analysed cells, ready for review.

The images come from the real writers: uploaded through the intake service
(cases.intake.services.images_add) and failed through the analysis service
(cases.analysis.services.images_mark_failed). Only the network's result is written directly
(web_helpers.predict), in the shape the worker writes it.
"""

from django.db import transaction

from cases.analysis.services import images_mark_failed
from cases.analysis.status import case_status_refresh
from cases.intake import services
from cases.models import Case, Image
from cases.review import services as reviews
from classifier.models import ModelVersion
from tests.cases import web_helpers
from tests.cases.web_helpers import cell_png, predict
from tests.conftest import make_user

FAILED_REASON = "could not decode"


def model_version(name: str = "review-v1", threshold: float = 0.5) -> ModelVersion:
    return web_helpers.model_version(name, threshold)


def upload_cells(case: Case, by, numbers: list[int]) -> list[Image]:
    """Generated cells `cell-<n>.png` uploaded in one batch, as a clinician's upload stores
    them: files at their upload_to paths, content SHA-256, queued for analysis."""
    files = [(f"cell-{n}.png", cell_png(n)) for n in numbers]
    outcome = services.images_add(case=case, files=files, by=by, kind=Image.Kind.CELL)
    assert len(outcome.stored) == len(numbers), outcome.as_dict()
    return outcome.stored


def add_image(
    case: Case, by, *, n: int, status: str = Image.Status.DONE, files: bool = False
) -> Image:
    """One uploaded cell moved on to `status`: FAILED by the analysis service; PROCESSING or
    DONE set directly, as the worker's claim and its result leave it (`files` is kept for old
    callers: an upload always stores its file)."""
    (image,) = upload_cells(case, by, [n])
    if status == Image.Status.FAILED:
        images_mark_failed(image_ids=[image.pk], reason=FAILED_REASON)
    elif status != Image.Status.QUEUED:
        Image.objects.filter(pk=image.pk).update(status=status)
    image.refresh_from_db()
    return image


def add_cells(
    case: Case,
    by,
    probabilities: list[float],
    *,
    quality_ok: list[bool] | None = None,
    failed: int = 0,
    files: bool = False,
) -> list[Image]:
    """Cells with predictions (and `failed` failed images), then the case awaits review.

    `files` writes the heatmap files too (the cells' own files are always stored)."""
    version = model_version()
    start = case.images.count()
    uploaded = upload_cells(case, by, list(range(start, start + len(probabilities) + failed)))
    images = uploaded[: len(probabilities)]
    for i, (image, probability) in enumerate(zip(images, probabilities, strict=True)):
        ok = True if quality_ok is None else quality_ok[i]
        predict(
            image,
            version,
            probability,
            quality_ok=ok,
            quality_flags=[] if ok else ["not_a_cell"],
            heatmaps=files,
        )
    if failed:
        images_mark_failed(
            image_ids=[image.pk for image in uploaded[len(probabilities) :]], reason=FAILED_REASON
        )
    with transaction.atomic():
        case_status_refresh(case=case, by=by)
    case.refresh_from_db()
    for image in images:
        image.refresh_from_db()
    return images


def decide_cells(case: Case, reviewer, *, override=None, reason_code="", reason_text="") -> None:
    """The reviewer decides every analysed cell in order: overrides to uninfected (with the
    reason) each cell `override(image)` picks, confirms the rest."""
    for image in case.images.filter(prediction__isnull=False).order_by("id"):
        if override is not None and override(image):
            reviews.review_submit(
                image=image,
                by=reviewer,
                decision="override",
                label="uninfected",
                reason_code=reason_code,
                reason_text=reason_text,
            )
        else:
            reviews.review_submit(image=image, by=reviewer, decision="confirm")


def second_reviewer(site):
    return make_user("rev2", "reviewer", [site])
