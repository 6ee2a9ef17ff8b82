"""Web views of the review workflow: queue, review page, sign-off, reports, audit, notifications.

Each view: fetch through a site-scoped selector (404 outside the user's sites), check the role
(403), call one service, respond. The rules themselves live in cases.review.services and cases.reports.services.
"""

import csv
import json
from collections.abc import Iterator

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from cases.access import is_admin, is_reviewer
from cases.fields.selectors import attach_field_context
from cases.intake.selectors import case_get, cases_visible, image_get
from cases.models import Case, Image, Notification, Prediction, ReportExport, Review
from cases.reports import documents as report_documents
from cases.reports import exports as report_exports
from cases.reports import services as reports
from cases.reports.table import csv_safe
from cases.review import services as reviews
from cases.review.forms import (
    AuditFilterForm,
    DecisionForm,
    ExportForm,
    ReasonForm,
    SignOffForm,
)
from cases.review.selectors import (
    audit_events_filter,
    audit_events_visible,
    case_images_with_reviews,
    current_review,
    four_eyes_blocked,
    high_confidence_pending,
    is_reviewable,
    notifications_for,
    review_counts_from,
    review_queue,
    reviewable_images,
)
from cases.summary import is_near_threshold

AUDIT_PAGE_SIZE = 100
# A queue of a thousand cases is read a page at a time (it was 844 KB in one page).
QUEUE_PAGE_SIZE = 50


def _reviewer_case(request: HttpRequest, case_id: int) -> Case:
    case = case_get(request.user, case_id)  # 404 outside the user's sites, before any role check
    if not is_reviewer(request.user):
        raise PermissionDenied("Only reviewers can review cases.")
    return case


def _error_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _attachment(content: bytes, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = report_documents.attachment_header(filename)
    return report_documents.no_store(response)


# --- Queue and claiming ---------------------------------------------------------------------


@login_required
def queue(request: HttpRequest) -> HttpResponse:
    if not is_reviewer(request.user):
        raise PermissionDenied("Only reviewers have a review queue.")
    page = Paginator(review_queue(request.user), QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"cases": page.object_list, "page": page}
    return render(request, "review/queue.html", context)


@login_required
@require_POST
def claim(request: HttpRequest, case_id: int) -> HttpResponse:
    case = _reviewer_case(request, case_id)
    try:
        reviews.review_claim(case=case, by=request.user)
    except ValidationError as exc:
        messages.error(request, _error_text(exc))
        return redirect("review_queue")
    return redirect("review_case", case.pk)


@login_required
@require_POST
def release(request: HttpRequest, case_id: int) -> HttpResponse:
    case = _reviewer_case(request, case_id)
    try:
        reviews.review_release(case=case, by=request.user)
        messages.success(request, f"Case {case.pk} is back in the queue.")
    except ValidationError as exc:
        messages.error(request, _error_text(exc))
    return redirect("review_queue")


# --- The review page ------------------------------------------------------------------------


def _review_text(review: Review | None) -> str:
    if review is None:
        return ""
    text = f"{review.get_decision_display()}: {review.get_label_display()}"
    return f"{text} ({review.get_reason_code_display()})" if review.reason_code else text


def _image_item(image: Image, margin: float) -> dict:
    """One cell of the review grid, its strings prepared here (500 cells render in one page)."""
    prediction = image.prediction
    review = current_review(image)
    near = is_near_threshold(prediction, margin)
    classes = ["review-thumb"]
    for flag, name in (
        (review is not None, "is-reviewed"),
        (review is not None and review.decision == Review.Decision.OVERRIDE, "is-override"),
        (near, "is-near"),
        (not prediction.quality_ok, "is-flagged"),
        (prediction.label == Prediction.Label.PARASITIZED, "is-positive"),
    ):
        if flag:
            classes.append(name)
    return {
        "image": image,
        "prediction": prediction,
        "review": review,
        "near": near,
        "classes": " ".join(classes),
        "prob": f"{prediction.probability:.3f}",
        "prob2": f"{prediction.probability:.2f}",
        "threshold": f"{prediction.threshold:.3f}",
        "short": "P" if prediction.label == Prediction.Label.PARASITIZED else "U",
        "review_short": "" if review is None else review.label[0].upper(),
        "review_text": _review_text(review),
        "quality_flags": ", ".join(map(str, prediction.quality_flags)),
        "file_url": reverse("image_file", args=[image.pk]),
        "heatmap_url": reverse("image_heatmap", args=[image.pk]) if prediction.heatmap else "",
        "decide_url": reverse("review_decide", args=[image.pk]),
    }


@login_required
def review_case(request: HttpRequest, case_id: int) -> HttpResponse:
    case = _reviewer_case(request, case_id)
    images = case_images_with_reviews(case)
    margin = settings.ANALYSIS_UNCERTAIN_MARGIN
    items = [_image_item(img, margin) for img in images if is_reviewable(img)]
    attach_field_context(items, images)
    bulk = high_confidence_pending(images)
    current = None
    wanted = request.GET.get("image", "")
    if wanted.isdigit():
        current = next((it for it in items if it["image"].pk == int(wanted)), None)
    if current is None:
        current = next((it for it in items if it["review"] is None), items[0] if items else None)
    next_item = None
    if current is not None:
        start = items.index(current)
        later = items[start + 1 :] + items[:start]
        next_item = next((it for it in later if it["review"] is None), None)
    context = {
        "case": case,
        "items": items,
        "current": current,
        "next_item": next_item,
        "counts": review_counts_from(images),
        "high_confidence": len(bulk),
        "high_confidence_positive": sum(
            img.prediction.label == Prediction.Label.PARASITIZED for img in bulk
        ),
        "can_decide": case.status == Case.Status.AWAITING_REVIEW
        and case.assigned_reviewer_id == request.user.pk,
        "reasons": Review.Reason.choices,
        "margin": margin,
        "four_eyes_blocked": four_eyes_blocked(case, request.user),
    }
    return render(request, "review/review_case.html", context)


def _progress(case: Case) -> dict:
    totals = reviewable_images(case).aggregate(
        cells=Count("id", distinct=True),
        reviewed=Count("id", filter=Q(reviews__isnull=False), distinct=True),
    )
    return {**totals, "unreviewed": totals["cells"] - totals["reviewed"]}


@login_required
@require_POST
def decide(request: HttpRequest, image_id: int) -> HttpResponse:
    image = image_get(request.user, image_id)
    case = _reviewer_case(request, image.case_id)
    form = DecisionForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError(form.errors.as_text())
        review = reviews.review_submit(image=image, by=request.user, **form.cleaned_data)
    except ValidationError as exc:
        status = 409 if isinstance(exc, reviews.ClaimConflict) else 400
        if _wants_json(request):
            return JsonResponse({"error": _error_text(exc)}, status=status)
        messages.error(request, _error_text(exc))
        return redirect(f"{reverse('review_case', args=[case.pk])}?image={image.pk}")
    if _wants_json(request):
        return JsonResponse(
            {
                "image": image.pk,
                "review": {
                    "decision": review.decision,
                    "label": review.label,
                    "reason_code": review.reason_code,
                    "reason": review.get_reason_code_display() if review.reason_code else "",
                    "reason_text": review.reason_text,
                    "reviewer": review.reviewer.get_username(),
                },
                "progress": _progress(case),
            }
        )
    following = request.POST.get("next_image", "")
    suffix = f"?image={following}" if following.isdigit() else ""
    return redirect(f"{reverse('review_case', args=[case.pk])}{suffix}")


@login_required
@require_http_methods(["GET", "POST"])
def confirm_remaining(request: HttpRequest, case_id: int) -> HttpResponse:
    """GET: what 'confirm all' would confirm (N, how many positive, which images); POST: do it.

    The POST carries the N the reviewer saw, so a changed set is refused, never stamped.
    """
    case = _reviewer_case(request, case_id)
    if request.method == "GET":
        images = high_confidence_pending(case_images_with_reviews(case))
        context = {
            "case": case,
            "images": images,
            "positives": sum(
                img.prediction.label == Prediction.Label.PARASITIZED for img in images
            ),
            "margin": settings.ANALYSIS_UNCERTAIN_MARGIN,
        }
        return render(request, "review/confirm_remaining.html", context)
    expected = request.POST.get("expected", "")
    try:
        if not expected.isdigit():
            raise ValidationError("Open the confirmation page and confirm the number shown.")
        count = reviews.review_confirm_remaining(case=case, by=request.user, expected=int(expected))
        messages.success(request, f"Confirmed {count} high-confidence results.")
    except ValidationError as exc:
        messages.error(request, _error_text(exc))
        return redirect("review_confirm_remaining", case.pk)
    return redirect("review_case", case.pk)


# --- Sign-off, send back, reopen ------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def sign_off(request: HttpRequest, case_id: int) -> HttpResponse:
    case = _reviewer_case(request, case_id)
    counts = review_counts_from(case_images_with_reviews(case))
    form = SignOffForm(
        request.POST or None, initial={"diagnosis": counts.suggested_diagnosis, "note": ""}
    )
    if request.method == "POST" and form.is_valid():
        try:
            reviews.case_sign_off(
                case=case,
                by=request.user,
                diagnosis=form.cleaned_data["diagnosis"],
                note=form.cleaned_data["note"],
            )
            messages.success(request, f"Case {case.pk} is signed off and locked.")
            return redirect("case_detail", case.pk)
        except ValidationError as exc:
            messages.error(request, _error_text(exc))
    return render(request, "review/sign_off.html", {"case": case, "counts": counts, "form": form})


def _reason_page(
    request: HttpRequest, case: Case, service, *, title: str, button: str, done: str
) -> HttpResponse:
    form = ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            service(case=case, by=request.user, reason=form.cleaned_data["reason"])
            messages.success(request, done)
            return redirect("case_detail", case.pk)
        except ValidationError as exc:
            messages.error(request, _error_text(exc))
    context = {"case": case, "form": form, "title": title, "button": button}
    return render(request, "review/reason.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def send_back(request: HttpRequest, case_id: int) -> HttpResponse:
    case = _reviewer_case(request, case_id)
    return _reason_page(
        request,
        case,
        reviews.case_send_back,
        title=f"Send case {case.pk} back to the clinician",
        button="Send back",
        done=f"Case {case.pk} was sent back to {case.created_by}.",
    )


@login_required
@require_http_methods(["GET", "POST"])
def reopen(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(request.user, case_id)
    if not is_admin(request.user):
        raise PermissionDenied("Only an admin can reopen a signed-off case.")
    return _reason_page(
        request,
        case,
        reviews.case_reopen,
        title=f"Reopen signed-off case {case.pk}",
        button="Reopen",
        done=f"Case {case.pk} is reopened and back in the review queue.",
    )


# --- Reports --------------------------------------------------------------------------------


def _report(request: HttpRequest, case_id: int, kind: str) -> HttpResponse:
    case = case_get(request.user, case_id)
    if report_documents.is_large(case):
        messages.info(
            request,
            f"This case has more than {report_documents.REPORT_DIRECT_MAX_IMAGES} images: "
            "request the report below and download it when it is ready.",
        )
        return redirect("review_exports", case.pk)
    try:
        content = report_documents.report_render(case, kind)
    except ValidationError as exc:
        messages.error(request, _error_text(exc))
        return redirect("review_exports", case.pk)
    return _attachment(
        content, report_documents.CONTENT_TYPES[kind], report_documents.report_filename(case, kind)
    )


@login_required
def report_pdf(request: HttpRequest, case_id: int) -> HttpResponse:
    return _report(request, case_id, ReportExport.Kind.PDF)


@login_required
def report_csv(request: HttpRequest, case_id: int) -> HttpResponse:
    return _report(request, case_id, ReportExport.Kind.CSV)


@login_required
def report_fhir(request: HttpRequest, case_id: int) -> HttpResponse:
    return _report(request, case_id, ReportExport.Kind.FHIR)


@login_required
@require_http_methods(["GET", "POST"])
def exports(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(request.user, case_id)
    if request.method == "POST":
        form = ExportForm(request.POST)
        try:
            if not form.is_valid():
                raise ValidationError(form.errors.as_text())
            reports.report_export_request(
                case=case, kind=form.cleaned_data["kind"], by=request.user
            )
            messages.success(
                request, "The report is being prepared; this page offers it when ready."
            )
        except ValidationError as exc:
            messages.error(request, _error_text(exc))
        return redirect("review_exports", case.pk)
    context = {
        "case": case,
        "exports": [
            (export, report_exports.export_state_label(export, case))
            for export in case.report_exports.select_related("created_by")[:50]
        ],
        "large": report_documents.is_large(case),
        "kinds": ReportExport.Kind.choices,
        "limit": report_documents.REPORT_DIRECT_MAX_IMAGES,
    }
    return render(request, "review/exports.html", context)


@login_required
def export_download(request: HttpRequest, export_id: int) -> FileResponse:
    export = get_object_or_404(
        ReportExport.objects.filter(
            case__in=cases_visible(request.user), status=ReportExport.Status.DONE
        ).select_related("case__patient"),
        pk=export_id,
    )
    return report_documents.export_response(export)


# --- Audit trail (staff) --------------------------------------------------------------------


def _audit_events(request: HttpRequest):
    if not (is_admin(request.user) or request.user.is_staff):
        raise PermissionDenied("Only admins can read the audit trail.")
    form = AuditFilterForm(request.GET or None)
    events = audit_events_visible(request.user)
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        events = audit_events_filter(
            events,
            action=data["action"],
            user=data["user"],
            date_from=data["date_from"],
            date_to=data["date_to"],
            case_id=data["case"],
        )
    return form, events


@login_required
def audit_list(request: HttpRequest) -> HttpResponse:
    form, events = _audit_events(request)
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode()}
    return render(request, "review/audit.html", context)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _audit_rows(events) -> Iterator[list]:
    yield ["seq", "created_at", "actor", "action", "object_type", "object_id", "case_id"] + [
        "before",
        "after",
        "hash",
    ]
    for event in events.iterator(chunk_size=1000):
        yield [
            event.seq,
            event.created_at.isoformat(),
            event.actor_name,
            event.action,
            event.object_type,
            event.object_id,
            event.case_id or "",
            json.dumps(event.before, sort_keys=True) if event.before is not None else "",
            json.dumps(event.after, sort_keys=True) if event.after is not None else "",
            event.hash,
        ]


@login_required
def audit_csv(request: HttpRequest) -> StreamingHttpResponse:
    _form, events = _audit_events(request)
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (
            writer.writerow([csv_safe(cell) for cell in row])
            for row in _audit_rows(events.order_by("seq"))
        ),
        content_type="text/csv; charset=utf-8",
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    return report_documents.no_store(response)


# --- Notifications --------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def notifications(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        ids = [int(i) for i in request.POST.getlist("id") if i.isdigit()] or None
        reviews.notifications_mark_read(user=request.user, ids=ids)
        return redirect("review_notifications")
    page = Paginator(notifications_for(request.user), 50).get_page(request.GET.get("page"))
    unread = Notification.objects.filter(user=request.user, read_at__isnull=True).count()
    return render(request, "review/notifications.html", {"page": page, "unread": unread})
