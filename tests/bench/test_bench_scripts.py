"""The benchmark scripts keep working (their figures are read by people and scripts, not asserted)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def last_json_line(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY"))}
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_engine_benchmark_prints_its_figures_as_json(tiny_model_path):
    result = run(
        [
            "bench/engine.py",
            "--n",
            "16",
            "--n-naive",
            "4",
            "--batch-size",
            "8",
            "--rounds",
            "1",
            "--seconds",
            "0.1",
            "--model",
            str(tiny_model_path),
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = last_json_line(result.stdout)
    for key in ("naive_cells_per_s", "engine_cells_per_s", "forward_cells_per_s", "batch_size"):
        assert figures[key] > 0, key


def shipped_folder(model_path: Path, folder: Path, name: str) -> Path:
    """A folder shaped like classifier/default_model/ holding the given model file."""
    folder.mkdir()
    (folder / "model.keras").write_bytes(model_path.read_bytes())
    manifest = {
        "name": name,
        "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "threshold": 0.5,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_pipeline_benchmark_runs_a_platform_end_to_end(tiny_model_path, tmp_path):
    model_dir = shipped_folder(tiny_model_path, tmp_path / "model", "tiny-bench")
    result = run(
        [
            "bench/pipeline.py",
            "--n",
            "24",
            "--singles",
            "2",
            "--chunk",
            "10",
            "--model-dir",
            str(model_dir),
        ]
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = last_json_line(result.stdout)
    assert figures["n"] == 24 and figures["rejected"] == 0
    assert figures["end_to_end_cells_per_s"] > 0
    assert figures["single_latency_p95_s"] >= figures["single_latency_p50_s"] > 0


def test_segmentation_benchmark_prints_detector_and_baseline_figures(tmp_path):
    from classifier.synthetic import write_smear_folder

    folder = write_smear_folder(tmp_path / "smears", 2, seed=4)
    result = run(["bench/segmentation.py", "--data", str(folder)])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = last_json_line(result.stdout)
    assert figures["images"] == 2
    for key in ("precision", "recall", "count_error_pct", "seconds_per_field"):
        assert figures[key] >= 0
    assert figures["parasitemia_mae_pct"] >= 0
    assert 0 <= figures["baseline_precision"] <= 1 and 0 <= figures["baseline_recall"] <= 1


def test_site_adaptation_simulation_reports_before_and_after(tiny_model_path, tmp_path):
    from classifier.synthetic import write_nih_folder, write_smear_folder

    smears = write_smear_folder(tmp_path / "smears", 8, seed=5)
    nih = write_nih_folder(tmp_path / "nih", 24, n_patients=6, size=64, seed=2)
    model_dir = shipped_folder(tiny_model_path, tmp_path / "model", "tiny-site")
    result = run(
        [
            "bench/site_adaptation.py",
            "--smears",
            str(smears),
            "--nih",
            str(nih),
            "--classifier",
            str(model_dir),
            "--fields",
            "4",
            "--nih-per-class",
            "12",
            "--epochs",
            "1",
        ]  # fmt: skip
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = last_json_line(result.stdout)
    assert figures["site_fields"] == 4 and figures["site_cases"] == 2
    assert figures["site_reviewed"] > 20
    assert figures["before_version"] == "tiny-site"
    for side in ("before", "after"):
        assert figures[side]["n"] > 0 and 0 <= figures[side]["specificity"] <= 1
    assert figures["site_reviewed_after"]["n"] == figures["site_reviewed"]


def test_domain_guard_benchmark_prints_each_rows_flag_rate(tmp_path):
    from classifier.synthetic import write_nih_folder, write_smear_folder

    nih = write_nih_folder(tmp_path / "nih", 60, n_patients=10, size=64, seed=4)  # 12 per patient
    smears = write_smear_folder(tmp_path / "smears", 4, seed=5)
    result = run(
        ["bench/domain_guard.py", "--nih", str(nih), "--smears", str(smears), "--per-group", "12"]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = last_json_line(result.stdout)
    assert summary["version"] == "nih-cnn-v5"
    rows = summary["rows"]
    assert "NIH validation patients, strong stain shift" in rows
    assert "IML-Malaria fields (validation)" in rows
    for row in rows.values():
        assert 0 <= row["flagged"] <= row["groups"] and row["limit"] > 0
    assert rows["NIH training patients"]["groups"] == 8  # 10 patients, 2 held out
