"""Reads of the review workflow: the queue, a case's images with their current reviews, counts.

Every function that takes a user scopes to the user's sites (cases.intake.selectors); functions that take
a case expect one the caller has already fetched through a scoped selector.
"""

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import (
    BooleanField,
    CharField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models import Case as CaseWhen
from django.db.models.functions import Cast

from cases.access import is_reviewer, user_sites
from cases.intake.selectors import cases_visible
from cases.models import (
    AuditEvent,
    Case,
    DomainStatus,
    Image,
    Notification,
    Patient,
    Prediction,
    Review,
)
from cases.summary import (
    case_summary,
    is_counted_cell,
    is_near_threshold,
    prediction_of,
    wilson_interval,
)


def with_four_eyes_blocked(cases: QuerySet[Case], user: AbstractBaseUser) -> QuerySet[Case]:
    """Annotate `four_eyes_blocked`: the one statement of the four-eyes rule.

    With settings.REVIEW_FOUR_EYES on, a reviewer may not review a case they created or into
    which they uploaded any image. The review service (refusal), the queue (no Claim button), the
    nav badge and the field view all read this annotation, so none can drift from the others.
    """
    if not settings.REVIEW_FOUR_EYES:
        return cases.annotate(four_eyes_blocked=Value(False, output_field=BooleanField()))
    uploaded = Image.objects.filter(case=OuterRef("pk"), uploaded_by=user.pk)
    blocked = Q(created_by=user.pk) | Exists(uploaded)
    return cases.annotate(four_eyes_blocked=ExpressionWrapper(blocked, output_field=BooleanField()))


def four_eyes_blocked(case: Case, user: AbstractBaseUser) -> bool:
    """Whether the four-eyes rule bars this user from reviewing the case (one query)."""
    rows = with_four_eyes_blocked(Case.objects.filter(pk=case.pk), user)
    return rows.values_list("four_eyes_blocked", flat=True).get()


def reviewable_images(case: Case) -> QuerySet[Image]:
    """The images a reviewer must decide: every counted cell with a model result.

    The queryset twin of is_reviewable (cases.summary.is_counted_cell decides what a cell is).
    """
    return case.images.filter(
        kind=Image.Kind.CELL, on_border=False, removed=False, prediction__isnull=False
    )


def is_reviewable(image: Image) -> bool:
    return is_counted_cell(image) and prediction_of(image) is not None


def current_review(image: Image) -> Review | None:
    """The latest review of an image loaded by case_images_with_reviews (no query)."""
    history = getattr(image, "review_history", None)
    if history is None:
        return image.reviews.order_by("-created_at", "-id").first()
    return history[0] if history else None


def is_high_confidence(prediction: Prediction, margin: float | None = None) -> bool:
    """Quality passed and far enough from the threshold to be confirmed in bulk."""
    margin = settings.ANALYSIS_UNCERTAIN_MARGIN if margin is None else margin
    return prediction.quality_ok and not is_near_threshold(prediction, margin)


def case_images_with_reviews(case: Case) -> list[Image]:
    """All images of a case, predictions and every review preloaded (newest review first).

    Two queries whatever the number of images; `current_review(image)` then costs nothing.
    """
    reviews = Review.objects.select_related("reviewer").order_by("-created_at", "-id")
    return list(
        case.images.select_related("prediction", "prediction__model_version")
        .prefetch_related(Prefetch("reviews", queryset=reviews, to_attr="review_history"))
        .order_by("id")
    )


@dataclass(frozen=True)
class ReviewCounts:
    """AI and reviewer counts of one case, side by side.

    Every AI number is case_summary's (`summary`), never recounted here: `cells` are the cells
    with a model result, `ai_counted` the quality-passed ones among them, and
    `ai_parasitized + ai_uninfected == ai_counted`.
    """

    images: int
    field_photographs: int
    cells: int
    failed: int
    analysing: int
    ai_parasitized: int
    ai_uninfected: int
    ai_quality_flagged: int
    ai_near_threshold: int
    ai_counted: int
    ai_parasitemia: float | None
    ai_ci95: tuple[float, float] | None
    reviewed: int
    unreviewed: int
    confirmed: int
    overridden: int
    reviewer_parasitized: int
    reviewer_uninfected: int
    reviewer_parasitemia: float | None
    reviewer_ci95: tuple[float, float] | None
    failed_images: tuple[Image, ...] = ()
    summary: dict | None = None

    @property
    def all_reviewed(self) -> bool:
        return self.cells > 0 and self.unreviewed == 0 and self.analysing == 0

    @property
    def suggested_diagnosis(self) -> str:
        return Case.Diagnosis.POSITIVE if self.reviewer_parasitized else Case.Diagnosis.NEGATIVE


def percent_interval(positive: int, n: int) -> tuple[float | None, tuple[float, float] | None]:
    """Parasitemia in percent and its 95% Wilson interval in percent (None when n is 0)."""
    interval = wilson_interval(positive, n)
    if interval is None:
        return None, None
    return 100.0 * positive / n, (100.0 * interval[0], 100.0 * interval[1])


def review_counts_from(images: list[Image]) -> ReviewCounts:
    """Counts over images loaded by case_images_with_reviews (no query)."""
    margin = settings.ANALYSIS_UNCERTAIN_MARGIN
    ai = case_summary(images, margin=margin)
    cells = [img for img in images if is_reviewable(img)]
    current = [current_review(img) for img in cells]
    done = [r for r in current if r is not None]
    positive = sum(r.label == Prediction.Label.PARASITIZED for r in done)
    reviewer_pct, reviewer_ci = percent_interval(positive, len(done))
    ai_pct = 100.0 * ai["parasitized_fraction"] if ai["parasitized_fraction"] is not None else None
    ai_ci = tuple(100.0 * x for x in ai["ci95"]) if ai["ci95"] else None
    failed = tuple(img for img in images if img.status == Image.Status.FAILED)
    return ReviewCounts(
        images=len(images),
        field_photographs=ai["field_photographs"],
        cells=len(cells),
        failed=len(failed),
        analysing=ai["pending"],
        ai_parasitized=ai["parasitized"],
        ai_uninfected=ai["uninfected"],
        ai_quality_flagged=ai["quality_flagged"],
        ai_near_threshold=ai["near_threshold"],
        ai_counted=ai["counted"],
        ai_parasitemia=ai_pct,
        ai_ci95=ai_ci,
        reviewed=len(done),
        unreviewed=len(cells) - len(done),
        confirmed=sum(r.decision == Review.Decision.CONFIRM for r in done),
        overridden=sum(r.decision == Review.Decision.OVERRIDE for r in done),
        reviewer_parasitized=positive,
        reviewer_uninfected=len(done) - positive,
        reviewer_parasitemia=reviewer_pct,
        reviewer_ci95=reviewer_ci,
        failed_images=failed,
        summary=ai,
    )


def case_review_counts(case: Case) -> ReviewCounts:
    """AI and reviewer counts for the case page (two queries)."""
    return review_counts_from(case_images_with_reviews(case))


def high_confidence_pending(images: list[Image]) -> list[Image]:
    """Unreviewed cells that 'confirm all remaining' would confirm."""
    return [
        img
        for img in images
        if is_reviewable(img) and current_review(img) is None and is_high_confidence(img.prediction)
    ]


def _pending(extra: Q | None = None) -> Count:
    condition = Q(
        images__kind=Image.Kind.CELL,
        images__on_border=False,
        images__removed=False,
        images__prediction__isnull=False,
        images__reviews__isnull=True,
    )
    if extra is not None:
        condition &= extra
    return Count("images", filter=condition, distinct=True)


def review_queue(user: AbstractBaseUser) -> QuerySet[Case]:
    """Cases of the user's sites awaiting review, most urgent first.

    Each case carries `four_eyes_blocked` (with_four_eyes_blocked): the page offers no claim then.

    Urgent: a case with an unreviewed image near the threshold, a probable positive, or a
    quality-flagged image comes before a case of clear negatives; oldest first within a tier.
    """
    margin = settings.ANALYSIS_UNCERTAIN_MARGIN
    probability, threshold = "images__prediction__probability", "images__prediction__threshold"
    near = Q(**{f"{probability}__gt": F(threshold) - margin}) & Q(
        **{f"{probability}__lt": F(threshold) + margin}
    )
    queue = (
        cases_visible(user)
        .filter(status=Case.Status.AWAITING_REVIEW)
        .select_related("assigned_reviewer")
        .annotate(
            pending_count=_pending(),
            near_count=_pending(near),
            positive_count=_pending(Q(images__prediction__label=Prediction.Label.PARASITIZED)),
            flagged_count=_pending(Q(images__prediction__quality_ok=False)),
            failed_count=Count(
                "images", filter=Q(images__status=Image.Status.FAILED), distinct=True
            ),
        )
        .annotate(
            urgency=CaseWhen(
                # Refused by the domain guard: every cell needs a manual count, so it leads.
                When(domain_status=DomainStatus.OUT_OF_DOMAIN, then=2),
                When(
                    Q(near_count__gt=0) | Q(positive_count__gt=0) | Q(flagged_count__gt=0),
                    then=1,
                ),
                default=0,
                output_field=IntegerField(),
            )
        )
    )
    return with_four_eyes_blocked(queue, user).order_by("-urgency", "created_at", "id")


def review_queue_new_count(user: AbstractBaseUser) -> int:
    """Unclaimed cases awaiting review that this reviewer may take (the nav badge)."""
    if not is_reviewer(user):
        return 0
    cases = cases_visible(user).filter(
        status=Case.Status.AWAITING_REVIEW, assigned_reviewer__isnull=True
    )
    return with_four_eyes_blocked(cases, user).filter(four_eyes_blocked=False).count()


@dataclass(frozen=True)
class DiagnosisEntry:
    """One step of a case's history of diagnoses: a sign-off (a SignOff row) or a reopen."""

    kind: str  # "signed_off" or "reopened"
    at: object  # datetime
    by: str
    diagnosis: str = ""  # the label, for a sign-off
    detail: str = ""  # the sign-off's note, or the reopen's reason


def case_diagnosis_history(case: Case) -> list[DiagnosisEntry]:
    """Every sign-off of the case (SignOff rows, kept through reopens) and every reopen with its
    reason (its audit event), oldest first. Two queries."""
    entries = [
        DiagnosisEntry(
            "signed_off",
            row.signed_at,
            row.signed_by.get_username(),
            row.get_diagnosis_display(),
            row.note,
        )
        for row in case.sign_offs.select_related("signed_by")
    ]
    reopens = AuditEvent.objects.filter(case=case, action="case.reopened")
    entries += [
        DiagnosisEntry(
            "reopened", e.created_at, e.actor_name, "", (e.after or {}).get("reason", "")
        )
        for e in reopens
    ]
    return sorted(entries, key=lambda entry: entry.at)


def notifications_unread(user: AbstractBaseUser) -> QuerySet[Notification]:
    return Notification.objects.filter(user=user, read_at__isnull=True)


def notifications_for(user: AbstractBaseUser) -> QuerySet[Notification]:
    return Notification.objects.filter(user=user).select_related("case", "case__patient")


def audit_events_visible(user: AbstractBaseUser) -> QuerySet[AuditEvent]:
    """Superusers and staff see the whole trail; a lab admin their sites' cases and patients."""
    events = AuditEvent.objects.select_related("case", "case__patient").order_by("-seq")
    if user.is_superuser or user.is_staff:
        return events
    sites = user_sites(user)
    patient_ids = (
        Patient.objects.filter(site__in=sites)
        .annotate(key=Cast("pk", output_field=CharField()))
        .values("key")
    )
    return events.filter(
        Q(case__patient__site__in=sites)
        | Q(object_type="cases.patient", object_id__in=patient_ids)
        | Q(actor=user)
    )


def audit_events_filter(
    events: QuerySet[AuditEvent],
    *,
    action: str = "",
    user: str = "",
    date_from=None,
    date_to=None,
    case_id: int | None = None,
) -> QuerySet[AuditEvent]:
    if action:
        events = events.filter(action=action)
    if user:
        events = events.filter(actor_name__iexact=user.strip())
    if date_from:
        events = events.filter(created_at__date__gte=date_from)
    if date_to:
        events = events.filter(created_at__date__lte=date_to)
    if case_id:
        events = events.filter(case_id=case_id)
    return events
