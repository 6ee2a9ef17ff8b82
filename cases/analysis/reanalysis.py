"""Re-analysing failed images: a reviewer or lab admin sends a case's failed images back to the
workers once the cause (storage, a model, a poison image's fix) is dealt with."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from cases.access import is_admin, is_reviewer, require_site_member
from cases.analysis import queue
from cases.analysis.status import case_status_refresh
from cases.audit.trail import audit_record
from cases.models import Case, Image


def can_reanalyse(user) -> bool:
    return user.is_authenticated and (user.is_superuser or is_reviewer(user) or is_admin(user))


@transaction.atomic
def case_failed_images_reanalyse(*, case: Case, by) -> list[int]:
    """Queue every failed image of the case again (a fresh start: no attempts counted); returns
    their ids. Audited; the case goes back to analysing until they are done."""
    if not can_reanalyse(by):
        raise PermissionDenied("Only reviewers and lab admins can re-analyse images.")
    require_site_member(by, case.patient.site)
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.status == Case.Status.SIGNED_OFF:
        raise ValidationError("This case is signed off; reopen it before re-analysing images.")
    failed = Image.objects.filter(case=case, status=Image.Status.FAILED, removed=False)
    images = list(failed.order_by("pk").values("pk", "error"))
    if not images:
        return []
    ids = [img["pk"] for img in images]
    Image.objects.filter(pk__in=ids).update(
        status=Image.Status.QUEUED,
        error="",
        processed_at=None,
        attempts=0,
        claimed_at=None,
        enqueued_at=None,
    )
    audit_record(
        actor=by,
        action="analysis.requeued",
        obj=case,
        case=case,
        after={"images": ids, "errors": sorted({img["error"] for img in images})},
    )
    case_status_refresh(case=case, by=by)
    transaction.on_commit(lambda: queue.analysis_enqueue(ids))
    return ids
