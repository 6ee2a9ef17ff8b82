"""Patients, cases, images, analysis results and the audit trail.

State changes happen in cases.intake.services (and cases.analysis.services for worker results), never in save()
or signals; every one of them writes an AuditEvent in the same transaction (cases.audit.trail).
"""

import posixpath
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from cases.validators import validate_single_line
from classifier.models import ModelVersion


class AppendOnlyQuerySet(models.QuerySet):
    """Refuses bulk updates and deletes of an append-only model, in the model's own words."""

    def update(self, **kwargs):
        raise PermissionError(self.model.refused_update)

    def delete(self):
        raise PermissionError(self.model.refused_delete)


class AppendOnlyModel(models.Model):
    """A row that, once stored, is never rewritten or deleted through the ORM.

    An invariant, not business logic: subclasses name what is refused in `refused_update` and
    `refused_delete` (AuditEvent, SignOff).
    """

    refused_update = "This record is append-only: it cannot be updated."
    refused_delete = "This record is append-only: it cannot be deleted."

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError(self.refused_update)
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError(self.refused_delete)


class Site(models.Model):
    """A laboratory or clinic. Users see only the patients and cases of their own sites."""

    name = models.CharField(max_length=200)
    code = models.SlugField(max_length=40, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="sites", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Patient(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "F", "Female"
        MALE = "M", "Male"
        OTHER = "O", "Other"
        UNKNOWN = "U", "Unknown"

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="patients")
    identifier = models.CharField(
        max_length=64,
        help_text="The lab's patient identifier.",
        validators=[validate_single_line],
    )
    sex = models.CharField(max_length=1, choices=Sex.choices, default=Sex.UNKNOWN)
    birth_date = models.DateField(null=True, blank=True)
    age_years = models.PositiveSmallIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["identifier"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "identifier"], name="patient_identifier_per_site"
            )
        ]

    def __str__(self) -> str:
        return self.identifier


class DomainStatus(models.TextChoices):
    """The domain guard's decision on a field or a case (classifier.domain); blank: not judged yet."""

    NOT_JUDGED = "", "Not judged"
    IN_DOMAIN = "in_domain", "Within the model's validated domain"
    OUT_OF_DOMAIN = "out_of_domain", "Outside the model's validated domain"
    UNDETERMINED = "undetermined", "Too few cells to judge"


class Case(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ANALYSING = "analysing", "Analysing"
        AWAITING_REVIEW = "awaiting_review", "Awaiting review"
        SIGNED_OFF = "signed_off", "Signed off"

    class Diagnosis(models.TextChoices):
        NEGATIVE = "negative", "Negative"
        POSITIVE = "positive", "Positive"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="cases")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    clinical_notes = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # The review workflow (cases.review.services): who works the case, its signed result, and its history.
    assigned_reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    signed_off_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    signed_off_at = models.DateTimeField(null=True, blank=True)
    final_diagnosis = models.CharField(max_length=10, choices=Diagnosis.choices, blank=True)
    final_positive_cells = models.PositiveIntegerField(null=True, blank=True)
    final_reviewed_cells = models.PositiveIntegerField(null=True, blank=True)
    final_parasitemia = models.FloatField(
        null=True, blank=True, help_text="Reviewer-positive cells / reviewed cells x 100 (%)."
    )
    final_parasitemia_low = models.FloatField(null=True, blank=True, help_text="95% Wilson, %.")
    final_parasitemia_high = models.FloatField(null=True, blank=True, help_text="95% Wilson, %.")
    sign_off_note = models.TextField(blank=True)
    reopened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reopened_at = models.DateTimeField(null=True, blank=True)
    reopen_reason = models.TextField(blank=True)
    sent_back_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    sent_back_at = models.DateTimeField(null=True, blank=True)
    send_back_reason = models.TextField(blank=True)
    # The domain guard on all of the case's cells (cases.analysis.domain_guard): out of domain -> no call.
    domain_status = models.CharField(
        max_length=16, choices=DomainStatus.choices, default=DomainStatus.NOT_JUDGED, blank=True
    )
    domain_detail = models.JSONField(default=dict, blank=True)
    # Entered by the clinician or reviewer (cases.fields.case_set_red_cell_count): with it the
    # parasitemia becomes a density, parasites/µL = parasitized fraction x red cells/µL.
    red_cells_per_ul = models.PositiveIntegerField(
        null=True, blank=True, help_text="Red blood cells per µL of the patient's blood."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"Case {self.pk} ({self.patient})"


# Where files go. The upload_to callables below are the one place a stored file's path is built;
# cases.storage.file_store writes through them. Each adds a random part, so names never collide,
# and keeps only the extension of the name it is given: an uploaded name never reaches the disk.


def _unique(stem: str, filename: str) -> str:
    return f"{stem}{uuid.uuid4().hex}{posixpath.splitext(filename)[1].lower()}"


def image_upload_path(instance: "Image", filename: str) -> str:
    """An upload under images/; a cell cut from a field (detected or added) under cells/."""
    if instance.parent_id is not None:
        return _unique(f"cases/{instance.case_id}/cells/{instance.parent_id}-", filename)
    return _unique(f"cases/{instance.case_id}/images/", filename)


class Image(models.Model):
    class Kind(models.TextChoices):
        CELL = "cell", "Single cell"
        FIELD = "field", "Whole field"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    # Waiting for or in analysis: the one definition of "pending" (counts, status, recovery).
    PENDING = (Status.QUEUED, Status.PROCESSING)

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="images")
    # A cell crop segmented from a whole-field image points at that field image.
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="cells"
    )
    bbox = models.JSONField(null=True, blank=True, help_text="x, y, w, h within the parent.")
    # A detected cell cut by the field's edge: shown on the field, never counted or classified.
    on_border = models.BooleanField(default=False)
    # The detector's confidence for a detected cell (null: uploaded, or added by a reviewer).
    detection_score = models.FloatField(null=True, blank=True)
    # A detection a reviewer removed as not a cell (a CellCorrection records who and when): still
    # drawn on the field, struck out, and left out of every count.
    removed = models.BooleanField(default=False)
    file = models.FileField(upload_to=image_upload_path, max_length=255)
    original_name = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.CELL)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    # The domain guard on a field image's cells (cases.analysis.domain_guard); blank for cells.
    domain_status = models.CharField(
        max_length=16, choices=DomainStatus.choices, default=DomainStatus.NOT_JUDGED, blank=True
    )
    domain_detail = models.JSONField(default=dict, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # Recovery bookkeeping (cases.analysis.queue): when the image was last sent to the workers
    # (null: never, or the broker refused it), when a worker last claimed or touched it, and how
    # many claims ended without the worker finishing (a crash) - a poison image stops at a limit.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["case", "sha256"],
                condition=Q(parent__isnull=True),
                name="uploaded_image_once_per_case",
            )
        ]
        indexes = [models.Index(fields=["case", "status"])]

    def __str__(self) -> str:
        return self.original_name or f"image {self.pk}"


def heatmap_upload_path(instance: "Prediction", filename: str) -> str:
    """`overlay.png` -> cases/<case>/heatmaps/<image>-<random>-overlay.png."""
    image = instance.image
    stem = posixpath.splitext(posixpath.basename(filename))[0]
    return f"cases/{image.case_id}/heatmaps/{image.pk}-{uuid.uuid4().hex[:8]}-{stem}.png"


class Prediction(models.Model):
    """The model's result for one image. Never overwritten: a review is its own record."""

    class Label(models.TextChoices):
        PARASITIZED = "parasitized", "Parasitized"
        UNINFECTED = "uninfected", "Uninfected"

    image = models.OneToOneField(Image, on_delete=models.PROTECT, related_name="prediction")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    probability = models.FloatField(help_text="Calibrated probability of Parasitized.")
    label = models.CharField(max_length=12, choices=Label.choices)
    threshold = models.FloatField()
    heatmap = models.FileField(
        upload_to=heatmap_upload_path,
        max_length=255,
        blank=True,
        help_text="Grad-CAM overlay (PNG).",
    )
    heatmap_raw = models.FileField(
        upload_to=heatmap_upload_path, max_length=255, blank=True, help_text="Grad-CAM map (PNG)."
    )
    # Quality gate: an image that does not look like a stained blood cell is kept out of counts.
    quality_ok = models.BooleanField(default=True)
    quality_flags = models.JSONField(default=list, blank=True)
    quality_metrics = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    # The cell's domain-guard vector (classifier.domain.cell_vectors) and its reference's key.
    domain_vector = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.label} {self.probability:.3f}"


class Review(models.Model):
    """A reviewer's decision on one image, beside (never instead of) the model's Prediction.

    Append-only: a changed decision is a new row; the latest review of an image is the current one.
    `label` is the final label, the reviewer's.
    """

    class Decision(models.TextChoices):
        CONFIRM = "confirm", "Confirm"
        OVERRIDE = "override", "Override"

    class Reason(models.TextChoices):
        ARTEFACT = "artefact", "Artefact"
        STAIN_DEBRIS = "stain_debris", "Stain debris"
        PLATELET_OVERLAP = "platelet_overlap", "Platelet overlap"
        POOR_FOCUS = "poor_focus", "Poor focus"
        OTHER = "other", "Other"

    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=10, choices=Decision.choices)
    label = models.CharField(max_length=12, choices=Prediction.Label.choices)
    reason_code = models.CharField(max_length=20, choices=Reason.choices, blank=True)
    reason_text = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["image", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(decision="confirm") | ~Q(reason_code=""),
                name="override_has_reason",
            )
        ]

    def __str__(self) -> str:
        return f"{self.decision} {self.label} (image {self.image_id})"


class SignOff(AppendOnlyModel):
    """A reviewer's signed result of a case: the final diagnosis and the reviewer's counts.

    Append-only, like Review: written by cases.review.services.case_sign_off and never changed.
    A reopen leaves it standing (the case's `signed_off_*`/`final_*` columns hold the current
    sign-off only and are blanked by a reopen), so every diagnosis a case ever had stays
    queryable (cases.review.selectors.case_diagnosis_history).
    """

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="sign_offs")
    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    signed_at = models.DateTimeField()
    diagnosis = models.CharField(max_length=10, choices=Case.Diagnosis.choices)
    positive_cells = models.PositiveIntegerField(
        help_text="Cells the reviewer labelled parasitized."
    )
    reviewed_cells = models.PositiveIntegerField()
    parasitemia = models.FloatField(
        null=True, blank=True, help_text="Positive cells / reviewed cells x 100 (%)."
    )
    parasitemia_low = models.FloatField(null=True, blank=True, help_text="95% Wilson, %.")
    parasitemia_high = models.FloatField(null=True, blank=True, help_text="95% Wilson, %.")
    note = models.TextField(blank=True)

    refused_update = "Sign-offs are append-only: a sign-off cannot be updated."
    refused_delete = "Sign-offs are append-only: a sign-off cannot be deleted."

    class Meta:
        ordering = ["-signed_at", "-id"]
        indexes = [models.Index(fields=["case", "-signed_at"])]

    def __str__(self) -> str:
        return f"{self.diagnosis} (case {self.case_id}, {self.signed_at:%Y-%m-%d %H:%M})"


class CellCorrection(models.Model):
    """A reviewer's correction of a field's detections: a missed cell added, a false one removed.

    Append-only, beside the detector's output (never instead of it); Image.removed holds the
    current state. Detector retraining reads the corrected boxes (cases.fields.selectors).
    """

    class Action(models.TextChoices):
        ADD = "add", "Added a missed cell"
        REMOVE = "remove", "Removed a false detection"
        RESTORE = "restore", "Restored a removed detection"

    field = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="cell_corrections")
    cell = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="corrections")
    action = models.CharField(max_length=10, choices=Action.choices)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} cell {self.cell_id} of field {self.field_id}"


class Notification(models.Model):
    """An in-product message: a case was signed off, sent back or reopened."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    case = models.ForeignKey(
        Case, on_delete=models.CASCADE, null=True, blank=True, related_name="notifications"
    )
    message = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at"])]

    def __str__(self) -> str:
        return self.message


def report_upload_path(instance: "ReportExport", filename: str) -> str:
    """`final.pdf` -> reports/<case>/final-<random>.pdf (the stem says final or preliminary)."""
    stem = posixpath.splitext(posixpath.basename(filename))[0]
    return _unique(f"reports/{instance.case_id}/{stem}-", filename)


class ReportExport(models.Model):
    """A report of a large case, rendered by a worker (cases.reports.tasks) and kept for download."""

    class Kind(models.TextChoices):
        PDF = "pdf", "PDF report"
        CSV = "csv", "CSV (one row per image)"
        FHIR = "fhir", "FHIR R4 JSON"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Ready"
        FAILED = "failed", "Failed"

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="report_exports")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    file = models.FileField(upload_to=report_upload_path, max_length=255, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of case {self.case_id} ({self.status})"


class AuditEvent(AppendOnlyModel):
    """One state change. Append-only; each event's hash covers the previous event's hash."""

    seq = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    case = models.ForeignKey(
        Case, on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events"
    )
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # How `hash` was computed (cases.audit.trail): 1 = plain SHA-256 (events written before
    # AUDIT_HMAC_KEY was set), 2 = HMAC-SHA256 keyed with AUDIT_HMAC_KEY (kept out of the database).
    scheme = models.PositiveSmallIntegerField(default=1)

    refused_update = "The audit trail is append-only: events cannot be updated."
    refused_delete = "The audit trail is append-only: events cannot be deleted."

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["action", "created_at"])]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id}"


class AuditHead(models.Model):
    """The chain's head (a single row), locked while an event is appended so the chain is linear."""

    last_seq = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit head #{self.last_seq}"


class LoginFailure(models.Model):
    """One failed log-in, kept only for the lockout window (cases.audit.login_guard).

    The lock counts these rows, per canonical user name and per client address. Failures for existing
    user names are also audited one by one; those for unknown names are summarised in one audit
    event per period when their rows are pruned, so guessing names cannot grow the trail without bound.
    """

    created_at = models.DateTimeField()
    username = models.CharField(max_length=150)
    address = models.CharField(max_length=45, blank=True)
    known = models.BooleanField()

    class Meta:
        indexes = [
            models.Index(fields=["username", "created_at"]),
            models.Index(fields=["address", "created_at"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return f"failed log-in {self.username!r} from {self.address} at {self.created_at}"
