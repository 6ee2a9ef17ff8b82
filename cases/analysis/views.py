"""The analysis pages: re-analysing a case's failed images (a button on the case page)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from cases.analysis.reanalysis import case_failed_images_reanalyse
from cases.intake.selectors import case_get


@login_required
@require_POST
def case_reanalyse(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(request.user, case_id)
    try:
        ids = case_failed_images_reanalyse(case=case, by=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{len(ids)} failed image(s) queued for analysis again.")
    return redirect("case_detail", case.pk)
