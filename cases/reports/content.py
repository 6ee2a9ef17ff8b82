"""What every case report is made of: the case, its images and counts, and the words for them.

One place for the data (ReportData) and the small formatting rules (times, people, percentages,
what is still pending) that the PDF, the CSV, the FHIR export and the stored exports share.
"""

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from cases.models import Case, Image, Prediction
from cases.review.selectors import ReviewCounts, case_images_with_reviews, review_counts_from
from cases.summary import prediction_of

INTENDED_USE = (
    "Intended use: the AI results in this report are decision support for trained microscopists, "
    "not a stand-alone diagnosis."
)
PRELIMINARY_STATEMENT = (
    "PRELIMINARY REPORT: AI only, not reviewed. This case is not signed off; its results have "
    "not been confirmed by a reviewer and may still change. Do not use it as a diagnosis."
)


@dataclass
class ReportData:
    case: Case
    images: list[Image]
    counts: ReviewCounts

    @property
    def model_versions(self) -> list[str]:
        names = {p.model_version.name for p in map(prediction_of, self.images) if p is not None}
        return sorted(names)


@dataclass(frozen=True)
class Superseded:
    """Why a signed report no longer stands: the case was reopened."""

    by: str
    at: datetime
    reason: str


def report_data(case: Case) -> ReportData:
    case = Case.objects.select_related(
        "patient__site", "created_by", "signed_off_by", "assigned_reviewer"
    ).get(pk=case.pk)
    images = case_images_with_reviews(case)
    return ReportData(case=case, images=images, counts=review_counts_from(images))


def when(value) -> str:
    """A time as reports print it, in the site's time zone; '' for none."""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z") if value else ""


def person(user) -> str:
    """A user as reports name them: full name, else user name; '-' for nobody."""
    return (user.get_full_name() or user.get_username()) if user else "-"


def pct(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}%"


def ci(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f"{interval[0]:.2f}-{interval[1]:.2f}%"


def pct_ci(value: float | None, interval: tuple[float, float] | None) -> str:
    """'25.00% (4.56-69.94%)', or '-' when nothing was counted (never an empty '()')."""
    if value is None:
        return "-"
    return f"{pct(value)} ({ci(interval)})" if interval else pct(value)


def label_short(label: str) -> str:
    return "P" if label == Prediction.Label.PARASITIZED else "U"


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
