"""Requests per second of the API's case-results list (GET /api/v1/cases/{id}/images/) for a
case of 1,000 analysed images, token-authenticated, in one process (Django's test client: the
full middleware and DRF stack, no network and no gunicorn).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/malaria_bench .venv/bin/python bench/api.py \
        [--images 1000] [--seconds 10]

Without DATABASE_URL it runs on a temporary SQLite file. With it, the named database (its name
must contain "bench") is emptied by `flush` first. Reported per page size (100: the default page;
500: the largest page); the query count is held constant by tests/api/test_queries.py. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def setup() -> None:
    sys.path.insert(0, str(REPO))
    url = os.environ.get("DATABASE_URL", "")
    if url and "bench" not in url.rsplit("/", 1)[-1]:
        sys.exit("DATABASE_URL must name a database containing 'bench' (it is flushed).")
    if not url:
        os.environ["MALARIA_VAR_DIR"] = tempfile.mkdtemp(prefix="bench-api-")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="malariaweb.settings",
        DEBUG="true",
        SECURE_SSL_REDIRECT="false",
        ALLOWED_HOSTS="testserver",
        API_THROTTLE_USER="100000000/minute",
        LOG_LEVEL="WARNING",
        DB_CONN_MAX_AGE="600",  # one connection for the run, as a long-lived web worker has
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if url and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # fail early when the database does not exist
    call_command("migrate", verbosity=0)
    if url:
        call_command("flush", interactive=False, verbosity=0)


def make_case(images: int):
    from django.contrib.auth.models import Group, User
    from rest_framework.authtoken.models import Token

    from cases.intake import services
    from cases.models import Site
    from classifier.models import ModelVersion

    site = Site.objects.create(name="Bench Lab", code="bench")
    user = User.objects.create_user("bench", password="bench-password-1")
    user.groups.add(Group.objects.get_or_create(name="clinician")[0])
    site.members.add(user)
    patient = services.patient_create(site=site, identifier="B-1", by=user)
    case = services.case_create(patient=patient, by=user)
    version = ModelVersion.objects.create(name="bench-v1", file="models/x.keras", sha256="0" * 64)
    bulk_analysed_cells(case, user, version, images)
    return case, Token.objects.create(user=user).key


def bulk_analysed_cells(case, by, version, count: int, *, quality_ok=lambda n: True) -> None:
    """`count` analysed cells in two bulk inserts, for the benchmarks and the tests of large cases
    (the real writers would take minutes). Direct for speed, but in the shape the upload and the
    worker leave them: file and heatmap names from their upload_to, cells DONE, probabilities
    n % 100 / 100 against a threshold of 0.5; no files are written."""
    from cases.models import Image, Prediction

    image_file = Image._meta.get_field("file")
    heatmap = Prediction._meta.get_field("heatmap")
    images = Image.objects.bulk_create(
        Image(
            case=case,
            file=image_file.generate_filename(Image(case=case), "upload.png"),
            original_name=f"cell-{n}.png",
            sha256=f"{n:064x}",
            width=48,
            height=48,
            uploaded_by=by,
            status=Image.Status.DONE,
        )
        for n in range(count)
    )
    Prediction.objects.bulk_create(
        Prediction(
            image=image,
            model_version=version,
            probability=(n % 100) / 100,
            label="parasitized" if n % 100 >= 50 else "uninfected",
            threshold=0.5,
            heatmap=heatmap.generate_filename(Prediction(image=image), "overlay.png"),
            heatmap_raw=heatmap.generate_filename(Prediction(image=image), "raw.png"),
            quality_ok=quality_ok(n),
        )
        for n, image in enumerate(images)
    )


def measure(url: str, token: str, seconds: float) -> dict:
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    first = client.get(url)
    assert first.status_code == 200, first.content[:300]
    body = first.json()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        assert client.get(url).status_code == 200
        count += 1
    elapsed = time.perf_counter() - started
    return {
        "url": url,
        "results": len(body["results"]),
        "bytes": len(first.content),
        "requests": count,
        "requests_per_s": round(count / elapsed, 1),
        "ms_per_request": round(1000 * elapsed / count, 1),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args(argv)
    setup()
    from django.db import connection

    case, token = make_case(args.images)
    base = f"/api/v1/cases/{case.pk}/images/"
    report = {"images": args.images, "database": connection.vendor, "pages": []}
    for size in (100, 500):
        result = measure(f"{base}?page_size={size}", token, args.seconds)
        report["pages"].append(result)
        print(
            f"page_size={size:<4} {result['requests_per_s']:>7} requests/s "
            f"({result['ms_per_request']} ms, {result['bytes']:,} B)"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
