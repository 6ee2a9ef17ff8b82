"""Writes of the review workflow: claim, decide, confirm in bulk, sign off, reopen, send back.

Every function locks the case row, checks who may do what, validates with full_clean() and writes
its AuditEvent (before/after) in the same transaction. The model's Prediction is never touched: a
decision is a Review row beside it, and the latest review of an image is the current one.
"""

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from cases.access import is_admin, is_reviewer, require_site_member
from cases.audit.trail import audit_record
from cases.models import Case, DomainStatus, Image, Notification, Prediction, Review, SignOff
from cases.reports.exports import report_keep_superseded
from cases.review.selectors import (
    ReviewCounts,
    case_images_with_reviews,
    current_review,
    four_eyes_blocked,
    high_confidence_pending,
    is_reviewable,
    percent_interval,
    review_counts_from,
)
from cases.signals import CASE_REOPENED, CASE_SIGNED_OFF, case_event_send
from cases.summary import prediction_of

SIGN_OFF_FIELDS = [
    "status",
    "signed_off_by",
    "signed_off_at",
    "final_diagnosis",
    "final_positive_cells",
    "final_reviewed_cells",
    "final_parasitemia",
    "final_parasitemia_low",
    "final_parasitemia_high",
    "sign_off_note",
]


class ClaimConflict(ValidationError):
    """Another reviewer holds the case."""


def case_lock(case: Case) -> Case:
    """The case re-read with its row locked until the transaction ends (callers are atomic)."""
    return Case.objects.select_for_update().select_related("patient__site").get(pk=case.pk)


def _require_reviewer(user, case: Case) -> None:
    require_site_member(user, case.patient.site)
    if not is_reviewer(user):
        raise PermissionDenied("Only reviewers can review cases.")


def _require_four_eyes(user, case: Case) -> None:
    if four_eyes_blocked(case, user):
        raise PermissionDenied(
            "Four-eyes rule: you created this case or uploaded its images, "
            "so another reviewer must review it."
        )


def _require_status(case: Case, status: str, doing: str) -> None:
    if case.status != status:
        raise ValidationError(
            f"Only a case {Case.Status(status).label.lower()} can be {doing}; "
            f"this one is {case.get_status_display().lower()}."
        )


def _require_assignee(user, case: Case) -> None:
    if case.assigned_reviewer_id is None:
        raise ValidationError("Claim the case before you review it.")
    if case.assigned_reviewer_id != user.pk:
        raise ClaimConflict(f"This case is claimed by {case.assigned_reviewer}.")


def require_working_reviewer(user, case: Case) -> None:
    """The checks shared by every decision on a locked case."""
    _require_reviewer(user, case)
    _require_status(case, Case.Status.AWAITING_REVIEW, "reviewed")
    _require_four_eyes(user, case)
    _require_assignee(user, case)


def _require_reason(reason: str, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": f"Give a reason for {what}."})
    return reason


def _notify(user, case: Case, message: str) -> None:
    if user is None:
        return
    note = Notification(user=user, case=case, message=message[:300])
    note.full_clean()
    note.save()


def _claim_state(case: Case) -> dict:
    return {
        "assigned_reviewer": case.assigned_reviewer_id,
        "claimed_at": case.claimed_at.isoformat() if case.claimed_at else None,
    }


@transaction.atomic
def review_claim(*, case: Case, by) -> Case:
    """Assign the case to `by`. A conditional update, so two reviewers never hold one case."""
    case = case_lock(case)
    _require_reviewer(by, case)
    _require_four_eyes(by, case)
    now = timezone.now()
    claimed = Case.objects.filter(
        pk=case.pk, status=Case.Status.AWAITING_REVIEW, assigned_reviewer__isnull=True
    ).update(assigned_reviewer=by, claimed_at=now, updated_at=now)
    if not claimed:
        if case.assigned_reviewer_id == by.pk:
            return case
        _require_status(case, Case.Status.AWAITING_REVIEW, "claimed")
        raise ClaimConflict(
            f"{case.assigned_reviewer} claimed this case at "
            f"{timezone.localtime(case.claimed_at):%Y-%m-%d %H:%M}; it is no longer available."
        )
    before = _claim_state(case)
    case.refresh_from_db()
    audit_record(
        actor=by,
        action="case.claimed",
        obj=case,
        case=case,
        before=before,
        after=_claim_state(case),
    )
    return case


@transaction.atomic
def review_release(*, case: Case, by) -> Case:
    """Give a claimed case back to the queue (its reviewer, or an admin)."""
    case = case_lock(case)
    require_site_member(by, case.patient.site)
    if case.assigned_reviewer_id is None:
        return case
    if case.assigned_reviewer_id != by.pk and not is_admin(by):
        raise ClaimConflict(f"This case is claimed by {case.assigned_reviewer}.")
    before = _claim_state(case)
    case.assigned_reviewer, case.claimed_at = None, None
    case.save(update_fields=["assigned_reviewer", "claimed_at", "updated_at"])
    audit_record(
        actor=by,
        action="case.released",
        obj=case,
        case=case,
        before=before,
        after=_claim_state(case),
    )
    return case


def _review_state(review: Review | None) -> dict | None:
    if review is None:
        return None
    return {
        "review_id": review.pk,
        "reviewer": review.reviewer_id,
        "decision": review.decision,
        "label": review.label,
        "reason_code": review.reason_code,
        "reason_text": review.reason_text,
    }


@transaction.atomic
def review_submit(
    *,
    image: Image,
    by,
    decision: str,
    label: str = "",
    reason_code: str = "",
    reason_text: str = "",
) -> Review:
    """Confirm the model's label for one image, or override it with a reason."""
    case = case_lock(image.case)
    require_working_reviewer(by, case)
    image = Image.objects.select_related("prediction").get(pk=image.pk, case=case)
    if not is_reviewable(image):
        raise ValidationError("This image has no model result to review.")
    prediction = prediction_of(image)
    if decision == Review.Decision.CONFIRM:
        label, reason_code = prediction.label, ""
    elif decision == Review.Decision.OVERRIDE:
        if label not in Prediction.Label.values:
            raise ValidationError({"label": "Choose the label that replaces the model's."})
        if label == prediction.label:
            raise ValidationError({"label": "An override must change the model's label."})
        if reason_code not in Review.Reason.values:
            raise ValidationError({"reason_code": "An override needs a reason from the list."})
        if not (reason_text or "").strip():
            raise ValidationError({"reason_text": "Describe the reason for the override."})
    else:
        raise ValidationError({"decision": "Confirm or override."})
    previous = current_review(image)
    review = Review(
        image=image,
        reviewer=by,
        decision=decision,
        label=label,
        reason_code=reason_code,
        reason_text=(reason_text or "").strip(),
    )
    review.full_clean()
    review.save()
    audit_record(
        actor=by,
        action=f"review.{'confirmed' if decision == Review.Decision.CONFIRM else 'overridden'}",
        obj=review,
        case=case,
        before={
            "image": image.pk,
            "model_label": prediction.label,
            "probability": prediction.probability,
            "review": _review_state(previous),
        },
        after={"image": image.pk, "review": _review_state(review)},
    )
    return review


@transaction.atomic
def review_confirm_remaining(*, case: Case, by, expected: int | None = None) -> int:
    """Confirm every unreviewed high-confidence result (quality ok, |p - threshold| >= margin).

    `expected` is the number the reviewer was shown and agreed to (the web page always sends
    it): when the set changed in between, nothing is confirmed.
    """
    case = case_lock(case)
    require_working_reviewer(by, case)
    if case.domain_status == DomainStatus.OUT_OF_DOMAIN:
        # The guard refused the model's results here: every cell needs a person's own look.
        raise ValidationError(
            "This case is outside the model's validated domain: review every cell yourself."
        )
    images = high_confidence_pending(case_images_with_reviews(case))
    if expected is not None and expected != len(images):
        raise ValidationError(
            f"You agreed to confirm {expected} results, but {len(images)} are eligible now: "
            "nothing was confirmed; check the new list."
        )
    if not images:
        return 0
    positives = [img.pk for img in images if img.prediction.label == Prediction.Label.PARASITIZED]
    reviews = [
        Review(image=img, reviewer=by, decision=Review.Decision.CONFIRM, label=img.prediction.label)
        for img in images
    ]
    for review in reviews:
        review.full_clean(exclude=["image", "reviewer"])
    Review.objects.bulk_create(reviews)
    audit_record(
        actor=by,
        action="review.confirmed_remaining",
        obj=case,
        case=case,
        before={"images": [{"image": img.pk, "review": None} for img in images]},
        after={
            "count": len(images),
            "positives": len(positives),
            "positive_images": positives,
            "margin": settings.ANALYSIS_UNCERTAIN_MARGIN,
            "images": [{"image": img.pk, "label": img.prediction.label} for img in images],
        },
    )
    return len(images)


def _sign_off_state(case: Case) -> dict:
    return {
        "status": case.status,
        "signed_off_by": case.signed_off_by_id,
        "signed_off_at": case.signed_off_at.isoformat() if case.signed_off_at else None,
        "final_diagnosis": case.final_diagnosis,
        "final_positive_cells": case.final_positive_cells,
        "final_reviewed_cells": case.final_reviewed_cells,
        "final_parasitemia": case.final_parasitemia,
        "final_parasitemia_ci95": [case.final_parasitemia_low, case.final_parasitemia_high],
        "sign_off_note": case.sign_off_note,
    }


def _require_sign_off_allowed(counts: ReviewCounts, diagnosis: str) -> None:
    """Every cell decided, and a diagnosis the reviewer's own labels support."""
    if counts.analysing:
        raise ValidationError(f"{counts.analysing} images are still being analysed.")
    if counts.cells == 0:
        raise ValidationError("No cell has a model result: send the case back instead.")
    if counts.unreviewed:
        raise ValidationError(
            f"{counts.unreviewed} of {counts.cells} cells are not reviewed yet; "
            "every cell must be decided before sign-off."
        )
    if diagnosis not in Case.Diagnosis.values:
        raise ValidationError({"diagnosis": "Choose negative or positive."})
    if diagnosis == Case.Diagnosis.POSITIVE and not counts.reviewer_parasitized:
        raise ValidationError(
            {"diagnosis": "Positive needs at least one cell you labelled parasitized."}
        )
    if diagnosis == Case.Diagnosis.NEGATIVE and counts.reviewer_parasitized:
        raise ValidationError(
            {
                "diagnosis": f"{counts.reviewer_parasitized} cells are labelled parasitized: "
                "override them or sign off as positive."
            }
        )


def _record_sign_off(case: Case, by, counts: ReviewCounts, diagnosis: str, note: str) -> SignOff:
    """Write the case's current-sign-off columns and its permanent SignOff row."""
    percent, interval = percent_interval(counts.reviewer_parasitized, counts.reviewed)
    case.status = Case.Status.SIGNED_OFF
    case.signed_off_by = by
    case.signed_off_at = timezone.now()
    case.final_diagnosis = diagnosis
    case.final_positive_cells = counts.reviewer_parasitized
    case.final_reviewed_cells = counts.reviewed
    case.final_parasitemia = percent
    case.final_parasitemia_low, case.final_parasitemia_high = interval
    case.sign_off_note = (note or "").strip()
    case.full_clean()
    case.save(update_fields=[*SIGN_OFF_FIELDS, "updated_at"])
    # The case's columns are the current sign-off; the row is its permanent record (a reopen
    # blanks the columns and leaves the row).
    sign_off = SignOff(
        case=case,
        signed_by=by,
        signed_at=case.signed_off_at,
        diagnosis=case.final_diagnosis,
        positive_cells=case.final_positive_cells,
        reviewed_cells=case.final_reviewed_cells,
        parasitemia=case.final_parasitemia,
        parasitemia_low=case.final_parasitemia_low,
        parasitemia_high=case.final_parasitemia_high,
        note=case.sign_off_note,
    )
    sign_off.full_clean()
    sign_off.save()
    return sign_off


@transaction.atomic
def case_sign_off(*, case: Case, by, diagnosis: str, note: str = "") -> Case:
    """Sign the case off with a final diagnosis once every cell is reviewed; this locks it."""
    case = case_lock(case)
    _require_reviewer(by, case)
    _require_status(case, Case.Status.AWAITING_REVIEW, "signed off")
    _require_four_eyes(by, case)
    _require_assignee(by, case)
    counts = review_counts_from(case_images_with_reviews(case))
    _require_sign_off_allowed(counts, diagnosis)
    before = _sign_off_state(case)
    sign_off = _record_sign_off(case, by, counts, diagnosis, note)
    after = {**_sign_off_state(case), "sign_off": sign_off.pk}
    after["failed_images"] = [img.pk for img in counts.failed_images]
    audit_record(
        actor=by, action="case.signed_off", obj=case, case=case, before=before, after=after
    )
    case_event_send(case=case, event=CASE_SIGNED_OFF)
    if case.created_by_id != by.pk:
        _notify(
            case.created_by,
            case,
            f"Case {case.pk} ({case.patient}) was signed off by {by}: {case.final_diagnosis}.",
        )
    return case


@transaction.atomic
def case_reopen(*, case: Case, by, reason: str) -> Case:
    """Unlock a signed-off case (admins only, with a reason); it goes back to the review queue."""
    case = case_lock(case)
    require_site_member(by, case.patient.site)
    if not is_admin(by):
        raise PermissionDenied("Only an admin can reopen a signed-off case.")
    _require_status(case, Case.Status.SIGNED_OFF, "reopened")
    reason = _require_reason(reason, "reopening the case")
    # The signed report stays downloadable, marked superseded, before the sign-off is cleared.
    kept = report_keep_superseded(case=case, by=by, reason=reason)
    before = {**_sign_off_state(case), **_claim_state(case)}
    signer = case.signed_off_by
    case.status = Case.Status.AWAITING_REVIEW
    for name in SIGN_OFF_FIELDS[1:]:
        field = Case._meta.get_field(name)
        setattr(case, name, "" if not field.null else None)
    case.assigned_reviewer, case.claimed_at = None, None
    case.reopened_by, case.reopened_at, case.reopen_reason = by, timezone.now(), reason
    case.full_clean()
    case.save(
        update_fields=[
            *SIGN_OFF_FIELDS,
            "assigned_reviewer",
            "claimed_at",
            "reopened_by",
            "reopened_at",
            "reopen_reason",
            "updated_at",
        ]
    )
    audit_record(
        actor=by,
        action="case.reopened",
        obj=case,
        case=case,
        before=before,
        after={
            "status": case.status,
            "reason": reason,
            "superseded_report": kept.pk,
            **_claim_state(case),
        },
    )
    case_event_send(case=case, event=CASE_REOPENED)
    message = f"Case {case.pk} ({case.patient}) was reopened by {by}: {reason}"
    for user in {u for u in (signer, case.created_by) if u is not None and u.pk != by.pk}:
        _notify(user, case, message)
    return case


@transaction.atomic
def case_send_back(*, case: Case, by, reason: str) -> Case:
    """Return a case to its clinician (e.g. bad images): it leaves the queue until new uploads."""
    case = case_lock(case)
    _require_reviewer(by, case)
    _require_status(case, Case.Status.AWAITING_REVIEW, "sent back")
    if case.assigned_reviewer_id not in (None, by.pk):
        raise ClaimConflict(f"This case is claimed by {case.assigned_reviewer}.")
    reason = _require_reason(reason, "sending the case back")
    before = {"status": case.status, **_claim_state(case)}
    case.status = Case.Status.OPEN
    case.assigned_reviewer, case.claimed_at = None, None
    case.sent_back_by, case.sent_back_at, case.send_back_reason = by, timezone.now(), reason
    case.full_clean()
    case.save(
        update_fields=[
            "status",
            "assigned_reviewer",
            "claimed_at",
            "sent_back_by",
            "sent_back_at",
            "send_back_reason",
            "updated_at",
        ]
    )
    audit_record(
        actor=by,
        action="case.sent_back",
        obj=case,
        case=case,
        before=before,
        after={"status": case.status, "reason": reason, **_claim_state(case)},
    )
    _notify(
        case.created_by, case, f"Case {case.pk} ({case.patient}) was sent back by {by}: {reason}"
    )
    return case


def notifications_mark_read(*, user, ids: list[int] | None = None) -> int:
    """Mark the user's notifications (all, or the given ids) read. UI state: not audited."""
    unread = Notification.objects.filter(user=user, read_at__isnull=True)
    if ids is not None:
        unread = unread.filter(pk__in=ids)
    return unread.update(read_at=timezone.now())
