"""The case report as PDF (reportlab): final once signed off, else preliminary and watermarked.

Every value from the database, a user or a file name reaches a Paragraph only through
`markup()`, which escapes it: reportlab reads Paragraph text as markup, so an unescaped
`<font name=y>` would break the render and `<img src="/server/path"/>` would embed a server
file. Table cells given as plain strings and the canvas footer are drawn as text, not markup.
"""

import io
import logging
from dataclasses import dataclass

from django.core.files.storage import default_storage
from django.utils import timezone
from django.utils.html import escape
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from reportlab.platypus import Image as RLImage

from cases.models import Case, Image
from cases.reports.content import (
    INTENDED_USE,
    PRELIMINARY_STATEMENT,
    ReportData,
    Superseded,
    label_short,
    pct_ci,
    pending_items,
    person,
    report_data,
    when,
)
from cases.review.selectors import current_review
from cases.summary import prediction_of

logger = logging.getLogger(__name__)

THUMB_PX = 96
IMAGES_PER_ROW = 4
THUMB_SIZE = 19 * mm
CAPTIONS = (
    "Captions: AI probability and label (P parasitized, U uninfected), QF quality-flagged, "
    "Rev the reviewer's label."
)


def markup(template: str, **values) -> str:
    """Paragraph markup: the template's own tags kept, every value escaped."""
    return template.format(**{name: escape(str(value)) for name, value in values.items()})


@dataclass(frozen=True)
class _Styles:
    title: ParagraphStyle
    body: ParagraphStyle
    small: ParagraphStyle
    grid: TableStyle


def _styles() -> _Styles:
    sheet = getSampleStyleSheet()
    grid = TableStyle(
        [
            ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
            ("FONTSIZE", (0, 0), (-1, -1), 8),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]
    )
    return _Styles(
        title=sheet["Title"],
        body=sheet["BodyText"].clone("body", fontSize=9, leading=11),
        small=sheet["BodyText"].clone("small", fontSize=7, leading=8),
        grid=grid,
    )


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


def _title(case: Case) -> str:
    if case.status == Case.Status.SIGNED_OFF:
        return f"Malaria microscopy report: case {case.pk}"
    return f"PRELIMINARY report (AI only, not reviewed): case {case.pk}"


def _statement(case: Case) -> str:
    if case.status == Case.Status.SIGNED_OFF:
        return (
            f"{INTENDED_USE} Every cell result below was reviewed; the case was signed off by "
            f"{person(case.signed_off_by)} on {when(case.signed_off_at)}, whose decision is "
            "final."
        )
    return f"{PRELIMINARY_STATEMENT} {INTENDED_USE}"


def _heading(data: ReportData, st: _Styles, superseded: Superseded | None) -> list[Flowable]:
    case = data.case
    story = [Paragraph(markup("{title}", title=_title(case)), st.title)]
    if superseded is not None:
        text = markup(
            "<b>SUPERSEDED: this signed report no longer stands. The case was reopened by "
            "{by} on {at}: {reason}</b>",
            by=superseded.by,
            at=when(superseded.at),
            reason=superseded.reason,
        )
        story.append(Paragraph(text, st.body))
    story.append(Paragraph(markup("<i>{text}</i>", text=_statement(case)), st.body))
    pending = pending_items(case, data.counts)
    if pending:
        text = markup("<b>Still pending:</b> {items}.", items="; ".join(pending))
        story.append(Paragraph(text, st.body))
    story.append(Spacer(1, 3 * mm))
    return story


def _review_rows(case: Case) -> list[list[str]]:
    """The details table's reviewer and result rows: who signed and what, or that nobody did."""
    if case.status == Case.Status.SIGNED_OFF:
        interval = (case.final_parasitemia_low, case.final_parasitemia_high)
        return [
            [
                "Signed off by",
                person(case.signed_off_by),
                "Signed off at",
                when(case.signed_off_at),
            ],
            [
                "Final diagnosis",
                case.get_final_diagnosis_display(),
                "Parasitemia (95% CI)",
                pct_ci(case.final_parasitemia, interval),
            ],
        ]
    claimed = (
        f"{person(case.assigned_reviewer)} (claimed {when(case.claimed_at)}), not signed off"
        if case.assigned_reviewer
        else "none yet"
    )
    return [
        ["Reviewer", claimed, "Signed off", "no"],
        ["Final diagnosis", "none: not signed off", "Parasitemia", "see AI counts"],
    ]


def _details(data: ReportData, st: _Styles) -> list[Flowable]:
    case, patient = data.case, data.case.patient
    age = patient.age_years if patient.age_years is not None else "-"
    rows = [
        ["Patient identifier", patient.identifier, "Site", patient.site.name],
        [
            "Sex / age",
            f"{patient.get_sex_display()} / {age}",
            "Case created",
            f"{when(case.created_at)} by {case.created_by}",
        ],
        [
            "Status",
            case.get_status_display(),
            "Model version",
            ", ".join(data.model_versions) or "-",
        ],
        *_review_rows(case),
    ]
    table = Table(
        [[Paragraph(markup("{cell}", cell=cell), st.body) for cell in row] for row in rows],
        colWidths=[30 * mm, 55 * mm, 32 * mm, 63 * mm],
    )
    table.setStyle(st.grid)
    story: list[Flowable] = [table, Spacer(1, 3 * mm)]
    if case.status == Case.Status.SIGNED_OFF and case.sign_off_note:
        text = markup("<b>Reviewer's note:</b> {note}", note=case.sign_off_note)
        story.append(Paragraph(text, st.body))
    if case.reopen_reason:
        text = markup(
            "Reopened {at}: {reason}", at=when(case.reopened_at), reason=case.reopen_reason
        )
        story.append(Paragraph(text, st.body))
    return story


def _counts(data: ReportData, st: _Styles) -> list[Flowable]:
    counts = data.counts
    signed = data.case.status == Case.Status.SIGNED_OFF
    reviewer_head = (
        "Reviewer" if signed else f"Reviewer so far ({counts.reviewed} of {counts.cells})"
    )
    # Plain-string cells: reportlab draws them as text, never as markup.
    rows = [
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
            pct_ci(counts.ai_parasitemia, counts.ai_ci95),
            pct_ci(counts.reviewer_parasitemia, counts.reviewer_ci95),
        ],
    ]
    table = Table(rows, colWidths=[60 * mm, 45 * mm, 50 * mm], hAlign="LEFT")
    table.setStyle(st.grid)
    fields = (
        f" The cells include those detected on {counts.field_photographs} field photograph(s)."
        if counts.field_photographs
        else ""
    )
    legend = markup(
        "AI parasitemia: parasitized among the {counted} quality-passed cells; reviewer "
        "parasitemia: every reviewed cell, with the reviewer's final labels. Interval: 95% "
        "Wilson score.{fields}",
        counted=counts.ai_counted,
        fields=fields,
    )
    return [Spacer(1, 2 * mm), table, Spacer(1, 2 * mm), Paragraph(legend, st.small)]


def _failed(data: ReportData, st: _Styles) -> list[Flowable]:
    counts = data.counts
    if not counts.failed_images:
        return []
    failed = "; ".join(
        f"#{img.pk} {img.original_name}: {img.error or 'failed'}" for img in counts.failed_images
    )
    text = markup(
        "<b>Images that could not be analysed ({n}):</b> {failed}", n=counts.failed, failed=failed
    )
    return [Paragraph(text, st.body)]


def _override_row(image: Image, review, st: _Styles) -> list[Paragraph]:
    prediction = image.prediction
    cells = [
        f"#{image.pk} {image.original_name}",
        f"{prediction.get_label_display()} {prediction.probability:.2f}",
        review.get_label_display(),
        review.get_reason_code_display(),
        review.reason_text or "-",
        f"{person(review.reviewer)}, {when(review.created_at)}",
    ]
    return [Paragraph(markup("{cell}", cell=cell), st.small) for cell in cells]


def _overrides(data: ReportData, st: _Styles) -> list[Flowable]:
    overrides = [
        (img, review)
        for img in data.images
        if (review := current_review(img)) is not None
        and review.decision == review.Decision.OVERRIDE
    ]
    if not overrides:
        return []
    rows = [["Image", "AI", "Reviewer", "Reason", "Details", "By, when"]]
    rows += [_override_row(img, review, st) for img, review in overrides]
    widths = [36 * mm, 20 * mm, 20 * mm, 25 * mm, 50 * mm, 29 * mm]
    table = Table(rows, colWidths=widths, hAlign="LEFT", repeatRows=1)
    table.setStyle(st.grid)
    heading = markup(
        "<b>Overrides ({n})</b>: the reviewer's label replaces the AI's", n=len(overrides)
    )
    return [Spacer(1, 3 * mm), Paragraph(heading, st.body), table]


def _caption(image: Image) -> str:
    prediction = image.prediction
    review = current_review(image)
    caption = f"#{image.pk} AI {prediction.probability:.2f} {label_short(prediction.label)}"
    if not prediction.quality_ok:
        caption += " QF"
    if review is None:
        return caption + " / not reviewed"
    caption += f" / Rev {label_short(review.label)}"
    if review.decision == review.Decision.OVERRIDE:
        caption += f" ({review.get_reason_code_display()})"
    return caption


def _image_block(image: Image, st: _Styles) -> Table:
    """One image: the original and its Grad-CAM overlay side by side, the caption below."""
    heatmap = image.prediction.heatmap
    pictures = []
    for name in (image.file.name, heatmap.name if heatmap else ""):
        jpeg = _thumbnail(name)
        pictures.append(
            RLImage(jpeg, width=THUMB_SIZE, height=THUMB_SIZE) if jpeg else Paragraph("-", st.small)
        )
    caption = Paragraph(markup("{caption}", caption=_caption(image)), st.small)
    block = Table([pictures, [caption, ""]], colWidths=[THUMB_SIZE, THUMB_SIZE])
    block.setStyle(
        TableStyle(
            [("SPAN", (0, 1), (1, 1)), ("LEFTPADDING", (0, 0), (-1, -1), 1)]
            + [("RIGHTPADDING", (0, 0), (-1, -1), 1), ("TOPPADDING", (0, 0), (-1, -1), 1)]
        )
    )
    return block


def _images(data: ReportData, st: _Styles) -> list[Flowable]:
    story: list[Flowable] = [
        Spacer(1, 3 * mm),
        Paragraph("<b>Images</b> (original, Grad-CAM overlay)", st.body),
    ]
    blocks = [_image_block(img, st) for img in data.images if prediction_of(img) is not None]
    rows = [blocks[i : i + IMAGES_PER_ROW] for i in range(0, len(blocks), IMAGES_PER_ROW)]
    if rows:
        rows[-1] += [""] * (IMAGES_PER_ROW - len(rows[-1]))
        table = Table(rows, colWidths=[45 * mm] * IMAGES_PER_ROW, hAlign="LEFT")
        table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
        story.append(table)
    story.append(Paragraph(CAPTIONS, st.small))
    return story


def _page_decorator(case: Case, superseded: Superseded | None):
    """Draws the watermark (preliminary or superseded) and the footer on every page."""
    signed = case.status == Case.Status.SIGNED_OFF
    watermark = "SUPERSEDED" if superseded is not None else ("" if signed else "PRELIMINARY")
    state = "final" if signed else "PRELIMINARY, not reviewed"
    if superseded is not None:
        state = "SUPERSEDED"
    # Drawn as plain text (drawString), not markup: the identifier needs no escaping here.
    footer = (
        f"Case {case.pk} / patient {case.patient.identifier} / {state} report / generated "
        f"{when(timezone.now())} / page "
    )
    tail = ". Decision support, not a stand-alone diagnosis."

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
        canvas.drawString(15 * mm, 8 * mm, f"{footer}{doc.page}{tail}")
        canvas.restoreState()

    return decorate


def case_report_pdf(
    case: Case, *, compress: bool = True, superseded: Superseded | None = None
) -> bytes:
    """The case report as PDF: final once signed off, else preliminary (and watermarked so).

    compress=False leaves page streams readable (tests). `superseded` stamps a signed report
    that a reopen replaced (report_keep_superseded).
    """
    data = report_data(case)
    st = _styles()
    story = _heading(data, st, superseded)
    story += _details(data, st)
    story += _counts(data, st)
    story += _failed(data, st)
    story += _overrides(data, st)
    story += _images(data, st)
    decorate = _page_decorator(data.case, superseded)
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=12 * mm,
        bottomMargin=15 * mm,
        title=_title(data.case),
        author="malariaweb",
        pageCompression=1 if compress else 0,
    )
    doc.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue()
