"""The review page of a 500-image case: a constant number of queries and a bounded render time."""

import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bench.api import bulk_analysed_cells
from cases.analysis.status import case_status_refresh
from cases.models import Review
from cases.review import services as reviews
from tests.cases.review_helpers import model_version

pytestmark = pytest.mark.slow


def bulk_cells(case, by, count: int) -> None:
    bulk_analysed_cells(case, by, model_version(), count, quality_ok=lambda n: n % 17 != 0)
    with transaction.atomic():
        case_status_refresh(case=case, by=by)


def test_review_page_of_500_images(client, case, clinician, reviewer):
    bulk_cells(case, clinician, 500)
    reviews.review_claim(case=case, by=reviewer)
    reviews.review_confirm_remaining(case=case, by=reviewer)  # half the cells carry a review
    client.force_login(reviewer)
    url = reverse("review_case", args=[case.pk])
    client.get(url)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200
    body = response.content.decode()
    assert body.count('class="review-thumb') == 500
    reviewed = Review.objects.filter(image__case=case).count()
    print(
        f"\nreview page, 500 images ({reviewed} reviewed): {len(queries)} queries, "
        f"median {sorted(timings)[2] * 1000:.0f} ms, best {min(timings) * 1000:.0f} ms, "
        f"{len(response.content) / 1024:.0f} KiB"
    )
    assert len(queries) <= 15
    assert sorted(timings)[2] < 5.0
