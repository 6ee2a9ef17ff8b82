"""The case report as CSV: one row per image, with the AI's result and the current review."""

import csv
import io

from cases.models import Case, Image
from cases.reports.content import report_data
from cases.review.selectors import current_review
from cases.summary import is_counted_cell, prediction_of

CSV_COLUMNS = [
    "case_id",
    "patient_identifier",
    "image_id",
    "original_name",
    "kind",
    "parent_id",
    "status",
    "error",
    "ai_probability",
    "ai_label",
    "threshold",
    "quality_ok",
    "quality_flags",
    "counted",
    "on_border",
    "model_version",
    "review_decision",
    "final_label",
    "reason_code",
    "reason_text",
    "reviewer",
    "reviewed_at",
]


def _prediction_columns(image: Image) -> dict:
    prediction = prediction_of(image)
    if prediction is None:
        return {
            "ai_probability": "",
            "ai_label": "",
            "threshold": "",
            "quality_ok": "",
            "quality_flags": "",
            "counted": "false",
            "model_version": "",
        }
    return {
        "ai_probability": f"{prediction.probability:.4f}",
        "ai_label": prediction.label,
        "threshold": f"{prediction.threshold:.4f}",
        "quality_ok": str(prediction.quality_ok).lower(),
        "quality_flags": ";".join(map(str, prediction.quality_flags)),
        # In the AI's parasitemia: a counted cell with a quality-passed result.
        "counted": str(is_counted_cell(image) and prediction.quality_ok).lower(),
        "model_version": prediction.model_version.name,
    }


def _review_columns(image: Image) -> dict:
    review = current_review(image)
    if review is None:
        return dict.fromkeys(
            ["review_decision", "final_label", "reason_code", "reason_text", "reviewer"]
            + ["reviewed_at"],
            "",
        )
    return {
        "review_decision": review.decision,
        "final_label": review.label,
        "reason_code": review.reason_code,
        "reason_text": review.reason_text,
        "reviewer": review.reviewer.get_username(),
        "reviewed_at": review.created_at.isoformat(),
    }


# A spreadsheet reads a cell starting with one of these as a formula (or, for tab and CR, may
# shift it into one): such cells get a leading apostrophe (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value):
    """A cell value a spreadsheet shows as text: formula-like strings are prefixed with '."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def image_row(case: Case, image: Image) -> dict:
    row = {
        "case_id": case.pk,
        "patient_identifier": case.patient.identifier,
        "image_id": image.pk,
        "original_name": image.original_name,
        "kind": image.kind,
        "parent_id": image.parent_id or "",
        "status": image.status,
        "error": image.error,
        "on_border": str(image.on_border).lower(),
        **_prediction_columns(image),
        **_review_columns(image),
    }
    return {column: row[column] for column in CSV_COLUMNS}


def case_report_csv(case: Case) -> bytes:
    data = report_data(case)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for image in data.images:
        writer.writerow({k: csv_safe(v) for k, v in image_row(data.case, image).items()})
    return buffer.getvalue().encode("utf-8")
