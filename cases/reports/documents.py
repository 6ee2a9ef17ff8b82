"""Case reports: PDF (reportlab), CSV (one row per image) and FHIR R4 JSON (DiagnosticReport).

A report claims only what happened. Before sign-off the PDF is titled and watermarked PRELIMINARY
(AI only, not reviewed), lists what is still pending and makes no review statement; after
sign-off it names the reviewer and the time and lists every override with its reason. Every
count comes from cases.summary.case_summary (through ReviewCounts), as on the pages.

Small cases render in the request; a case with more than REPORT_DIRECT_MAX_IMAGES images is
rendered by a worker (cases.reports.tasks) into a ReportExport the page offers when ready. A
reopen keeps the signed report as a ReportExport marked superseded (report_keep_superseded).
"""

import csv
import io
import json
import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.utils import timezone
from django.utils.html import escape

from cases.models import Case, Image, Prediction, ReportExport
from cases.review.selectors import (
    ReviewCounts,
    case_images_with_reviews,
    current_review,
    review_counts_from,
)
from cases.summary import is_counted_cell, prediction_of

logger = logging.getLogger(__name__)

REPORT_DIRECT_MAX_IMAGES = getattr(settings, "REPORT_DIRECT_MAX_IMAGES", 200)
INTENDED_USE = (
    "Intended use: the AI results in this report are decision support for trained microscopists, "
    "not a stand-alone diagnosis."
)
PRELIMINARY_STATEMENT = (
    "PRELIMINARY REPORT: AI only, not reviewed. This case is not signed off; its results have "
    "not been confirmed by a reviewer and may still change. Do not use it as a diagnosis."
)
# Stored exports carry their kind of report in the file name: no extra column is needed to tell
# a signed report (which a later reopen supersedes) from a preliminary one.
FINAL_PREFIX, PRELIMINARY_PREFIX = "final-", "preliminary-"
CONTENT_TYPES = {
    ReportExport.Kind.PDF: "application/pdf",
    ReportExport.Kind.CSV: "text/csv; charset=utf-8",
    ReportExport.Kind.FHIR: "application/fhir+json",
}
EXTENSIONS = {
    ReportExport.Kind.PDF: "pdf",
    ReportExport.Kind.CSV: "csv",
    ReportExport.Kind.FHIR: "json",
}

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


@dataclass
class ReportData:
    case: Case
    images: list[Image]
    counts: ReviewCounts

    @property
    def model_versions(self) -> list[str]:
        names = {p.model_version.name for p in map(prediction_of, self.images) if p is not None}
        return sorted(names)


def report_data(case: Case) -> ReportData:
    case = Case.objects.select_related(
        "patient__site", "created_by", "signed_off_by", "assigned_reviewer"
    ).get(pk=case.pk)
    images = case_images_with_reviews(case)
    return ReportData(case=case, images=images, counts=review_counts_from(images))


def is_large(case: Case) -> bool:
    return case.images.count() > REPORT_DIRECT_MAX_IMAGES


def report_filename(case: Case, kind: str) -> str:
    return f"case-{case.pk}-{case.patient.identifier}-report.{EXTENSIONS[kind]}".replace(" ", "_")


def _when(value) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z") if value else ""


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}%"


def _ci(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f"{ci[0]:.2f}-{ci[1]:.2f}%"


# --- CSV ------------------------------------------------------------------------------------


def image_row(case: Case, image: Image) -> dict:
    prediction = prediction_of(image)
    review = current_review(image)
    return {
        "case_id": case.pk,
        "patient_identifier": case.patient.identifier,
        "image_id": image.pk,
        "original_name": image.original_name,
        "kind": image.kind,
        "parent_id": image.parent_id or "",
        "status": image.status,
        "error": image.error,
        "ai_probability": f"{prediction.probability:.4f}" if prediction else "",
        "ai_label": prediction.label if prediction else "",
        "threshold": f"{prediction.threshold:.4f}" if prediction else "",
        "quality_ok": "" if prediction is None else str(prediction.quality_ok).lower(),
        "quality_flags": ";".join(map(str, prediction.quality_flags)) if prediction else "",
        # In the AI's parasitemia: a counted cell with a quality-passed result.
        "counted": str(
            is_counted_cell(image) and prediction is not None and prediction.quality_ok
        ).lower(),
        "on_border": str(image.on_border).lower(),
        "model_version": prediction.model_version.name if prediction else "",
        "review_decision": review.decision if review else "",
        "final_label": review.label if review else "",
        "reason_code": review.reason_code if review else "",
        "reason_text": review.reason_text if review else "",
        "reviewer": review.reviewer.get_username() if review else "",
        "reviewed_at": review.created_at.isoformat() if review else "",
    }


def case_report_csv(case: Case) -> bytes:
    data = report_data(case)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for image in data.images:
        writer.writerow(image_row(data.case, image))
    return buffer.getvalue().encode("utf-8")


# --- FHIR R4 --------------------------------------------------------------------------------

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
# Verified against published HL7 value sets; every other concept below is text-coded on purpose.
LOINC_PLASMODIUM_PRESENCE_LM = "51587-4"  # Plasmodium sp [Presence] in Blood by Light microscopy
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"


def _quantity(value: float | int, unit: str, code: str) -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def _count(value: int) -> dict:
    return _quantity(value, "cells", "{cells}")


def case_report_fhir(case: Case) -> dict:
    """A FHIR R4 DiagnosticReport (status final) with contained Observations. Signed cases only."""
    data = report_data(case)
    case, counts = data.case, data.counts
    if case.status != Case.Status.SIGNED_OFF:
        raise ValidationError("Only a signed-off case can be exported as a final FHIR report.")
    subject = {
        "identifier": {
            "type": {"text": "Laboratory patient identifier"},
            "value": case.patient.identifier,
            "assigner": {"display": case.patient.site.name},
        },
        "display": case.patient.identifier,
    }
    signer = case.signed_off_by
    performer = {
        "identifier": {"type": {"text": "Platform user name"}, "value": signer.get_username()},
        "display": signer.get_full_name() or signer.get_username(),
    }
    issued = case.signed_off_at.isoformat()
    effective = case.created_at.isoformat()
    device = {"display": "AI decision support; model version " + ", ".join(data.model_versions)}
    category = [
        {
            "coding": [
                {"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}
            ]
        }
    ]

    def observation(obs_id: str, code: dict, **value) -> dict:
        return {
            "resourceType": "Observation",
            "id": obs_id,
            "status": "final",
            "category": category,
            "code": code,
            "subject": subject,
            "effectiveDateTime": effective,
            "issued": issued,
            "performer": [performer],
            "method": {
                "text": "Thin blood smear, light microscopy; each cell image classified by an AI "
                "model and confirmed or overridden by the reviewer"
            },
            "device": device,
            **value,
        }

    positive = case.final_diagnosis == Case.Diagnosis.POSITIVE
    low, high = case.final_parasitemia_low, case.final_parasitemia_high
    observations = [
        observation(
            "presence",
            {
                "coding": [
                    {
                        "system": LOINC,
                        "code": LOINC_PLASMODIUM_PRESENCE_LM,
                        "display": "Plasmodium sp [Presence] in Blood by Light microscopy",
                    }
                ],
                "text": "Malaria parasites (Plasmodium sp), thin smear",
            },
            valueCodeableConcept={"text": "Detected" if positive else "Not detected"},
        ),
        observation(
            "parasitemia",
            {"text": "Parasitemia: parasitized red blood cells per 100 red blood cells reviewed"},
            valueQuantity=_quantity(round(case.final_parasitemia, 4), "%", "%"),
            component=[
                {
                    "code": {"text": "95% confidence interval, lower bound (Wilson)"},
                    "valueQuantity": _quantity(round(low, 4), "%", "%"),
                },
                {
                    "code": {"text": "95% confidence interval, upper bound (Wilson)"},
                    "valueQuantity": _quantity(round(high, 4), "%", "%"),
                },
            ],
        ),
        observation(
            "cells-reviewed",
            {"text": "Red blood cells reviewed"},
            valueQuantity=_count(case.final_reviewed_cells),
        ),
        observation(
            "cells-parasitized",
            {"text": "Parasitized red blood cells (reviewer's final labels)"},
            valueQuantity=_count(case.final_positive_cells),
        ),
        observation(
            "cells-counted-ai",
            {"text": "Red blood cells counted by the AI model (quality-passed, before review)"},
            valueQuantity=_count(counts.ai_counted),
        ),
        observation(
            "cells-parasitized-ai",
            {"text": "Parasitized red blood cells (AI model, before review)"},
            valueQuantity=_count(counts.ai_parasitized),
        ),
    ]
    conclusion = (
        f"{case.get_final_diagnosis_display()}: parasitemia {case.final_parasitemia:.2f}% "
        f"({case.final_positive_cells}/{case.final_reviewed_cells} cells; 95% CI "
        f"{low:.2f}-{high:.2f}%). AI decision support, not a stand-alone diagnosis."
    )
    if case.sign_off_note:
        conclusion += f" Note: {case.sign_off_note}"
    return {
        "resourceType": "DiagnosticReport",
        "id": f"case-{case.pk}",
        "identifier": [{"type": {"text": "Platform case id"}, "value": str(case.pk)}],
        "status": "final",
        "category": [{"coding": [{"system": V2_0074, "code": "HM", "display": "Hematology"}]}],
        "code": {"text": "Malaria thin blood smear microscopy, AI-assisted, reviewer-confirmed"},
        "subject": subject,
        "effectiveDateTime": effective,
        "issued": issued,
        "performer": [performer],
        "resultsInterpreter": [performer],
        "contained": observations,
        "result": [{"reference": f"#{obs['id']}"} for obs in observations],
        "conclusion": conclusion,
    }


def case_report_fhir_bytes(case: Case) -> bytes:
    return json.dumps(case_report_fhir(case), indent=2).encode("utf-8")


# --- PDF ------------------------------------------------------------------------------------

THUMB_PX = 96


def _thumbnail(name: str) -> io.BytesIO | None:
    """A small JPEG of a stored image, or None when the file cannot be read."""
    from PIL import Image as PILImage

    if not name:
        return None
    try:
        with default_storage.open(name, "rb") as handle:
            picture = PILImage.open(io.BytesIO(handle.read()))
            picture.load()
    except (OSError, ValueError) as exc:
        logger.warning("report: cannot read %s: %s", name, exc)
        return None
    picture = picture.convert("RGB")
    picture.thumbnail((THUMB_PX, THUMB_PX))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=80)
    out.seek(0)
    return out


def _label_short(label: str) -> str:
    return "P" if label == Prediction.Label.PARASITIZED else "U"


def _pct_ci(value: float | None, ci: tuple[float, float] | None) -> str:
    """'25.00% (4.56-69.94%)', or '-' when nothing was counted (never an empty '()')."""
    if value is None:
        return "-"
    return f"{_pct(value)} ({_ci(ci)})" if ci else _pct(value)


def _person(user) -> str:
    return (user.get_full_name() or user.get_username()) if user else "-"


def pending_items(case: Case, counts: ReviewCounts) -> list[str]:
    """What stands between this case and a final report, in words (empty once signed off)."""
    if case.status == Case.Status.SIGNED_OFF:
        return []
    items = []
    if counts.analysing:
        items.append(f"{counts.analysing} image(s) still being analysed")
    if counts.unreviewed:
        items.append(f"{counts.unreviewed} of {counts.cells} cells not reviewed")
    if counts.cells == 0 and not counts.analysing:
        items.append("no cell has a model result yet")
    if case.assigned_reviewer_id is None:
        items.append("no reviewer has claimed the case")
    items.append("sign-off with a final diagnosis")
    return items


@dataclass(frozen=True)
class Superseded:
    """Why a signed report no longer stands: the case was reopened."""

    by: str
    at: datetime
    reason: str


def case_report_pdf(
    case: Case, *, compress: bool = True, superseded: Superseded | None = None
) -> bytes:
    """The case report as PDF: final once signed off, else preliminary (and watermarked so).

    compress=False leaves page streams readable (tests). `superseded` stamps a signed report
    that a reopen replaced (report_keep_superseded).
    """
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Image as RLImage
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    data = report_data(case)
    case, counts = data.case, data.counts
    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=7, leading=8)
    body = styles["BodyText"].clone("body", fontSize=9, leading=11)
    signed = case.status == Case.Status.SIGNED_OFF
    generated = timezone.now()

    def p(text: str, style=body) -> Paragraph:
        return Paragraph(text, style)

    if signed:
        title = f"Malaria microscopy report: case {case.pk}"
        statement = (
            f"{INTENDED_USE} Every cell result below was reviewed; the case was signed off by "
            f"{_person(case.signed_off_by)} on {_when(case.signed_off_at)}, whose decision is "
            "final."
        )
    else:
        title = f"PRELIMINARY report (AI only, not reviewed): case {case.pk}"
        statement = f"{PRELIMINARY_STATEMENT} {INTENDED_USE}"
    story = [p(escape(title), styles["Title"])]
    if superseded is not None:
        story.append(
            p(
                f"<b>SUPERSEDED: this signed report no longer stands. The case was reopened by "
                f"{escape(superseded.by)} on {_when(superseded.at)}: "
                f"{escape(superseded.reason)}</b>"
            )
        )
    story += [p(f"<i>{escape(statement)}</i>")]
    pending = pending_items(case, counts)
    if pending:
        story.append(p("<b>Still pending:</b> " + escape("; ".join(pending)) + "."))
    story.append(Spacer(1, 3 * mm))
    patient = case.patient
    if signed:
        reviewer_row = [
            "Signed off by",
            _person(case.signed_off_by),
            "Signed off at",
            _when(case.signed_off_at),
        ]
        result_row = [
            "Final diagnosis",
            case.get_final_diagnosis_display(),
            "Parasitemia (95% CI)",
            _pct_ci(
                case.final_parasitemia, (case.final_parasitemia_low, case.final_parasitemia_high)
            ),
        ]
    else:
        claimed = (
            f"{_person(case.assigned_reviewer)} (claimed {_when(case.claimed_at)}), not signed off"
            if case.assigned_reviewer
            else "none yet"
        )
        reviewer_row = ["Reviewer", claimed, "Signed off", "no"]
        result_row = ["Final diagnosis", "none: not signed off", "Parasitemia", "see AI counts"]
    details = [
        ["Patient identifier", patient.identifier, "Site", patient.site.name],
        [
            "Sex / age",
            f"{patient.get_sex_display()} / {patient.age_years if patient.age_years is not None else '-'}",
            "Case created",
            f"{_when(case.created_at)} by {case.created_by}",
        ],
        [
            "Status",
            case.get_status_display(),
            "Model version",
            ", ".join(data.model_versions) or "-",
        ],
        reviewer_row,
        result_row,
    ]
    grid = TableStyle(
        [
            ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
            ("FONTSIZE", (0, 0), (-1, -1), 8),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]
    )
    table = Table(
        [[p(escape(str(c))) for c in row] for row in details],
        colWidths=[30 * mm, 55 * mm, 32 * mm, 63 * mm],
    )
    table.setStyle(grid)
    story += [table, Spacer(1, 3 * mm)]
    if signed and case.sign_off_note:
        story.append(p(f"<b>Reviewer's note:</b> {escape(case.sign_off_note)}"))
    if case.reopen_reason:
        story.append(p(f"Reopened {_when(case.reopened_at)}: {escape(case.reopen_reason)}"))

    reviewer_head = (
        "Reviewer" if signed else f"Reviewer so far ({counts.reviewed} of {counts.cells})"
    )
    count_rows = [
        ["", "AI model", reviewer_head],
        ["Cells with a result", f"{counts.cells} cells", f"{counts.reviewed} reviewed"],
        ["Quality-flagged (not counted by the AI)", counts.ai_quality_flagged, "-"],
        ["Counted", f"{counts.ai_counted} quality-passed", f"{counts.reviewed} reviewed"],
        ["Parasitized", counts.ai_parasitized, counts.reviewer_parasitized],
        ["Uninfected", counts.ai_uninfected, counts.reviewer_uninfected],
        ["Near threshold", counts.ai_near_threshold, "-"],
        ["Overrides", "-", counts.overridden],
        [
            "Parasitemia (95% CI)",
            _pct_ci(counts.ai_parasitemia, counts.ai_ci95),
            _pct_ci(counts.reviewer_parasitemia, counts.reviewer_ci95),
        ],
    ]
    counts_table = Table(count_rows, colWidths=[60 * mm, 45 * mm, 50 * mm], hAlign="LEFT")
    counts_table.setStyle(grid)
    story += [Spacer(1, 2 * mm), counts_table, Spacer(1, 2 * mm)]
    fields = (
        f" The cells include those detected on {counts.field_photographs} field photograph(s)."
        if counts.field_photographs
        else ""
    )
    story.append(
        p(
            f"AI parasitemia: parasitized among the {counts.ai_counted} quality-passed cells; "
            "reviewer parasitemia: every reviewed cell, with the reviewer's final labels. "
            f"Interval: 95% Wilson score.{fields}",
            small,
        )
    )
    if counts.failed_images:
        failed = "; ".join(
            f"#{img.pk} {escape(img.original_name)}: {escape(img.error or 'failed')}"
            for img in counts.failed_images
        )
        story.append(p(f"<b>Images that could not be analysed ({counts.failed}):</b> {failed}"))

    overrides = [
        (img, review)
        for img in data.images
        if (review := current_review(img)) is not None
        and review.decision == review.Decision.OVERRIDE
    ]
    if overrides:
        rows = [["Image", "AI", "Reviewer", "Reason", "Details", "By, when"]]
        for img, review in overrides:
            rows.append(
                [
                    p(escape(f"#{img.pk} {img.original_name}"), small),
                    p(
                        f"{img.prediction.get_label_display()} {img.prediction.probability:.2f}",
                        small,
                    ),
                    p(review.get_label_display(), small),
                    p(escape(review.get_reason_code_display()), small),
                    p(escape(review.reason_text) or "-", small),
                    p(escape(f"{_person(review.reviewer)}, {_when(review.created_at)}"), small),
                ]
            )
        widths = [36 * mm, 20 * mm, 20 * mm, 25 * mm, 50 * mm, 29 * mm]
        overrides_table = Table(rows, colWidths=widths, hAlign="LEFT", repeatRows=1)
        overrides_table.setStyle(grid)
        story += [
            Spacer(1, 3 * mm),
            p(f"<b>Overrides ({len(overrides)})</b>: the reviewer's label replaces the AI's"),
            overrides_table,
        ]

    story += [Spacer(1, 3 * mm), p("<b>Images</b> (original, Grad-CAM overlay)")]
    cells = [img for img in data.images if prediction_of(img) is not None]
    per_row, thumb = 4, 19 * mm
    rows, row = [], []
    for image in cells:
        prediction = image.prediction
        review = current_review(image)
        pictures = []
        for name in (image.file.name, prediction.heatmap.name if prediction.heatmap else ""):
            jpeg = _thumbnail(name)
            pictures.append(RLImage(jpeg, width=thumb, height=thumb) if jpeg else p("-", small))
        caption = f"#{image.pk} AI {prediction.probability:.2f} {_label_short(prediction.label)}"
        if not prediction.quality_ok:
            caption += " QF"
        if review:
            caption += f" / Rev {_label_short(review.label)}"
            if review.decision == review.Decision.OVERRIDE:
                caption += f" ({review.get_reason_code_display()})"
        else:
            caption += " / not reviewed"
        block = Table([pictures, [p(escape(caption), small), ""]], colWidths=[thumb, thumb])
        block.setStyle(
            TableStyle(
                [("SPAN", (0, 1), (1, 1)), ("LEFTPADDING", (0, 0), (-1, -1), 1)]
                + [("RIGHTPADDING", (0, 0), (-1, -1), 1), ("TOPPADDING", (0, 0), (-1, -1), 1)]
            )
        )
        row.append(block)
        if len(row) == per_row:
            rows.append(row)
            row = []
    if row:
        rows.append(row + [""] * (per_row - len(row)))
    if rows:
        image_table = Table(rows, colWidths=[45 * mm] * per_row, hAlign="LEFT")
        image_table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
        story.append(image_table)
    story.append(
        p(
            "Captions: AI probability and label (P parasitized, U uninfected), QF quality-flagged, "
            "Rev the reviewer's label.",
            small,
        )
    )

    watermark = "SUPERSEDED" if superseded is not None else ("" if signed else "PRELIMINARY")
    state = "final" if signed else "PRELIMINARY, not reviewed"
    if superseded is not None:
        state = "SUPERSEDED"

    def decorate(canvas, doc) -> None:
        canvas.saveState()
        if watermark:
            canvas.setFont("Helvetica-Bold", 64)
            canvas.setFillColor(colors.Color(0.8, 0.1, 0.1, alpha=0.12))
            canvas.translate(A4[0] / 2, A4[1] / 2)
            canvas.rotate(45)
            canvas.drawCentredString(0, 0, watermark)
            canvas.rotate(-45)
            canvas.translate(-A4[0] / 2, -A4[1] / 2)
        canvas.setFillColor(colors.black)
        canvas.setFont("Helvetica", 7)
        canvas.drawString(
            15 * mm,
            8 * mm,
            f"Case {case.pk} / patient {patient.identifier} / {state} report / generated "
            f"{_when(generated)} / page {doc.page}. Decision support, not a stand-alone diagnosis.",
        )
        canvas.restoreState()

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=12 * mm,
        bottomMargin=15 * mm,
        title=title,
        author="malariaweb",
        pageCompression=1 if compress else 0,
    )
    doc.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue()


def report_render(case: Case, kind: str) -> bytes:
    if kind == ReportExport.Kind.PDF:
        return case_report_pdf(case)
    if kind == ReportExport.Kind.CSV:
        return case_report_csv(case)
    if kind == ReportExport.Kind.FHIR:
        return case_report_fhir_bytes(case)
    raise ValueError(f"unknown report kind {kind!r}")
