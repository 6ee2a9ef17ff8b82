"""Server-rendered pages. Each view: validate → scope/permission → one service or selector → respond.

Scoping comes first and answers 404 for another site's object (cases.intake.selectors); the role check
comes second and answers 403 (cases.access).
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET, require_POST

from cases.access import can_write, require_writer, user_sites
from cases.fields.selectors import case_fields_panel
from cases.fields.services import can_set_red_cell_count
from cases.intake import selectors, services
from cases.intake.files import IMAGE_FILES, stream_private_file
from cases.intake.forms import (
    CaseFilterForm,
    CaseForm,
    PatientForm,
    UploadKindForm,
    add_service_errors,
)
from cases.intake.presenters import case_status_payload
from cases.intake.services import UploadOutcome, storage_fault_message
from cases.review.selectors import case_diagnosis_history, case_review_counts
from cases.storage import StorageUnavailable

PAGE_SIZE = 25
# A plain-form upload of hundreds of bad files must not flood the page with messages.
MAX_FILE_MESSAGES = 20
HISTORY_LIMIT = 200


@login_required
@require_GET
def case_list(request: HttpRequest) -> HttpResponse:
    form = CaseFilterForm(request.GET)
    filters = form.cleaned_data if form.is_valid() else {}
    cases = selectors.case_list(
        request.user, search=filters.get("q", ""), status=filters.get("status", "")
    )
    page = Paginator(cases, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "cases/case_list.html", {"form": form, "page": page})


@login_required
@require_GET
def patient_list(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "").strip()
    patients = selectors.patients_visible(request.user)
    if search:
        patients = patients.filter(identifier__icontains=search)
    page = Paginator(patients, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "cases/patient_list.html", {"page": page, "q": search})


@login_required
def patient_create(request: HttpRequest) -> HttpResponse:
    require_writer(request.user)
    form = PatientForm(request.POST or None, sites=user_sites(request.user))
    if request.method == "POST" and form.is_valid():
        try:
            patient = services.patient_create(by=request.user, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Patient {patient.identifier} created.")
            return redirect("patient_detail", patient.pk)
    return render(request, "cases/patient_form.html", {"form": form})


@login_required
@require_GET
def patient_detail(request: HttpRequest, patient_id: int) -> HttpResponse:
    patient = selectors.patient_get(request.user, patient_id)
    context = {
        "patient": patient,
        "cases": selectors.cases_visible(request.user).filter(patient=patient),
        "case_form": CaseForm(),
        "can_write": can_write(request.user),
    }
    return render(request, "cases/patient_detail.html", context)


@login_required
@require_POST
def case_create(request: HttpRequest, patient_id: int) -> HttpResponse:
    patient = selectors.patient_get(request.user, patient_id)
    require_writer(request.user)
    form = CaseForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The case could not be created: check the notes.")
        return redirect("patient_detail", patient.pk)
    case = services.case_create(patient=patient, by=request.user, **form.cleaned_data)
    messages.success(request, f"Case {case.pk} created. Upload its images below.")
    return redirect("case_detail", case.pk)


@login_required
@require_GET
def case_detail(request: HttpRequest, case_id: int) -> HttpResponse:
    case = selectors.case_get(request.user, case_id)
    context = {
        "case": case,
        "status": case_status_payload(case, page=request.GET.get("page")),
        "history": selectors.case_history(case)[:HISTORY_LIMIT],
        "diagnoses": case_diagnosis_history(case),
        "can_write": can_write(request.user),
        "notes_form": CaseForm(initial={"clinical_notes": case.clinical_notes}),
        "upload_form": UploadKindForm(),
        "upload_max_mb": settings.UPLOAD_MAX_FILE_MB,
        "review_counts": case_review_counts(case),
        "fields_panel": case_fields_panel(case),
        "can_set_red_cells": can_set_red_cell_count(request.user)
        and case.status != case.Status.SIGNED_OFF,
    }
    return render(request, "cases/case_detail.html", context)


@login_required
@require_POST
def case_update(request: HttpRequest, case_id: int) -> HttpResponse:
    case = selectors.case_get(request.user, case_id)
    require_writer(request.user)
    form = CaseForm(request.POST)
    if form.is_valid():
        try:
            services.case_update(case=case, by=request.user, **form.cleaned_data)
            messages.success(request, "Notes saved.")
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
    return redirect("case_detail", case.pk)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _upload_refused(
    request: HttpRequest, case_id: int, message: str, status: int = 400
) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": message}, status=status)
    messages.error(request, message)
    return redirect("case_detail", case_id)


def _upload_messages(request: HttpRequest, outcome: UploadOutcome) -> None:
    if outcome.stored:
        messages.success(request, f"{len(outcome.stored)} image(s) stored; analysis queued.")
    problems = [f"{name}: already in this case" for name in outcome.duplicates]
    problems += [f"{r.name}: {r.reason}" for r in outcome.rejected]
    for problem in problems[:MAX_FILE_MESSAGES]:
        messages.warning(request, problem)
    if len(problems) > MAX_FILE_MESSAGES:
        messages.warning(request, f"…and {len(problems) - MAX_FILE_MESSAGES} more files refused.")


@login_required
@require_POST
def case_upload(request: HttpRequest, case_id: int) -> HttpResponse:
    """Multi-file (and zip) upload; JSON for the page's script, redirect + messages without JS."""
    case = selectors.case_get(request.user, case_id)
    require_writer(request.user)
    form = UploadKindForm(request.POST)
    files = request.FILES.getlist("files")
    if not form.is_valid():
        return _upload_refused(request, case.pk, "Choose a valid image type.")
    if not files:
        return _upload_refused(request, case.pk, "Choose at least one file to upload.")
    try:
        outcome = services.images_add(
            case=case,
            files=[(f.name, f) for f in files],  # streamed, never read whole
            by=request.user,
            kind=form.cleaned_data["kind"] or "auto",
        )
    except ValidationError as exc:
        return _upload_refused(request, case.pk, " ".join(exc.messages))
    except StorageUnavailable as exc:
        return _upload_refused(request, case.pk, storage_fault_message(exc), status=503)
    if _wants_json(request):
        return JsonResponse(outcome.as_dict())
    _upload_messages(request, outcome)
    return redirect("case_detail", case.pk)


@login_required
@require_GET
def case_status(request: HttpRequest, case_id: int) -> JsonResponse:
    case = selectors.case_get(request.user, case_id)
    response = JsonResponse(case_status_payload(case, page=request.GET.get("page")))
    # Polled every 2 s: a cached answer would freeze the page.
    patch_cache_control(response, private=True, no_store=True)
    return response


@login_required
@require_GET
def image_file(request: HttpRequest, image_id: int) -> FileResponse:
    return stream_private_file(IMAGE_FILES["file"](selectors.image_get(request.user, image_id)))


@login_required
@require_GET
def image_heatmap(request: HttpRequest, image_id: int) -> FileResponse:
    image = selectors.image_get(request.user, image_id)
    return stream_private_file(IMAGE_FILES["heatmap"](image))


@login_required
@require_GET
def image_heatmap_raw(request: HttpRequest, image_id: int) -> FileResponse:
    image = selectors.image_get(request.user, image_id)
    return stream_private_file(IMAGE_FILES["heatmap-raw"](image))
