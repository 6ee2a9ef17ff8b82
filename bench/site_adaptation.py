"""Site adaptation, simulated end to end through the product's own workflow.

    python bench/site_adaptation.py [--smears DIR] [--nih DIR] [--classifier DIR] [--fields 8]
                                    [--nih-per-class 1500] [--epochs 2] [--keep]

A new lab ("site") photographs fields of its own smears (here: fields of the IML-Malaria training
block — never the held-out block), uploads them as field photographs, and the worker's code
detects and classifies every cell with the shipped detector and the given classifier (default:
the shipped one, classifier/default_model/). The site's reviewer then confirms or overrides each
detected cell that matches an annotated box (the annotation plays the reviewer: parasite stage
-> parasitized, red blood cell -> uninfected), through the review service, with reasons and audit.
Then, as the README tells an admin:

    python manage.py train_model --data NIH --include-reviewed --init-from V ...
    python manage.py evaluate_model --data SMEARS --split validation        (before and after)
    python manage.py evaluate_model --reviewed --site SITE                   (the site's own cells)

NIH is a sample of --nih-per-class cells per class (all patients) so that the NIH figures are
rehearsed while the reviewed cells adapt the model. Everything runs in a private temporary
platform folder (SQLite, local files). The last line printed is one JSON object with the held-out
figures before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SITE_CODE = "sim-site"


def setup_django(var_dir: Path) -> None:
    os.environ.update(
        DEBUG="true",
        MALARIA_VAR_DIR=str(var_dir),
        DATABASE_URL=f"sqlite:///{var_dir / 'db.sqlite3'}",
        CELERY_BROKER_URL="filesystem://",
        DJANGO_SETTINGS_MODULE="malariaweb.settings",
    )
    import django

    django.setup()


def nih_sample(nih: Path, per_class: int, dest: Path, seed: int = 0) -> Path:
    """An NIH-layout folder of links to per_class random images of each class."""
    rng = np.random.default_rng(seed)
    for label in ("Parasitized", "Uninfected"):
        files = sorted((nih / label).glob("*.png"))
        (dest / label).mkdir(parents=True, exist_ok=True)
        for i in rng.choice(len(files), min(per_class, len(files)), replace=False):
            (dest / label / files[i].name).symlink_to(files[i])
    return dest


def make_site(n_fields: int, smears: Path):
    """The site, its clinician and reviewer, and the training-block fields it photographs."""
    from django.contrib.auth.models import Group, User

    from cases.models import Site
    from training.smears import load_fields, split_fields

    site = Site.objects.create(name="Simulated site (IML-Malaria stain)", code=SITE_CODE)
    users = {}
    for role, name in (("clinician", "site-clinician"), ("reviewer", "site-reviewer")):
        user = User.objects.create_user(username=name, password="simulated-password-1")
        user.groups.add(Group.objects.get(name=role))
        site.members.add(user)
        users[role] = user
    training_block, _held_out = split_fields(load_fields(smears), 0.15)
    step = max(1, len(training_block) // n_fields)
    return site, users, training_block[::step][:n_fields]


def photograph_and_review(site, users, fields) -> dict:
    """Upload two fields per case, analyse them, and review every matched detected cell."""
    from cases.analysis.services import images_analyse
    from cases.intake import services
    from cases.models import Image, Review
    from cases.review import services as reviews
    from training.smears import PARASITE_STAGES, UNINFECTED_TYPES, match_boxes

    tally = {"cases": 0, "cells_detected": 0, "reviewed": 0, "overridden": 0, "parasitized": 0}
    for start in range(0, len(fields), 2):
        pair = fields[start : start + 2]
        patient = services.patient_create(
            site=site, identifier=f"SIM-{start // 2 + 1:03d}", by=users["clinician"]
        )
        case = services.case_create(patient=patient, by=users["clinician"])
        uploads = [(f.name, f.path.read_bytes()) for f in pair]
        stored = services.images_add(
            case=case, files=uploads, by=users["clinician"], kind="field"
        ).stored
        images_analyse(image_ids=[image.pk for image in stored])
        reviews.review_claim(case=case, by=users["reviewer"])
        tally["cases"] += 1
        for field_image, annotated in zip(stored, pair, strict=True):
            cells = list(
                Image.objects.filter(parent=field_image, on_border=False)
                .select_related("prediction")
                .order_by("pk")
            )
            tally["cells_detected"] += len(cells)
            boxes = np.array([[c.bbox[k] for k in "xywh"] for c in cells], float).reshape(-1, 4)
            for i, j in match_boxes(boxes, annotated.boxes):
                kind = annotated.types[j]
                if kind not in PARASITE_STAGES | UNINFECTED_TYPES:
                    continue
                truth = "parasitized" if kind in PARASITE_STAGES else "uninfected"
                cell = cells[i]
                if not hasattr(cell, "prediction"):
                    continue
                if cell.prediction.label == truth:
                    reviews.review_submit(image=cell, by=users["reviewer"], decision="confirm")
                else:
                    reviews.review_submit(
                        image=cell,
                        by=users["reviewer"],
                        decision=Review.Decision.OVERRIDE,
                        label=truth,
                        reason_code=Review.Reason.values[0],
                        reason_text=f"simulated reviewer: annotated as {kind}",
                    )
                    tally["overridden"] += 1
                tally["reviewed"] += 1
                tally["parasitized"] += truth == "parasitized"
    return tally


def evaluate(version: str, smears: Path | None) -> dict:
    """evaluate_model --data SMEARS --split validation, or --reviewed --site (smears None); its
    service, called directly to keep the dict."""
    from training.evaluate import evaluate_version, resolve_version

    if smears is None:
        result = evaluate_version(resolve_version(version), None, 200, reviewed_site=SITE_CODE)
    else:
        result = evaluate_version(resolve_version(version), smears, 200, split="validation")
    keys = ("n", "accuracy", "auc", "sensitivity", "specificity", "threshold")
    out = {k: result.get(k) for k in keys}
    out["out_of_domain_fraction"] = result.get("out_of_domain_fraction")
    return out


def parse_args() -> argparse.Namespace:
    data_dir = Path(os.environ.get("MALARIA_DATA_DIR", ROOT.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smears", default=str(data_dir / "smears"))
    parser.add_argument("--nih", default=str(data_dir / "nih_cells"))
    parser.add_argument(
        "--classifier",
        default=str(ROOT / "classifier" / "default_model"),
        help="an exported classifier folder (manifest.json): the site's starting model",
    )
    parser.add_argument("--fields", type=int, default=8, help="field photographs the site reviews")
    parser.add_argument("--nih-per-class", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary platform folder")
    return parser.parse_args()


def install_platform(var_dir: Path, classifier_dir: str) -> str:
    """A fresh platform in var_dir with the shipped detector and the given classifier, active;
    returns the classifier's version name."""
    setup_django(var_dir)
    from django.core.management import call_command

    from classifier.registry import active_version

    call_command("migrate", verbosity=0)
    call_command("setup_platform", verbosity=0)
    shipped = ROOT / "classifier" / "default_detector"
    call_command("install_default_model", dir=[classifier_dir, str(shipped)], verbosity=0)
    return active_version().name


def fine_tune(nih: Path, before_name: str, epochs: int) -> None:
    """train_model warm-started from before_name on NIH cells and the site's reviewed cells."""
    from django.core.management import call_command

    call_command(
        "train_model",
        data=str(nih),
        include_reviewed=True,
        init_from=before_name,
        name="site-adapted",
        epochs=epochs,
        learning_rate=1e-4,
        lr_schedule="cosine",
        min_lr=1e-6,
        dropout=0.25,
        val_fraction=0.2,
        seed=42,
        colour_jitter=2.0,
        stop_patience=30,
    )


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    var_dir = Path(tempfile.mkdtemp(prefix="site-adaptation-"))
    before_name = install_platform(var_dir, args.classifier)
    site, users, fields = make_site(args.fields, Path(args.smears))
    tally = photograph_and_review(site, users, fields)
    print(f"site reviewed {tally['reviewed']} cells of {len(fields)} fields: {tally}", flush=True)
    before = evaluate(before_name, Path(args.smears))
    print(f"before ({before_name}) on the held-out fields: {before}", flush=True)
    nih = nih_sample(Path(args.nih), args.nih_per_class, var_dir / "nih-sample")
    fine_tune(nih, before_name, args.epochs)
    after = evaluate("site-adapted", Path(args.smears))
    # The site's own reviewed cells: "after" has trained on most of them (optimistic).
    site_figures = {
        "site_reviewed_before": evaluate(before_name, None),
        "site_reviewed_after": evaluate("site-adapted", None),
    }
    result = {
        "site_fields": len(fields),
        **{f"site_{k}": v for k, v in tally.items()},
        "before_version": before_name,
        "before": before,
        "after": after,
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "held_out": "IML-Malaria validation block (last 15% of fields by name)",
        **site_figures,
    }
    if args.keep:
        result["folder"] = str(var_dir)
    else:
        shutil.rmtree(var_dir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
