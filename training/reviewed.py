"""Reviewer-labelled images from the database, for ``train_model --include-reviewed``.

Every image a reviewer confirmed or overrode joins the training data with the reviewer's label
(the latest review of an image wins). Its group is its case, so all reviewed images of one case
fall on the same side of the split. cases/ is imported lazily and only read, never written.
"""

from __future__ import annotations

REVIEW_LABELS = {"parasitized": 1, "uninfected": 0}


def _review_model():
    from cases.models import Image, Review

    return Image, Review


def latest_labels() -> dict[int, str]:
    """image id -> label of its latest review (ties on created_at broken by the higher id)."""
    _, review = _review_model()
    latest: dict[int, str] = {}
    rows = review.objects.order_by("image_id", "-created_at", "-id")
    for image_id, label in rows.values_list("image_id", "label"):
        latest.setdefault(image_id, label)
    return latest


def reviewed_examples(site: str | None = None) -> list[tuple[bytes, int, str]]:
    """(image bytes, label 1/0, "case-<case id>") for every reviewed image (of one site, by its
    code, when given). Cells a reviewer removed from a field are not cells: left out."""
    image_model, _ = _review_model()
    labels = latest_labels()
    examples = []
    images = image_model.objects.filter(pk__in=labels, removed=False).order_by("id")
    if site:
        images = images.filter(case__patient__site__code=site)
    for image in images.only("id", "case_id", "file"):
        label = labels[image.pk]
        if label not in REVIEW_LABELS:
            continue
        with image.file.open("rb") as handle:
            data = handle.read()
        examples.append((data, REVIEW_LABELS[label], f"case-{image.case_id}"))
    return examples
