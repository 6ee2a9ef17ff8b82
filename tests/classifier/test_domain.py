"""The domain guard (classifier.domain) on synthetic cells: calibrated on its own groups, it flags
at most 5% of them and nearly every group of stain-shifted cells."""

import numpy as np
import pytest

from classifier import domain
from classifier.preprocess import resize_rgb, to_input
from classifier.synthetic import make_cell

CELLS_PER_GROUP = 16


def _slide(rng: np.random.Generator, n: int, shift: bool = False) -> list[np.ndarray]:
    """One 'patient': cells with one slide's own small stain and camera gain, a few parasitized."""
    gain = rng.normal(1.0, 0.03, 3)
    cells = []
    for k in range(n):
        rgb = np.clip(make_cell(rng, k % 5 == 0, size=80) * gain, 0, 255).astype(np.uint8)
        cells.append(domain.shift_stain(rgb) if shift else rgb)
    return cells


def _measure(engine, cells: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    small = [resize_rgb(c) for c in cells]
    return engine.features(np.stack([to_input(s) for s in small])), domain.cell_colours(small)


@pytest.fixture(scope="module")
def groups(tiny_engine):
    rng = np.random.default_rng(7)
    return {f"C{100 + g}": _measure(tiny_engine, _slide(rng, CELLS_PER_GROUP)) for g in range(40)}


@pytest.fixture(scope="module")
def reference(groups):
    return domain.build_reference(groups)


def test_cell_colour_ignores_the_black_padding():
    cell = np.zeros((100, 100, 3), np.uint8)
    cell[25:75, 25:75] = (220, 160, 170)
    padded_more = np.zeros((100, 100, 3), np.uint8)
    padded_more[40:60, 40:60] = (220, 160, 170)
    assert domain.cell_colour(cell)[:3] == pytest.approx(domain.cell_colour(padded_more)[:3], abs=3)
    assert domain.cell_colour(cell)[3:] == pytest.approx([0, 0, 0], abs=3)


def test_the_limit_flags_at_most_five_percent_of_the_validated_groups(reference, groups):
    assert reference["calibration"]["all"] == {
        "groups": 40,
        "flagged_leave_one_out": pytest.approx(0.05, abs=0.05),
    }
    assert reference["calibration"]["all"]["flagged_leave_one_out"] <= 0.05
    flagged = [domain.check_group(f, c, reference).flagged for f, c in groups.values()]
    assert not any(flagged)  # each group is its own nearest neighbour in the reference


def test_new_groups_of_the_same_kind_pass(tiny_engine, reference):
    rng = np.random.default_rng(99)
    results = [
        domain.check_group(*_measure(tiny_engine, _slide(rng, 30)), reference) for _ in range(10)
    ]
    assert sum(r.flagged for r in results) <= 1
    assert all(r.status in (domain.IN_DOMAIN, domain.OUT_OF_DOMAIN) for r in results)


def test_stain_shifted_groups_are_flagged(tiny_engine, reference):
    rng = np.random.default_rng(5)
    results = [
        domain.check_group(*_measure(tiny_engine, _slide(rng, 30, shift=True)), reference)
        for _ in range(20)
    ]
    assert np.mean([r.flagged for r in results]) >= 0.95
    assert results[0].reason == domain.OUT_OF_DOMAIN_MESSAGE
    assert results[0].score > results[0].limit


def test_a_handful_of_cells_or_no_reference_is_not_judged(tiny_engine, reference):
    features, colours = _measure(tiny_engine, _slide(np.random.default_rng(1), 5, shift=True))
    few = domain.check_group(features, colours, reference)
    assert few.status == domain.UNDETERMINED and "too few" in few.reason
    assert domain.check_group(features, colours, None).status == domain.UNDETERMINED


def test_the_limit_is_the_highest_score_that_keeps_the_flag_rate():
    scores = np.arange(1, 101, dtype=float)
    limit = domain.calibrated_limit(scores, 0.05)
    assert limit == 95.0 and (scores > limit).mean() == 0.05


def test_the_reference_is_json_and_keyed_by_its_basis(reference):
    import json

    assert json.loads(json.dumps(reference)) == reference
    assert reference["key"] == domain.reference_key(reference)
    assert len(reference["descriptor_keys"]) == len(reference["group_whitening"])


@pytest.fixture(scope="module")
def shipped():
    import json
    from pathlib import Path

    from classifier.engine import Engine

    folder = Path(__file__).resolve().parents[2] / "classifier" / "default_model"
    manifest = json.loads((folder / "manifest.json").read_text())
    engine = Engine.load(folder / manifest["file"], manifest["sha256"], batch_size=32)
    return engine, manifest["quality_reference"]["domain"]


def _patients(nih_cells, names: list[str], n: int) -> dict[str, list[np.ndarray]]:
    from classifier.preprocess import decode_image
    from training.data import list_folder

    rng = np.random.default_rng(0)
    examples = [e for e in list_folder(nih_cells) if e.group in names]
    by_patient: dict[str, list] = {}
    for i in rng.permutation(len(examples)):  # the patient's own mix of both classes
        example = examples[i]
        if len(by_patient.get(example.group, [])) < n:
            by_patient.setdefault(example.group, []).append(decode_image(example.read()))
    return by_patient


def test_the_shipped_model_passes_nih_patients_and_refuses_them_stain_shifted(nih_cells, shipped):
    engine, reference = shipped
    patients = _patients(nih_cells, ["C101", "C39", "C182"], 30)
    for cells in patients.values():
        assert not domain.check_group(*_measure(engine, cells), reference).flagged
        shifted = [domain.shift_stain(c, **domain.STAIN_SHIFT) for c in cells]
        assert domain.check_group(*_measure(engine, shifted), reference).flagged


def test_the_shipped_nih_model_refuses_iml_fields(smears, shipped):
    from classifier.cells import CellBox, clip_box, cut_cell
    from training.smears import load_fields

    engine, reference = shipped
    for field in load_fields(smears)[:: len(load_fields(smears)) // 3][:3]:
        rgb = field.read()
        height, width = rgb.shape[:2]
        cells = [
            cut_cell(rgb, CellBox(*clip_box(*box, width, height)))
            for box, kind in zip(field.boxes, field.types, strict=True)
            if kind != "difficult"
        ][:30]
        assert domain.check_group(*_measure(engine, cells), reference).flagged
