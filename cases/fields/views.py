"""The field view: a whole-field photograph with its cells drawn on it, zoom and pan, and the
reviewer's corrections (add a missed cell, remove a false detection), plus the case's red-cell count.

Each view: scope (404 outside the user's sites) → role/state checks in the service → respond.
The page's script talks JSON; without JSON the answers redirect with a message.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from cases.fields import services as field_reviews
from cases.fields.selectors import can_edit_field, field_get, field_payload
from cases.intake.selectors import case_get, image_get
from cases.models import Image


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@login_required
@require_GET
def field_view(request: HttpRequest, image_id: int) -> HttpResponse:
    field = field_get(request.user, image_id)
    context = {
        "field": field,
        "case": field.case,
        "payload": field_payload(field),
        "can_edit": can_edit_field(request.user, field.case),
        "can_set_red_cells": field_reviews.can_set_red_cell_count(request.user)
        and field.case.status != field.case.Status.SIGNED_OFF,
        "target": settings.TARGET_CELL_COUNT,
    }
    return render(request, "cases/field_view.html", context)


@login_required
@require_GET
def field_data(request: HttpRequest, image_id: int) -> JsonResponse:
    response = JsonResponse(field_payload(field_get(request.user, image_id)))
    patch_cache_control(response, private=True, no_store=True)
    return response


def _answer(request: HttpRequest, field: Image, error: ValidationError | None, done: str):
    if _wants_json(request):
        if error is not None:
            return JsonResponse({"error": " ".join(error.messages)}, status=400)
        return JsonResponse({"message": done, **field_payload(field)})
    if error is not None:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, done)
    return redirect("field_view", field.pk)


def _coordinate(request: HttpRequest, name: str) -> float:
    try:
        return float(request.POST.get(name, ""))
    except ValueError:
        raise ValidationError(
            f"Give the cell's centre ({name}) in the photograph's pixels."
        ) from None


@login_required
@require_POST
def field_cell_add(request: HttpRequest, image_id: int) -> HttpResponse:
    field = field_get(request.user, image_id)
    try:
        x, y = _coordinate(request, "x"), _coordinate(request, "y")
        cell = field_reviews.cell_add(field=field, x=x, y=y, by=request.user)
    except ValidationError as exc:
        return _answer(request, field, exc, "")
    return _answer(request, field, None, f"Cell #{cell.pk} added; it is being analysed.")


def _set_removed(request: HttpRequest, image_id: int, service, done: str) -> HttpResponse:
    cell = image_get(request.user, image_id)
    if cell.parent_id is None:
        raise Http404("Not a cell of a field photograph.")
    field = field_get(request.user, cell.parent_id)
    try:
        service(cell=cell, by=request.user)
    except ValidationError as exc:
        return _answer(request, field, exc, "")
    return _answer(request, field, None, done.format(cell=cell.pk))


@login_required
@require_POST
def field_cell_remove(request: HttpRequest, image_id: int) -> HttpResponse:
    return _set_removed(
        request, image_id, field_reviews.cell_remove, "Cell #{cell} removed: it is not counted."
    )


@login_required
@require_POST
def field_cell_restore(request: HttpRequest, image_id: int) -> HttpResponse:
    return _set_removed(
        request, image_id, field_reviews.cell_restore, "Cell #{cell} restored: it counts again."
    )


@login_required
@require_POST
def case_red_cells(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(request.user, case_id)
    raw = request.POST.get("red_cells_per_ul", "").strip().replace(",", "").replace(" ", "")
    try:
        if raw and not raw.isdigit():
            raise ValidationError("Enter a whole number of red cells per µL.")
        field_reviews.case_set_red_cell_count(
            case=case, by=request.user, red_cells_per_ul=int(raw) if raw else None
        )
        messages.success(request, "Red-cell count saved." if raw else "Red-cell count cleared.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    back = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
        return redirect(back)
    return redirect(reverse("case_detail", args=[case.pk]))
