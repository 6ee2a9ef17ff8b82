"""The case summary: counts, parasitized fraction with a Wilson interval, and a suggested call.

The one place where a case's numbers are computed. Plain functions over already-loaded images (no
queries): the case page, the review page, status.json, the API and the PDF, CSV and FHIR reports
all take their counts from `case_summary` (cases.review.selectors adds the reviewer's side), so
they cannot disagree. Which images are cells at all is decided by `is_counted_cell` alone.
"""

import math
from collections.abc import Iterable

from cases.models import Image, Prediction
from classifier.domain import OUT_OF_DOMAIN, OUT_OF_DOMAIN_MESSAGE

Z_95 = 1.959963984540054
OUTSIDE_DOMAIN_LABEL = OUT_OF_DOMAIN_MESSAGE[0].upper() + OUT_OF_DOMAIN_MESSAGE[1:]

CALL_RULE = (
    "Suggested positive if at least 1 quality-passed cell is called parasitized at the model's "
    "threshold; negative only when every image is analysed and no quality-passed cell is "
    "parasitized. Images flagged by the quality gate are kept out of the counts. Every positive "
    "call must be confirmed by a reviewer."
)


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion; None when nothing was counted.

    Chosen over the normal approximation because it stays inside [0, 1] and behaves at 0/n,
    which is the usual case here (few or no parasitized cells among hundreds).
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} must lie in [0, {n}]")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def prediction_of(image: Image) -> Prediction | None:
    # A missing reverse one-to-one raises RelatedObjectDoesNotExist, an AttributeError.
    return getattr(image, "prediction", None)


def is_near_threshold(prediction: Prediction, margin: float) -> bool:
    return abs(prediction.probability - prediction.threshold) < margin


def case_domain_status(images: list[Image]) -> str:
    """The domain guard's decision on the images' case, when the case came loaded with them
    (case.images... sets it): no query, and every caller of case_summary follows the guard."""
    for image in images:
        if Image.case.is_cached(image):
            return image.case.domain_status
    return ""


def is_counted_cell(image: Image) -> bool:
    """Whether an image is a red blood cell that enters the counts (and the review).

    Field photographs are not cells; a detected cell cut by the field's edge is drawn on the
    field but never counted, and neither is a detection a reviewer removed as not a cell
    (cases.fields.services). Any further exclusion belongs here, so that every page and report
    follows it.
    """
    return image.kind == Image.Kind.CELL and not image.on_border and not image.removed


def is_field_photograph(image: Image) -> bool:
    return image.kind == Image.Kind.FIELD and image.parent_id is None


def case_summary(
    images: Iterable[Image], *, margin: float, domain_status: str | None = None
) -> dict:
    """Summarise a case's images (predictions preloaded): every page, report and API response.

    `cells` are the counted cells (is_counted_cell), `predicted` those with a model result;
    `counted` leaves out the quality-flagged ones, and `parasitized + uninfected == counted`.
    `near_threshold` is among the counted cells. `pending` and `failed` are over every image,
    field photographs included (a field still being segmented means cells are still to come).
    """
    images = list(images)
    if domain_status is None:
        domain_status = case_domain_status(images)
    pending = sum(img.status in Image.PENDING for img in images)
    cells = [img for img in images if is_counted_cell(img)]
    predictions = [p for p in map(prediction_of, cells) if p is not None]
    counted = [p for p in predictions if p.quality_ok]
    parasitized = sum(p.label == Prediction.Label.PARASITIZED for p in counted)
    n = len(counted)
    interval = wilson_interval(parasitized, n)
    if parasitized:
        call, call_label = "positive", "Suggests positive: confirm by review"
    elif pending:
        call, call_label = "pending", "Analysis in progress"
    elif n:
        call, call_label = "negative", "Suggests negative"
    else:
        call, call_label = "none", "No quality-passed cell to count"
    # The domain guard (cases.analysis.domain_guard) refuses a case unlike the model's validated images:
    # no call and no parasitemia, whatever the cells' labels say.
    outside = domain_status == OUT_OF_DOMAIN
    if outside:
        call, call_label, interval = "outside_domain", OUTSIDE_DOMAIN_LABEL, None
    return {
        "field_photographs": sum(map(is_field_photograph, images)),
        "cells": len(cells),
        "predicted": len(predictions),
        "counted": n,
        "parasitized": parasitized,
        "uninfected": n - parasitized,
        "quality_flagged": len(predictions) - n,
        "parasitized_fraction": parasitized / n if n and not outside else None,
        "ci95": list(interval) if interval else None,
        "near_threshold": sum(is_near_threshold(p, margin) for p in counted),
        "uncertain_margin": margin,
        "pending": pending,
        "failed": sum(img.status == Image.Status.FAILED for img in images),
        "call": call,
        "call_label": call_label,
        "rule": CALL_RULE,
        "domain_status": domain_status,
    }
