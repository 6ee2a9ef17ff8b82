"""Patient rule, grouped split and the decoded-image cache."""

import numpy as np
import pytest

from training.data import (
    Example,
    class_counts,
    list_folder,
    load_or_decode,
    patient_of,
    split_by_group,
)


def test_patient_is_the_leading_c_number():
    assert patient_of("C100P61ThinF_IMG_20150918_144104_cell_162.png") == "C100"
    assert patient_of("/some/folder/C7P1ThinF_IMG_x_cell_1.png") == "C7"


def test_original_and_plain_slides_of_c47_are_one_patient():
    plain = patient_of("C47P8thin_IMG_20150717_103620_cell_5.png")
    original = patient_of("C47P8thinOriginalOlympusCX41_IMG_20150717_103620_cell_5.png")
    assert plain == original == "C47"


def test_c1_and_c10_are_different_patients():
    assert patient_of("C1P1ThinF_a.png") != patient_of("C10P1ThinF_a.png")


def test_unrecognised_names_are_each_their_own_group():
    first, second = patient_of("cell_001.png"), patient_of("cell_002.png")
    assert first != second
    assert first.startswith("unknown:")
    assert patient_of("CXP1.png").startswith("unknown:")


def _toy_groups(n_groups: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups, labels = [], []
    for g in range(n_groups):
        n = int(rng.integers(5, 40))
        share = rng.uniform(0, 1) if g % 4 else 0.0  # a quarter of patients only uninfected
        groups += [f"C{g}"] * n
        labels += (rng.uniform(size=n) < share).astype(int).tolist()
    return np.array(groups), np.array(labels)


def test_the_split_never_puts_a_patient_on_both_sides():
    groups, labels = _toy_groups()
    train, val = split_by_group(groups, labels, 0.2, seed=3)
    assert not set(groups[train]) & set(groups[val])
    assert len(train) + len(val) == len(groups)
    assert len(set(groups[val])) == 6  # 20% of 30 patients


def test_the_split_is_deterministic_by_seed():
    groups, labels = _toy_groups()
    first = split_by_group(groups, labels, 0.2, seed=3)
    again = split_by_group(groups, labels, 0.2, seed=3)
    other = split_by_group(groups, labels, 0.2, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])


def test_the_split_is_stratified_by_class_balance():
    groups, labels = _toy_groups(100, seed=5)
    _, val = split_by_group(groups, labels, 0.2, seed=0)
    shares = {g: labels[groups == g].mean() for g in set(groups)}
    val_shares = [shares[g] for g in set(groups[val])]
    # One validation patient from each fifth of the range of parasitized shares.
    assert min(val_shares) < 0.2 and max(val_shares) > 0.6


def test_list_folder_reads_the_nih_layout(nih_folder):
    examples = list_folder(nih_folder)
    assert class_counts([e.label for e in examples]) == {"parasitized": 40, "uninfected": 40}
    assert {e.group for e in examples} == {f"C{100 + k}" for k in range(8)}


def test_list_folder_names_a_missing_class_folder(tmp_path):
    (tmp_path / "Parasitized").mkdir()
    with pytest.raises(FileNotFoundError, match="Uninfected"):
        list_folder(tmp_path)


def test_the_cache_is_reused_and_invalidated_by_a_changed_file_list(nih_folder, tmp_path):
    examples = list_folder(nih_folder)[:6]
    images = load_or_decode(examples, tmp_path, "images")
    assert images.shape == (6, 150, 150, 3) and images.dtype == np.uint8
    mtime = (tmp_path / "images.npy").stat().st_mtime_ns
    assert np.array_equal(load_or_decode(examples, tmp_path, "images"), images)
    assert (tmp_path / "images.npy").stat().st_mtime_ns == mtime
    fewer = load_or_decode(examples[:3], tmp_path, "images")
    assert fewer.shape[0] == 3


def test_in_memory_examples_decode_like_files(nih_folder, tmp_path):
    example = list_folder(nih_folder)[0]
    in_memory = Example(example.read(), example.label, "case-1")
    both = load_or_decode([example, in_memory], tmp_path, "mixed")
    assert np.array_equal(both[0], both[1])
