"""The signed case as a FHIR R4 DiagnosticReport (status final) with contained Observations."""

import json

from django.core.exceptions import ValidationError

from cases.models import Case
from cases.reports.content import ReportData, report_data

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
# Verified against published HL7 value sets; every other concept below is text-coded on purpose.
LOINC_PLASMODIUM_PRESENCE_LM = "51587-4"  # Plasmodium sp [Presence] in Blood by Light microscopy
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBSERVATION_CATEGORY_LABORATORY = [
    {"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}
]
METHOD = (
    "Thin blood smear, light microscopy; each cell image classified by an AI "
    "model and confirmed or overridden by the reviewer"
)


def _quantity(value: float | int, unit: str, code: str) -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def _count(value: int) -> dict:
    return _quantity(value, "cells", "{cells}")


def _subject(case: Case) -> dict:
    return {
        "identifier": {
            "type": {"text": "Laboratory patient identifier"},
            "value": case.patient.identifier,
            "assigner": {"display": case.patient.site.name},
        },
        "display": case.patient.identifier,
    }


def _performer(signer) -> dict:
    return {
        "identifier": {"type": {"text": "Platform user name"}, "value": signer.get_username()},
        "display": signer.get_full_name() or signer.get_username(),
    }


def _observation_context(data: ReportData) -> dict:
    """What every Observation of one report says about its subject, time, signer and method."""
    case = data.case
    return {
        "subject": _subject(case),
        "effectiveDateTime": case.created_at.isoformat(),
        "issued": case.signed_off_at.isoformat(),
        "performer": [_performer(case.signed_off_by)],
        "method": {"text": METHOD},
        "device": {
            "display": "AI decision support; model version " + ", ".join(data.model_versions)
        },
    }


def _presence(case: Case) -> tuple[str, dict, dict]:
    positive = case.final_diagnosis == Case.Diagnosis.POSITIVE
    code = {
        "coding": [
            {
                "system": LOINC,
                "code": LOINC_PLASMODIUM_PRESENCE_LM,
                "display": "Plasmodium sp [Presence] in Blood by Light microscopy",
            }
        ],
        "text": "Malaria parasites (Plasmodium sp), thin smear",
    }
    value = {"valueCodeableConcept": {"text": "Detected" if positive else "Not detected"}}
    return "presence", code, value


def _parasitemia(case: Case) -> tuple[str, dict, dict]:
    low, high = case.final_parasitemia_low, case.final_parasitemia_high
    code = {"text": "Parasitemia: parasitized red blood cells per 100 red blood cells reviewed"}
    value = {
        "valueQuantity": _quantity(round(case.final_parasitemia, 4), "%", "%"),
        "component": [
            {
                "code": {"text": "95% confidence interval, lower bound (Wilson)"},
                "valueQuantity": _quantity(round(low, 4), "%", "%"),
            },
            {
                "code": {"text": "95% confidence interval, upper bound (Wilson)"},
                "valueQuantity": _quantity(round(high, 4), "%", "%"),
            },
        ],
    }
    return "parasitemia", code, value


def _cell_counts(data: ReportData) -> list[tuple[str, dict, dict]]:
    case, counts = data.case, data.counts
    rows = [
        ("cells-reviewed", "Red blood cells reviewed", case.final_reviewed_cells),
        (
            "cells-parasitized",
            "Parasitized red blood cells (reviewer's final labels)",
            case.final_positive_cells,
        ),
        (
            "cells-counted-ai",
            "Red blood cells counted by the AI model (quality-passed, before review)",
            counts.ai_counted,
        ),
        (
            "cells-parasitized-ai",
            "Parasitized red blood cells (AI model, before review)",
            counts.ai_parasitized,
        ),
    ]
    return [(obs_id, {"text": text}, {"valueQuantity": _count(n)}) for obs_id, text, n in rows]


def _observations(data: ReportData) -> list[dict]:
    context = _observation_context(data)
    parts = [_presence(data.case), _parasitemia(data.case), *_cell_counts(data)]
    return [
        {
            "resourceType": "Observation",
            "id": obs_id,
            "status": "final",
            "category": OBSERVATION_CATEGORY_LABORATORY,
            "code": code,
            **context,
            **value,
        }
        for obs_id, code, value in parts
    ]


def _conclusion(case: Case) -> str:
    low, high = case.final_parasitemia_low, case.final_parasitemia_high
    conclusion = (
        f"{case.get_final_diagnosis_display()}: parasitemia {case.final_parasitemia:.2f}% "
        f"({case.final_positive_cells}/{case.final_reviewed_cells} cells; 95% CI "
        f"{low:.2f}-{high:.2f}%). AI decision support, not a stand-alone diagnosis."
    )
    if case.sign_off_note:
        conclusion += f" Note: {case.sign_off_note}"
    return conclusion


def case_report_fhir(case: Case) -> dict:
    """A FHIR R4 DiagnosticReport (status final) with contained Observations. Signed cases only."""
    data = report_data(case)
    case = data.case
    if case.status != Case.Status.SIGNED_OFF:
        raise ValidationError("Only a signed-off case can be exported as a final FHIR report.")
    performer = _performer(case.signed_off_by)
    observations = _observations(data)
    return {
        "resourceType": "DiagnosticReport",
        "id": f"case-{case.pk}",
        "identifier": [{"type": {"text": "Platform case id"}, "value": str(case.pk)}],
        "status": "final",
        "category": [{"coding": [{"system": V2_0074, "code": "HM", "display": "Hematology"}]}],
        "code": {"text": "Malaria thin blood smear microscopy, AI-assisted, reviewer-confirmed"},
        "subject": _subject(case),
        "effectiveDateTime": case.created_at.isoformat(),
        "issued": case.signed_off_at.isoformat(),
        "performer": [performer],
        "resultsInterpreter": [performer],
        "contained": observations,
        "result": [{"reference": f"#{obs['id']}"} for obs in observations],
        "conclusion": _conclusion(case),
    }


def case_report_fhir_bytes(case: Case) -> bytes:
    return json.dumps(case_report_fhir(case), indent=2).encode("utf-8")
