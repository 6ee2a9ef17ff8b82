"""Read a case's numbers as each place states them: the case page, the PDF (text extracted), the
CSV, the API and the FHIR export (browser tests)."""

import csv
import io
import json
import re

from playwright.sync_api import Page

from tests.cases.count_helpers import pdf_text


def page_counts(page: Page) -> dict:
    """The AI and reviewer numbers as the case page shows them."""
    row = lambda name: page.locator(f"[data-row={name}] td")  # noqa: E731
    return {
        "card_parasitized": int(page.locator("#summary [data-role=parasitized]").inner_text()),
        "card_uninfected": int(page.locator("#summary [data-role=uninfected]").inner_text()),
        "table_parasitized": int(row("parasitized").nth(0).inner_text()),
        "table_uninfected": int(row("uninfected").nth(0).inner_text()),
        "table_reviewer_parasitized": row("parasitized").nth(1).inner_text(),
    }


def report_counts(page: Page, case_id: int, *, signed: bool) -> dict:
    """The same numbers from the PDF, the CSV, the API and (signed) the FHIR export."""
    get = page.request.get
    pdf = pdf_text(get(f"/review/case/{case_id}/report.pdf").body())
    ai, reviewer = map(int, re.search(r"Parasitized (\d+) (\d+)", pdf).groups())
    rows = list(csv.DictReader(io.StringIO(get(f"/review/case/{case_id}/report.csv").text())))
    api = get(f"/api/cases/{case_id}/").json()
    out = {
        "pdf": pdf,
        "pdf_ai_parasitized": ai,
        "pdf_reviewer_parasitized": reviewer,
        "csv_ai_parasitized": sum(
            r["counted"] == "true" and r["ai_label"] == "parasitized" for r in rows
        ),
        "csv_reviewer_parasitized": sum(r["final_label"] == "parasitized" for r in rows),
        "api_ai_parasitized": api["summary"]["parasitized"],
        "api": api,
    }
    if signed:
        fhir = json.loads(get(f"/review/case/{case_id}/fhir.json").body())
        obs = {
            o["id"]: o["valueQuantity"]["value"] for o in fhir["contained"] if "valueQuantity" in o
        }
        out["fhir_ai_parasitized"] = obs["cells-parasitized-ai"]
        out["fhir_reviewer_parasitized"] = obs["cells-parasitized"]
    return out
