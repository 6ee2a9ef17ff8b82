"""Serializers of API v1 beside cases.api.serializers: inputs validate, outputs shape. Nothing
here decides a rule; the services do (cases.*.services)."""

from django.urls import reverse
from rest_framework import serializers

from cases.intake.forms import KIND_CHOICES
from cases.intake.presenters import image_payload
from cases.models import (
    AuditEvent,
    Case,
    DomainStatus,
    Image,
    Notification,
    Prediction,
    ReportExport,
    Review,
    Site,
)
from cases.review.selectors import current_review
from classifier.models import ModelVersion

# --- Reads -----------------------------------------------------------------------------------


class SiteSerializer(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = ["id", "name", "code"]


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())
    sites = SiteSerializer(many=True)
    is_superuser = serializers.BooleanField()


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Review
        fields = [
            "id",
            "image",
            "decision",
            "label",
            "reason_code",
            "reason_text",
            "reviewer",
            "created_at",
        ]


class ImageLinksSerializer(serializers.Serializer):
    file = serializers.CharField()
    heatmap = serializers.CharField(allow_null=True)
    heatmap_raw = serializers.CharField(allow_null=True)


class ResultSerializer(serializers.Serializer):
    """An image and its analysis result: the case page's shape (cases.intake.presenters), the
    reviewer's current decision, and `api_urls`, the permission-checked file endpoints of the API
    (token authentication works there; the page's `*_url` links need a session)."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=Image.Status.choices)
    status_label = serializers.CharField()
    error = serializers.CharField(allow_blank=True)
    kind = serializers.ChoiceField(choices=Image.Kind.choices)
    parent_id = serializers.IntegerField(allow_null=True)
    counted_cell = serializers.BooleanField()
    on_border = serializers.BooleanField()
    removed = serializers.BooleanField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    probability = serializers.FloatField(allow_null=True)
    label = serializers.ChoiceField(choices=Prediction.Label.choices, allow_null=True)
    threshold = serializers.FloatField(allow_null=True)
    quality_ok = serializers.BooleanField(allow_null=True)
    quality_flags = serializers.ListField(child=serializers.CharField(), allow_null=True)
    model_version = serializers.CharField(allow_null=True)
    near_threshold = serializers.BooleanField(allow_null=True)
    domain_status = serializers.ChoiceField(
        choices=DomainStatus.choices, allow_blank=True, help_text="Field photographs only."
    )
    file_url = serializers.CharField()
    heatmap_url = serializers.CharField(allow_null=True)
    heatmap_raw_url = serializers.CharField(allow_null=True)
    api_urls = ImageLinksSerializer()
    review = ReviewSerializer(allow_null=True, help_text="The current (latest) review, if any.")

    def to_representation(self, instance: Image) -> dict:
        payload = image_payload(instance)
        payload["quality_flags"] = (
            [str(flag) for flag in payload["quality_flags"]]
            if payload["quality_flags"] is not None
            else None
        )
        payload["domain_status"] = instance.domain_status
        links = {"file": "file_url", "heatmap": "heatmap_url", "heatmap-raw": "heatmap_raw_url"}
        payload["api_urls"] = {
            which.replace("-", "_"): reverse("api-v1-image-content", args=[instance.pk, which])
            if payload.get(key)
            else None
            for which, key in links.items()
        }
        review = current_review(instance)
        payload["review"] = ReviewSerializer(review).data if review is not None else None
        return payload


class CaseProgressSerializer(serializers.Serializer):
    """What the case page updates itself with while analysis runs (cases.intake.presenters)."""

    status_label = serializers.CharField()
    done = serializers.BooleanField(help_text="No image is queued or processing.")
    counts = serializers.DictField(child=serializers.IntegerField())
    summary = serializers.DictField(
        child=serializers.JSONField(), help_text="cases.summary.case_summary: the case's counts."
    )
    headline = serializers.DictField(child=serializers.CharField())


class HistoryEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name")

    class Meta:
        model = AuditEvent
        fields = [
            "seq",
            "created_at",
            "actor",
            "action",
            "object_type",
            "object_id",
            "case",
            "before",
            "after",
            "hash",
        ]


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ["id", "case", "message", "created_at", "read_at"]


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "kind",
            "is_active",
            "threshold",
            "temperature",
            "sha256",
            "created_at",
            "metrics",
            "notes",
        ]


class ExportSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ReportExport
        fields = [
            "id",
            "case",
            "kind",
            "status",
            "error",
            "created_by",
            "created_at",
            "finished_at",
            "download_url",
        ]

    def get_download_url(self, export: ReportExport) -> str | None:
        if export.status != ReportExport.Status.DONE:
            return None
        return reverse("api-v1-export-file", args=[export.pk])


class ReviewCountsSerializer(serializers.Serializer):
    """The AI's and the reviewers' counts side by side (cases.review.selectors.ReviewCounts)."""

    cells = serializers.IntegerField()
    analysing = serializers.IntegerField()
    failed = serializers.IntegerField()
    reviewed = serializers.IntegerField()
    unreviewed = serializers.IntegerField()
    confirmed = serializers.IntegerField()
    overridden = serializers.IntegerField()
    ai_parasitized = serializers.IntegerField()
    ai_counted = serializers.IntegerField()
    reviewer_parasitized = serializers.IntegerField()
    reviewer_parasitemia = serializers.FloatField(allow_null=True)
    all_reviewed = serializers.BooleanField()
    suggested_diagnosis = serializers.ChoiceField(choices=Case.Diagnosis.choices)


class QueueCaseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    patient_identifier = serializers.CharField(source="patient.identifier")
    site = serializers.IntegerField(source="patient.site_id")
    created_at = serializers.DateTimeField()
    domain_status = serializers.CharField(allow_blank=True)
    assigned_reviewer = serializers.CharField(source="assigned_reviewer.username", allow_null=True)
    pending_count = serializers.IntegerField()
    near_count = serializers.IntegerField()
    positive_count = serializers.IntegerField()
    flagged_count = serializers.IntegerField()
    failed_count = serializers.IntegerField()
    urgency = serializers.IntegerField(help_text="2: outside the model's domain, 1: urgent.")


class FieldSerializer(serializers.Serializer):
    """A field photograph with its detected cells and counts (cases.fields.selectors)."""

    field = serializers.DictField(child=serializers.JSONField())
    cells = serializers.ListField(child=serializers.DictField(child=serializers.JSONField()))
    counts = serializers.DictField(child=serializers.JSONField())
    done = serializers.BooleanField()


class FieldSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField(source="image.pk")
    name = serializers.CharField(source="image.original_name")
    status = serializers.CharField(source="image.status")
    domain_status = serializers.CharField(source="image.domain_status", allow_blank=True)
    detected = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.JSONField())


class UploadFileOutcomeSerializer(serializers.Serializer):
    name = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["stored", "duplicate", "rejected", "skipped"])
    id = serializers.IntegerField(allow_null=True, help_text="The stored image's id.")
    reason = serializers.CharField(
        allow_blank=True, help_text="Why a file was rejected or an archive entry skipped."
    )


class StoredFileSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()


class RejectedFileSerializer(serializers.Serializer):
    name = serializers.CharField()
    reason = serializers.CharField()


class UploadOutcomeSerializer(serializers.Serializer):
    files = UploadFileOutcomeSerializer(many=True, help_text="Every file in request order.")
    stored = StoredFileSerializer(many=True)
    duplicates = serializers.ListField(child=serializers.CharField())
    rejected = RejectedFileSerializer(many=True)
    skipped = RejectedFileSerializer(many=True, help_text="Archive entries that are not images.")


class CountSerializer(serializers.Serializer):
    count = serializers.IntegerField()


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


# --- Writes ----------------------------------------------------------------------------------


class CaseNotesSerializer(serializers.Serializer):
    clinical_notes = serializers.CharField(allow_blank=True)


class RedCellCountSerializer(serializers.Serializer):
    red_cells_per_ul = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="Red cells per µL of blood; null clears it."
    )


class UploadSerializer(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),
        help_text="One or more images (PNG, JPEG, TIFF, BMP) or zip archives of them.",
    )
    kind = serializers.ChoiceField(choices=KIND_CHOICES, default="auto")


class DecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Review.Decision.choices)
    label = serializers.ChoiceField(
        choices=Prediction.Label.choices, required=False, help_text="Overrides only."
    )
    reason_code = serializers.ChoiceField(
        choices=Review.Reason.choices, required=False, help_text="Overrides only."
    )
    reason_text = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class ConfirmRemainingSerializer(serializers.Serializer):
    expected = serializers.IntegerField(
        min_value=0,
        help_text="How many results the reviewer agreed to confirm (GET shows the number); "
        "a changed set is refused with 409.",
    )


class ConfirmRemainingPreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    positives = serializers.IntegerField()
    images = serializers.ListField(child=serializers.IntegerField())


class SignOffSerializer(serializers.Serializer):
    diagnosis = serializers.ChoiceField(choices=Case.Diagnosis.choices)
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class CellAddSerializer(serializers.Serializer):
    x = serializers.FloatField(help_text="The cell's centre, in the photograph's pixels.")
    y = serializers.FloatField(help_text="The cell's centre, in the photograph's pixels.")


class ExportRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ReportExport.Kind.choices)


class NotificationsReadSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        help_text="The notifications to mark read; all of the caller's when left out.",
    )


# --- Filters (query parameters) --------------------------------------------------------------


class DateRangeFilter(serializers.Serializer):
    created_after = serializers.DateField(required=False, help_text="On or after this date.")
    created_before = serializers.DateField(required=False, help_text="On or before this date.")


class PatientFilter(serializers.Serializer):
    site = serializers.IntegerField(required=False, min_value=1)
    identifier = serializers.CharField(
        required=False, max_length=64, help_text="Part of the identifier."
    )


class CaseFilter(DateRangeFilter):
    status = serializers.ChoiceField(choices=Case.Status.choices, required=False)
    site = serializers.IntegerField(required=False, min_value=1)
    patient = serializers.IntegerField(required=False, min_value=1)
    patient_identifier = serializers.CharField(
        required=False, max_length=64, help_text="Part of the patient's identifier."
    )
    diagnosis = serializers.ChoiceField(
        choices=Case.Diagnosis.choices, required=False, help_text="The signed final diagnosis."
    )


class ResultFilter(serializers.Serializer):
    status = serializers.ChoiceField(choices=Image.Status.choices, required=False)
    kind = serializers.ChoiceField(choices=Image.Kind.choices, required=False)
    label = serializers.ChoiceField(
        choices=Prediction.Label.choices, required=False, help_text="The model's label."
    )
    quality_ok = serializers.BooleanField(required=False, allow_null=True, default=None)


class AuditFilter(DateRangeFilter):
    action = serializers.CharField(required=False, max_length=64)
    user = serializers.CharField(required=False, max_length=150, help_text="Actor's user name.")
    case = serializers.IntegerField(required=False, min_value=1)


class NotificationFilter(serializers.Serializer):
    unread = serializers.BooleanField(required=False, allow_null=True, default=None)


class ModelVersionFilter(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ModelVersion.Kind.choices, required=False)
    is_active = serializers.BooleanField(required=False, allow_null=True, default=None)
