"""A case's status derived from its images: one rule, used by intake, analysis and review."""

from cases.audit.trail import audit_record
from cases.models import Case, Image
from cases.signals import CASE_ANALYSED, case_event_send


def case_status_refresh(*, case: Case, by=None) -> Case:
    """Derive the case's status from its images. Call inside the transaction that changed them.

    A case moves to review only when nothing is pending and at least one image has a result."""
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.status == Case.Status.SIGNED_OFF:
        return case
    statuses = set(case.images.values_list("status", flat=True).distinct())
    if not statuses:
        new = Case.Status.OPEN
    elif statuses & set(Image.PENDING):
        new = Case.Status.ANALYSING
    elif Image.Status.DONE in statuses:
        new = Case.Status.AWAITING_REVIEW
    else:  # every image failed: nothing to review until they are re-analysed or replaced
        new = Case.Status.OPEN
    if new != case.status:
        before = {"status": case.status}
        case.status = new
        case.save(update_fields=["status", "updated_at"])
        audit_record(
            actor=by,
            action="case.status_changed",
            obj=case,
            case=case,
            before=before,
            after={"status": new},
        )
        if new == Case.Status.AWAITING_REVIEW:
            case_event_send(case=case, event=CASE_ANALYSED)
    return case
