"""Reads. Every query that returns patients, cases or images is scoped to the user's sites
(cases.access.user_sites)."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404

from cases.access import user_sites
from cases.models import AuditEvent, Case, Image, Patient


def patients_visible(user: AbstractBaseUser) -> QuerySet[Patient]:
    return Patient.objects.filter(site__in=user_sites(user)).select_related("site")


def cases_visible(user: AbstractBaseUser) -> QuerySet[Case]:
    return Case.objects.filter(patient__site__in=user_sites(user)).select_related(
        "patient", "patient__site", "created_by"
    )


def case_get(user: AbstractBaseUser, case_id: int) -> Case:
    """The case if the user may see it; 404 otherwise (never 403: no hint that it exists)."""
    return get_object_or_404(cases_visible(user), pk=case_id)


def patient_get(user: AbstractBaseUser, patient_id: int) -> Patient:
    return get_object_or_404(patients_visible(user), pk=patient_id)


def image_get(user: AbstractBaseUser, image_id: int) -> Image:
    return get_object_or_404(
        Image.objects.filter(case__patient__site__in=user_sites(user)).select_related("case"),
        pk=image_id,
    )


def case_list(user: AbstractBaseUser, *, search: str = "", status: str = "") -> QuerySet[Case]:
    # Words beside numbers: field photographs and counted cells, as case_summary counts them
    # (the queryset twin of cases.summary.is_counted_cell), never a bare "images".
    cases = cases_visible(user).annotate(
        field_count=Count(
            "images",
            filter=Q(images__kind=Image.Kind.FIELD, images__parent__isnull=True),
            distinct=True,
        ),
        cell_count=Count(
            "images",
            filter=Q(images__kind=Image.Kind.CELL, images__on_border=False, images__removed=False),
            distinct=True,
        ),
    )
    if search:
        cases = cases.filter(patient__identifier__icontains=search.strip())
    if status:
        cases = cases.filter(status=status)
    return cases.order_by("-created_at", "-id")


def case_images(case: Case) -> QuerySet[Image]:
    """Images of a case that carry results: uploaded cells and cells cut from field images."""
    return case.images.select_related("prediction", "prediction__model_version").order_by("id")


def case_history(case: Case) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(case=case).order_by("-seq")
