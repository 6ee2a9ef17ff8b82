"""Small input and output serializers for the REST API. They validate and shape; services write."""

from rest_framework import serializers

from cases.access import user_sites
from cases.intake.selectors import patients_visible
from cases.models import Case, Patient, Site
from cases.validators import validate_single_line


class PatientInSerializer(serializers.Serializer):
    site = serializers.PrimaryKeyRelatedField(queryset=Site.objects.none())
    identifier = serializers.CharField(max_length=64, validators=[validate_single_line])
    sex = serializers.ChoiceField(choices=Patient.Sex.choices, default=Patient.Sex.UNKNOWN)
    birth_date = serializers.DateField(required=False, allow_null=True, default=None)
    age_years = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0, max_value=130
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        # Another site's id reads as "does not exist": no hint that it does.
        self.fields["site"].queryset = user_sites(user)


class PatientOutSerializer(serializers.ModelSerializer):
    site_name = serializers.CharField(source="site.name")

    class Meta:
        model = Patient
        fields = ["id", "site", "site_name", "identifier", "sex", "birth_date", "age_years"]


class CaseInSerializer(serializers.Serializer):
    patient = serializers.PrimaryKeyRelatedField(queryset=Patient.objects.none())
    clinical_notes = serializers.CharField(required=False, allow_blank=True, default="")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["patient"].queryset = patients_visible(user)


class CaseOutSerializer(serializers.ModelSerializer):
    patient_identifier = serializers.CharField(source="patient.identifier")
    site = serializers.IntegerField(source="patient.site_id")
    signed_off_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Case
        fields = [
            "id",
            "patient",
            "patient_identifier",
            "site",
            "status",
            "clinical_notes",
            "created_at",
            "updated_at",
            # The signed result (empty until sign-off; cleared again by a reopen).
            "final_diagnosis",
            "final_positive_cells",
            "final_reviewed_cells",
            "final_parasitemia",
            "final_parasitemia_low",
            "final_parasitemia_high",
            "signed_off_by",
            "signed_off_at",
        ]
