"""manage.py list_models: every registered model version with its key metrics."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from classifier.models import ModelVersion

COLUMNS = (
    "name",
    "kind",
    "active",
    "created",
    "threshold",
    "accuracy",
    "auc",
    "sensitivity",
    "precision",
    "recall",
    "source",
)
# Classifiers are judged by accuracy, AUC and sensitivity; detectors by precision and recall.
KEYS = ("accuracy", "auc", "sensitivity", "precision", "recall")


def key_metrics(version: ModelVersion) -> dict[str, float | None]:
    """The latest evaluation's figures, else the validation figures."""
    metrics = version.metrics or {}
    evaluations = metrics.get("evaluations") or []
    if evaluations:
        source, chosen = "evaluation", evaluations[-1]
    else:
        source, chosen = "validation", metrics.get("validation") or {}
    picked = {key: chosen.get(key) for key in KEYS}
    if not version.is_detector:  # a classifier's precision is not what to compare it by
        picked.update(precision=None, recall=None)
    return {**picked, "source": source if chosen else "-"}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


class Command(BaseCommand):
    help = (
        "List model versions (classifiers and detectors): name, kind, active, created, "
        "threshold, accuracy, AUC, sensitivity (classifiers), precision, recall (detectors)."
    )

    def handle(self, *args, **options):
        rows = [COLUMNS]
        for version in ModelVersion.objects.all():
            m = key_metrics(version)
            rows.append(
                (
                    version.name,
                    version.kind,
                    "yes" if version.is_active else "no",
                    version.created_at.strftime("%Y-%m-%d %H:%M"),
                    f"{version.threshold:.4f}",
                    _fmt(m["accuracy"]),
                    _fmt(m["auc"]),
                    _fmt(m["sensitivity"]),
                    _fmt(m["precision"]),
                    _fmt(m["recall"]),
                    m["source"],
                )
            )
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(COLUMNS))]
        for row in rows:
            self.stdout.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        if len(rows) == 1:
            self.stdout.write("no model versions registered")
