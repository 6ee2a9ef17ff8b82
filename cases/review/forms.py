"""Input forms of the review pages: they check shapes; the services check the rules."""

from django import forms

from cases.models import AuditEvent, Case, Prediction, ReportExport, Review


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=Review.Decision.choices)
    label = forms.ChoiceField(choices=Prediction.Label.choices, required=False)
    reason_code = forms.ChoiceField(
        choices=[("", "Choose a reason")] + Review.Reason.choices, required=False
    )
    reason_text = forms.CharField(required=False, max_length=2000, widget=forms.Textarea)


class SignOffForm(forms.Form):
    diagnosis = forms.ChoiceField(choices=Case.Diagnosis.choices, widget=forms.RadioSelect)
    note = forms.CharField(
        required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 3})
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))


class ExportForm(forms.Form):
    kind = forms.ChoiceField(choices=ReportExport.Kind.choices)


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(required=False)
    user = forms.CharField(required=False, max_length=150, label="User name")
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    case = forms.IntegerField(required=False, min_value=1, label="Case id")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        actions = AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct()
        self.fields["action"].choices = [("", "Any action")] + [(a, a) for a in actions]
