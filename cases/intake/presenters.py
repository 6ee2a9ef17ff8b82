"""JSON shapes shared by the live case page (status.json) and the REST API."""

from collections import Counter

from django.conf import settings
from django.core.paginator import Paginator
from django.urls import reverse
from django.utils import timezone

from cases.intake.selectors import case_images
from cases.models import Case, Image
from cases.summary import case_summary, is_counted_cell, is_near_threshold, prediction_of


def image_payload(image: Image, *, margin: float | None = None) -> dict:
    """One image with its prediction fields (null when it has not been analysed yet)."""
    margin = settings.ANALYSIS_UNCERTAIN_MARGIN if margin is None else margin
    prediction = prediction_of(image)
    has_heatmap = prediction is not None and bool(prediction.heatmap)
    has_raw = prediction is not None and bool(prediction.heatmap_raw)
    return {
        "id": image.pk,
        "name": str(image),
        "status": image.status,
        "status_label": image.get_status_display(),
        "error": image.error,
        "kind": image.kind,
        "parent_id": image.parent_id,
        # Whether the cell enters the counts (cases.summary.is_counted_cell); a detected cell
        # cut by the field's edge, or removed by a reviewer, is shown but never counted.
        "counted_cell": is_counted_cell(image),
        "on_border": image.on_border,
        "removed": image.removed,
        "width": image.width,
        "height": image.height,
        "probability": prediction.probability if prediction else None,
        "label": prediction.label if prediction else None,
        "threshold": prediction.threshold if prediction else None,
        "quality_ok": prediction.quality_ok if prediction else None,
        "quality_flags": prediction.quality_flags if prediction else None,
        "model_version": prediction.model_version.name if prediction else None,
        "near_threshold": is_near_threshold(prediction, margin) if prediction else None,
        "file_url": reverse("image_file", args=[image.pk]),
        "heatmap_url": reverse("image_heatmap", args=[image.pk]) if has_heatmap else None,
        "heatmap_raw_url": reverse("image_heatmap_raw", args=[image.pk]) if has_raw else None,
    }


def status_counts(images: list[Image]) -> dict:
    by_status = Counter(img.status for img in images)
    counts = {status: by_status.get(status, 0) for status in Image.Status.values}
    counts["total"] = len(images)
    return counts


# Image cards per page of the case page and of status.json: a 461-image case is no longer one
# 26,000-pixel page, and the 2-second poll carries one page of images, not all of them.
IMAGE_PAGE_SIZE = 60


def _when(value) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M")


def case_headline(case: Case, summary: dict) -> dict:
    """What the case page leads with: the signed diagnosis once there is one, else the AI's call.

    `state` is "final", "review" (analysed, waiting for a reviewer) or "ai" (still analysing, or
    nothing to count); `text` is the sentence shown.
    """
    if case.status == Case.Status.SIGNED_OFF:
        signer = case.signed_off_by
        text = (
            f"Final diagnosis: {case.get_final_diagnosis_display()}, signed off by "
            f"{signer.get_full_name() or signer.get_username()} on {_when(case.signed_off_at)}"
        )
        if case.final_parasitemia is not None:
            text += (
                f"; parasitemia {case.final_parasitemia:.2f}% "
                f"({case.final_positive_cells} of {case.final_reviewed_cells} reviewed cells)"
            )
        return {"state": "final", "text": text + "."}
    if case.status == Case.Status.AWAITING_REVIEW:
        ai = {"positive": "AI suggests positive", "negative": "AI suggests negative"}.get(
            summary["call"], summary["call_label"]
        )
        again = " again (reopened: the earlier sign-off is superseded)" if case.reopened_at else ""
        return {"state": "review", "text": f"{ai}: awaiting review{again}. Not a diagnosis yet."}
    return {"state": "ai", "text": summary["call_label"]}


def case_status_payload(
    case: Case, *, with_images: bool = True, page: int | str | None = 1
) -> dict:
    """Everything the case page needs to update itself in place while analysis runs.

    The summary and counts cover every image; `images` is one page of them (`page`, 1-based;
    out-of-range pages give the last), described by `image_page`.
    """
    margin = settings.ANALYSIS_UNCERTAIN_MARGIN
    images = list(case_images(case))
    counts = status_counts(images)
    summary = case_summary(images, margin=margin)
    if case.status == Case.Status.SIGNED_OFF:
        # The reviewer's diagnosis leads (the headline); the AI's call is history by now.
        summary["call_label"] = {
            "positive": "Before review, the AI suggested positive",
            "negative": "Before review, the AI suggested negative",
        }.get(summary["call"], f"Before review: {summary['call_label']}")
    payload = {
        "id": case.pk,
        "status": case.status,
        "status_label": case.get_status_display(),
        "done": not any(counts[status] for status in Image.PENDING),
        "counts": counts,
        "summary": summary,
        "headline": case_headline(case, summary),
    }
    if with_images:
        shown = Paginator(images, IMAGE_PAGE_SIZE).get_page(page)
        payload["images"] = [image_payload(img, margin=margin) for img in shown.object_list]
        payload["image_page"] = {
            "number": shown.number,
            "pages": shown.paginator.num_pages,
            "size": IMAGE_PAGE_SIZE,
            "first": shown.start_index(),
            "last": shown.end_index(),
            "total": shown.paginator.count,
        }
    return payload
