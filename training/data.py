"""Datasets in the NIH folder layout, patient-grouped splits and the decoded-image cache.

A dataset folder holds ``Parasitized/*.png`` and ``Uninfected/*.png``. Every image belongs to a
*group* (a patient, or a case for reviewed images); splits never put one group on both sides,
because neighbouring cells of one patient share stain and camera and an image-level split leaks.
No Django and no TensorFlow imports here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.architecture import INPUT_SIZE
from classifier.preprocess import decode_image, resize_rgb

CLASS_FOLDERS: dict[str, int] = {"Parasitized": 1, "Uninfected": 0}
LABEL_NAMES: dict[int, str] = {1: "parasitized", 0: "uninfected"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}

# NIH names start with the patient's C-number followed by a non-digit, e.g. "C100P61ThinF_…" or
# "C47P8thinOriginal…"; everything after the C-number (slide, camera, "Original") is ignored.
_PATIENT_RE = re.compile(r"^(C\d+)(?!\d)")


def patient_of(filename: str) -> str:
    """The patient group of an NIH file name: its leading C-number (``C100P61ThinF_…`` -> ``C100``).

    ``C47P8thin…`` and ``C47P8thinOriginal…`` are one patient (``C47``). A name without a
    recognisable C-number is its own group (``unknown:<name>``), so it can never leak into both
    sides of a split together with another image. Replace this function to change the rule.
    """
    name = Path(filename).name
    match = _PATIENT_RE.match(name)
    return match.group(1) if match else f"unknown:{name}"


@dataclass(frozen=True)
class Example:
    """One labelled image: where its bytes come from, its label (1 = parasitized) and group."""

    source: str | bytes
    label: int
    group: str
    origin: str = "nih"  # which collection it comes from: "nih", "smear" or "reviewed"
    stage: str = ""  # the annotated parasite stage of a smear cell (ring, trophozoite, ...)

    def read(self) -> bytes:
        return self.source if isinstance(self.source, bytes) else Path(self.source).read_bytes()

    def key(self) -> str:
        """A stable identity for cache validation (the path, or the hash of in-memory bytes)."""
        if isinstance(self.source, bytes):
            return "sha256:" + hashlib.sha256(self.source).hexdigest()
        return str(self.source)


def list_folder(root: str | Path, group_of: Callable[[str], str] = patient_of) -> list[Example]:
    """All images of an NIH-layout folder, sorted by path so that the order is reproducible."""
    root = Path(root)
    missing = [name for name in CLASS_FOLDERS if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root} lacks the folder(s) {', '.join(missing)}")
    examples = []
    for folder, label in CLASS_FOLDERS.items():
        for path in sorted((root / folder).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                examples.append(Example(str(path), label, group_of(path.name)))
    if not examples:
        raise FileNotFoundError(f"{root} holds no images")
    return examples


def split_by_group(
    groups: Sequence[str], labels: Sequence[int], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) with every group entirely on one side.

    Stratified by class balance: groups are sorted by their fraction of parasitized images,
    cut into consecutive strata of about 1/val_fraction groups, and within each stratum a
    seeded draw sends groups to validation until that stratum's share is reached. The same
    groups, labels, fraction and seed always give the same split.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError("val_fraction must be between 0 and 1")
    groups_arr, labels_arr = np.asarray(groups), np.asarray(labels)
    names = sorted(set(groups_arr.tolist()))
    if len(names) < 2:
        raise ValueError("a grouped split needs at least two groups")
    fraction = {g: float(labels_arr[groups_arr == g].mean()) for g in names}
    rng = np.random.default_rng(seed)
    ordered = sorted(names, key=lambda g: (fraction[g], rng.random()))
    stratum = max(2, round(1.0 / val_fraction))
    val_groups: set[str] = set()
    carry = 0.0
    for start in range(0, len(ordered), stratum):
        block = ordered[start : start + stratum]
        carry += len(block) * val_fraction
        take = int(carry)  # carrying the remainder makes the total match val_fraction
        carry -= take
        val_groups.update(rng.permutation(block)[:take].tolist())
    if not val_groups:
        val_groups.add(ordered[int(rng.integers(len(ordered)))])
    if len(val_groups) == len(names):
        val_groups.discard(ordered[0])
    is_val = np.isin(groups_arr, list(val_groups))
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _decode_one(example: Example) -> np.ndarray:
    return resize_rgb(decode_image(example.read()), INPUT_SIZE)


def decode_all(examples: Sequence[Example], workers: int | None = None) -> np.ndarray:
    """Decode and resize every image with classifier.preprocess: uint8 (N, 150, 150, 3)."""
    out = np.empty((len(examples), INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    workers = workers or min(4, os.cpu_count() or 1)
    if workers == 1 or len(examples) < 64:
        for i, example in enumerate(examples):
            out[i] = _decode_one(example)
        return out
    with ProcessPoolExecutor(workers) as pool:
        for i, rgb in enumerate(pool.map(_decode_one, examples, chunksize=64)):
            out[i] = rgb
    return out


def cache_fingerprint(examples: Sequence[Example]) -> str:
    """A hash of the example identities, labels and groups: a cache is valid only for these."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(f"{example.key()}\t{example.label}\t{example.group}\n".encode())
    return digest.hexdigest()


def load_or_decode(examples: Sequence[Example], cache_dir: Path, stem: str) -> np.ndarray:
    """Decoded images, read from ``cache_dir/<stem>.npy`` when it matches these examples.

    The cache is written once (uint8, about 67 kB per image) next to a JSON fingerprint, and
    reused by --resume and later runs; a changed file list invalidates it.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    array_path, meta_path = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"
    fingerprint = cache_fingerprint(examples)
    if array_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == fingerprint and meta.get("n") == len(examples):
            return np.load(array_path, mmap_mode=None)
    images = decode_all(examples)
    tmp = array_path.with_suffix(".tmp.npy")
    np.save(tmp, images)
    os.replace(tmp, array_path)
    meta_path.write_text(json.dumps({"fingerprint": fingerprint, "n": len(examples)}))
    return images


def class_counts(labels: Sequence[int]) -> dict[str, int]:
    """Counts per class name, e.g. {"parasitized": 10, "uninfected": 12}."""
    arr = np.asarray(labels)
    return {name: int((arr == value).sum()) for value, name in LABEL_NAMES.items()}
