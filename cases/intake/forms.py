"""Forms validate input only; the services do the writing."""

from django import forms
from django.core.exceptions import ValidationError

from cases.models import Case, Patient, Site
from cases.validators import validate_single_line

KIND_CHOICES = [
    ("auto", "Detect automatically"),
    ("cell", "Single cells"),
    ("field", "Whole fields"),
]


class CaseFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Patient identifier", max_length=64)
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *Case.Status.choices], label="Status"
    )


class PatientForm(forms.Form):
    site = forms.ModelChoiceField(queryset=Site.objects.none(), empty_label=None)
    identifier = forms.CharField(
        max_length=64, label="Patient identifier", validators=[validate_single_line]
    )
    sex = forms.ChoiceField(choices=Patient.Sex.choices, initial=Patient.Sex.UNKNOWN)
    birth_date = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Date of birth"
    )
    age_years = forms.IntegerField(required=False, min_value=0, max_value=130, label="Age (years)")

    def __init__(self, *args, sites, **kwargs):
        super().__init__(*args, **kwargs)
        # Only the user's own sites are offered: another site's id fails validation.
        self.fields["site"].queryset = sites


class CaseForm(forms.Form):
    clinical_notes = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}), label="Clinical notes"
    )


class UploadKindForm(forms.Form):
    kind = forms.ChoiceField(
        required=False, choices=KIND_CHOICES, initial="auto", label="Image type"
    )


def add_service_errors(form: forms.Form, exc: ValidationError) -> None:
    """Show a service's ValidationError on the form (field errors where the field exists)."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)
