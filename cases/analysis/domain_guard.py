"""The domain guard's writes: is a field, or a whole case, like what the active model was
validated on (classifier.domain)?

The worker calls domain_check_cells() once per analysed batch, right after the batch's
Predictions are saved. It stores each cell's domain vector on its Prediction, then judges every
field whose cells are all analysed and every case with nothing left pending, from the vectors of
all their cells (earlier batches included). A field or case outside the domain gets no automatic
call or parasitemia (cases.summary) and cannot be confirmed in bulk (cases.review.services). Re-running
it changes nothing: a decision is written, and audited, only when it changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from django.db import transaction

from cases.audit.trail import audit_record
from cases.models import Case, DomainStatus, Image, Prediction
from classifier import domain
from classifier.models import ModelVersion


def domain_reference(version: ModelVersion) -> dict | None:
    return (version.quality_reference or {}).get("domain") or None


def domain_check_cells(
    *, version: ModelVersion, cells: Sequence[Image], results: Sequence[Any]
) -> None:
    """Store the cells' domain vectors and judge the fields and cases they complete.

    results: the engine's CellResults for cells, in the same order (their ``features`` and
    ``colour``). Cells without a Prediction of this version (skipped as duplicates) are ignored.
    """
    reference = domain_reference(version)
    if reference and cells:
        features = np.stack([np.asarray(r.features) for r in results])
        colours = np.stack([np.asarray(r.colour) for r in results])
        vectors = domain.cell_vectors(features, colours, reference).round(5)
        by_image = {img.pk: v.tolist() for img, v in zip(cells, vectors, strict=True)}
        predictions = list(Prediction.objects.filter(image_id__in=by_image, model_version=version))
        for prediction in predictions:
            prediction.domain_vector = {
                "key": reference["key"],
                "vector": by_image[prediction.image_id],
            }
        Prediction.objects.bulk_update(predictions, ["domain_vector"])
    for field_id in sorted({c.parent_id for c in cells if c.parent_id}):
        domain_judge_field(field_id=field_id, version=version)
    for case_id in sorted({c.case_id for c in cells}):
        domain_judge_case(case_id=case_id, version=version)


def _vectors(predictions: Iterable[dict], reference: dict | None) -> np.ndarray:
    key = (reference or {}).get("key")
    if key is None:
        return np.zeros((0, 0))
    rows = [
        p["domain_vector"]["vector"] for p in predictions if p["domain_vector"].get("key") == key
    ]
    return np.asarray(rows, np.float64)


def _decide(cells, version: ModelVersion) -> domain.DomainResult:
    """The guard on the given cell images' predictions by this version (the counted cells: not
    cut by the field's edge, not removed by a reviewer)."""
    reference = domain_reference(version)
    predictions = Prediction.objects.filter(
        image__in=cells, model_version=version, image__on_border=False, image__removed=False
    ).values("domain_vector")
    return domain.check_vectors(_vectors(predictions, reference), reference)


def _store(row: Image | Case, result: domain.DomainResult, version: ModelVersion, case: Case):
    detail = {**result.as_dict(), "model_version": version.name}
    if row.domain_status == result.status and row.domain_detail == detail:
        return
    before = {"domain_status": row.domain_status}
    row.domain_status, row.domain_detail = result.status, detail
    fields = ["domain_status", "domain_detail"]
    row.save(update_fields=[*fields, "updated_at"] if isinstance(row, Case) else fields)
    audit_record(
        actor=None,
        action="domain.judged",
        obj=row,
        case=case,
        before=before,
        after=detail,
    )


@transaction.atomic
def domain_judge_field(*, field_id: int, version: ModelVersion) -> str | None:
    """Judge one field image from all of its cells, once none is pending; returns its status."""
    field = Image.objects.select_for_update().select_related("case").get(pk=field_id)
    cells = field.cells.all()
    if cells.filter(status__in=Image.PENDING).exists():
        return None
    _store(field, _decide(cells, version), version, field.case)
    return field.domain_status


@transaction.atomic
def domain_judge_case(*, case_id: int, version: ModelVersion) -> str | None:
    """Judge a case from all of its cells, once no image is pending; returns its status."""
    case = Case.objects.select_for_update().get(pk=case_id)
    images = case.images.all()
    if images.filter(status__in=Image.PENDING).exists():
        return None
    _store(case, _decide(images.filter(kind=Image.Kind.CELL), version), version, case)
    return case.domain_status


def is_out_of_domain(row: Image | Case) -> bool:
    return row.domain_status == DomainStatus.OUT_OF_DOMAIN
