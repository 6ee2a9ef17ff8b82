"""The OpenAPI schema is served, valid and complete; the docs page uses only local files."""

import re

from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient


def test_the_schema_is_served_and_valid(clinician):
    client = APIClient()
    response = client.get(reverse("api-v1-schema"), {"format": "json"})
    assert response.status_code == 200
    validate_schema(response.json())


def test_every_operation_documents_its_errors_as_problems(db):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            codes = set(operation["responses"])
            assert {"429"} <= codes, (path, method)
            if operation["operationId"] != "auth_token_create":
                assert {"401", "403"} <= codes, (path, method)
                assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
            for code in codes - {"200", "201", "202"}:
                assert "application/problem+json" in operation["responses"][code]["content"]


def test_the_docs_page_loads_its_assets_from_this_server(db):
    page = APIClient().get(reverse("api-v1-docs"))
    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui" in a for a in assets)
    assert all(a.startswith("/") for a in assets), assets
    assert "cdn" not in html.lower()
