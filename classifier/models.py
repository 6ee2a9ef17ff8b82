"""The model registry: every trained model file the platform knows, and which one is active."""

from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    class Kind(models.TextChoices):
        CLASSIFIER = "classifier", "Cell classifier"
        DETECTOR = "detector", "Cell detector"

    name = models.SlugField(max_length=80, unique=True)
    file = models.FileField(upload_to="models/", max_length=255)
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=False)
    # One version of each kind is active: the classifier labels cells, the detector finds them.
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.CLASSIFIER)
    # Operating point chosen on validation data and the calibration temperature applied to logits.
    threshold = models.FloatField(default=0.5)
    temperature = models.FloatField(default=1.0)
    metrics = models.JSONField(default=dict, blank=True)
    card = models.JSONField(default=dict, blank=True)
    # Reference statistics of the training data used by the quality gate (stain colour, features).
    quality_reference = models.JSONField(default=dict, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "is_active"],
                condition=Q(is_active=True),
                name="only_one_active_model_per_kind",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name}{' (active)' if self.is_active else ''}"

    @property
    def is_detector(self) -> bool:
        return self.kind == self.Kind.DETECTOR
