"""The domain guard: are a group of cells (a field, a case, a patient) like what the model was
validated on?

The per-image quality gate (classifier.quality) judges one cell; a cell from another lab's stain
passes it easily. This module judges a *group* of cells at once, where a shift in stain, camera
or species shows up clearly even when no single cell looks odd:

- every cell gets a short vector: its foreground colour (CIE L*a*b* mean and spread, at 150x150,
  black padding excluded), its penultimate ('dense') features projected on the leading principal
  axes of the reference cells, and the RMS z-distance of its features from the reference mean;
- a group's descriptor is the per-dimension median of its cells' vectors (robust to the few
  parasitized or odd cells of a group);
- its score is the distance to the nearest descriptor of the groups the model was validated on,
  after whitening with the between-group covariance (a slightly shrunk one): a change that breaks
  how colour and features vary together across validated groups — a hue rotation moves a* and b*
  against each other — counts fully even where each dimension alone stays within its range. One
  nearest neighbour: the reference may mix sources (NIH patients and IML fields) without being
  averaged into one broad blob;
- the limit is calibrated on those groups by leave-one-out: the highest score such that at most
  ``flag_rate`` (5%) of the validated groups, each scored against the others, lie above it.

A group with fewer than ``MIN_CELLS`` cells is not judged (a median of a handful of cells is too
noisy to refuse a case on). Pure numpy and OpenCV (imported when a cell is measured, so the web
process can import the constants): no Django, no TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from classifier.architecture import INPUT_SIZE
from classifier.preprocess import resize_rgb

VERSION = 1
MIN_CELLS = 10
FLAG_RATE = 0.05
# Two feature axes and a light shrinkage: chosen on the 19 NIH validation patients stain-shifted
# (STAIN_SHIFT), and confirmed on the 80 training patients under that shift and two milder ones,
# where this pair flags more of each shift than 3, 4 or 6 axes at the same 5% leave-one-out flag
# rate on the unshifted patients (README, "The domain guard").
PCA_DIMS = 2
SHRINKAGE = 0.1  # of the covariance's diagonal added before whitening (few groups, 9 dimensions)
PADDING_LEVEL = 20  # max channel at or below this is the black padding around a cell
COLOUR_KEYS = ("L", "a", "b", "L_spread", "a_spread", "b_spread")

IN_DOMAIN = "in_domain"
OUT_OF_DOMAIN = "out_of_domain"
UNDETERMINED = "undetermined"  # too few cells, or no reference stored with the model
OUT_OF_DOMAIN_MESSAGE = "outside the model's validated domain — manual count required"
# A version whose figures met the acceptance criteria on none of its sources (training.sources):
# its reference refuses every group.
NOTHING_VALIDATED_MESSAGE = (
    "outside the model's validated domain — manual count required (the model met its "
    "acceptance criteria on none of the data it was validated on)"
)


def cell_colour(rgb_uint8: np.ndarray) -> np.ndarray:
    """Foreground colour of one cell: L*a*b* mean and standard deviation (6 floats, 0-255 units)."""
    import cv2

    rgb = resize_rgb(np.ascontiguousarray(rgb_uint8, dtype=np.uint8), INPUT_SIZE)
    # Eroded: the resized rim blends the cell with the black padding.
    mask = cv2.erode((rgb.max(axis=2) > PADDING_LEVEL).astype(np.uint8), np.ones((5, 5), np.uint8))
    if cv2.countNonZero(mask) < 16:
        mask = np.ones_like(mask)
    mean, std = cv2.meanStdDev(cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB), mask=mask)
    return np.concatenate([mean.ravel(), std.ravel()]).astype(np.float32)


def cell_colours(images: Sequence[np.ndarray]) -> np.ndarray:
    """cell_colour of every image: (n, 6) float32."""
    if not len(images):
        return np.zeros((0, len(COLOUR_KEYS)), np.float32)
    return np.stack([cell_colour(rgb) for rgb in images])


STAIN_SHIFT = {"hue_degrees": 60.0, "saturation": 1.4, "gains": (0.85, 1.0, 1.2)}


def shift_stain(
    rgb_uint8: np.ndarray,
    hue_degrees: float = 60.0,
    saturation: float = 1.4,
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """The same cell as another lab might show it: the stain's hue rotated and its saturation
    scaled, then the camera's white balance changed by per-channel gains (STAIN_SHIFT holds the
    shift the measurements in the README use).

    Used to prove the guard on images no model was validated on (tests and measurements); the
    black padding stays black.
    """
    import cv2

    hsv = cv2.cvtColor(np.ascontiguousarray(rgb_uint8, dtype=np.uint8), cv2.COLOR_RGB2HSV)
    hsv = hsv.astype(np.float32)
    hsv[..., 0] = np.mod(hsv[..., 0] + hue_degrees / 2.0, 180.0)  # OpenCV hue is 0-179
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
    rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    return np.clip(rgb * np.asarray(gains, np.float32) + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class DomainResult:
    """The guard's decision on one group of cells."""

    status: str  # IN_DOMAIN | OUT_OF_DOMAIN | UNDETERMINED
    score: float | None
    limit: float | None
    cells: int
    reason: str = ""

    @property
    def flagged(self) -> bool:
        return self.status == OUT_OF_DOMAIN

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "score": None if self.score is None else round(self.score, 4),
            "limit": None if self.limit is None else round(self.limit, 4),
            "cells": self.cells,
            "reason": self.reason,
        }


def cell_vectors(features: np.ndarray, colours: np.ndarray, reference: Mapping) -> np.ndarray:
    """Per-cell vectors (n, d): colour, projected features, feature distance (see module doc)."""
    features = np.asarray(features, np.float64).reshape(len(colours), -1)
    mean = np.asarray(reference["feature_mean"], np.float64)
    std = np.asarray(reference["feature_std"], np.float64)
    z = (features - mean) / std
    projected = z @ np.asarray(reference["pca_axes"], np.float64).T
    distance = np.sqrt((z**2).mean(axis=1, keepdims=True))
    return np.hstack([np.asarray(colours, np.float64), projected, distance])


def group_descriptor(vectors: np.ndarray) -> np.ndarray:
    return np.median(np.asarray(vectors, np.float64), axis=0)


def _scaled(descriptors: np.ndarray, reference: Mapping) -> np.ndarray:
    return np.asarray(descriptors, np.float64) @ np.asarray(
        reference["group_whitening"], np.float64
    )


def whitening(descriptors: np.ndarray, shrinkage: float = SHRINKAGE) -> np.ndarray:
    """W with (x W) of unit covariance over the validated groups (covariance shrunk first)."""
    cov = np.atleast_2d(np.cov(descriptors, rowvar=False))
    diagonal = np.maximum(np.diag(cov), 1e-6 * max(float(np.diag(cov).mean()), 1e-12))
    cov = cov + shrinkage * np.diag(diagonal) + np.diag(diagonal * 1e-9)
    values, vectors = np.linalg.eigh(cov)
    return vectors @ np.diag(np.maximum(values, 1e-12) ** -0.5) @ vectors.T


def score_descriptor(descriptor: np.ndarray, reference: Mapping) -> float:
    """Distance to the nearest validated group's descriptor, whitened (see the module doc)."""
    known = _scaled(np.asarray(reference["group_descriptors"], np.float64), reference)
    here = _scaled(np.asarray(descriptor, np.float64)[None, :], reference)
    return float(np.sqrt(((known - here) ** 2).sum(axis=1)).min())


def check_vectors(vectors: np.ndarray, reference: Mapping | None) -> DomainResult:
    """The guard's decision on a group from its cells' vectors (cell_vectors)."""
    n = len(vectors)
    if not reference or "group_descriptors" not in reference:
        return DomainResult(UNDETERMINED, None, None, n, "no domain reference for this model")
    limit = float(reference["limit"])
    if n < int(reference.get("min_cells", MIN_CELLS)):
        return DomainResult(UNDETERMINED, None, limit, n, f"too few cells ({n}) to judge")
    score = score_descriptor(group_descriptor(vectors), reference)
    if reference.get("validated") is False:
        return DomainResult(OUT_OF_DOMAIN, score, limit, n, NOTHING_VALIDATED_MESSAGE)
    if score > limit:
        return DomainResult(OUT_OF_DOMAIN, score, limit, n, OUT_OF_DOMAIN_MESSAGE)
    return DomainResult(IN_DOMAIN, score, limit, n)


def check_group(
    features: np.ndarray, colours: np.ndarray, reference: Mapping | None
) -> DomainResult:
    """The guard's decision on one group from its cells' features (n, 128) and colours (n, 6)."""
    if not reference or "group_descriptors" not in reference:
        return check_vectors(np.zeros((len(colours), 0)), reference)
    return check_vectors(cell_vectors(features, colours, reference), reference)


def build_reference(
    groups: Mapping[str, tuple[np.ndarray, np.ndarray]],
    sources: Mapping[str, str] | None = None,
    flag_rate: float = FLAG_RATE,
    pca_dims: int = PCA_DIMS,
    min_cells: int = MIN_CELLS,
) -> dict:
    """A JSON-serialisable domain reference from validated groups {name: (features, colours)}.

    sources optionally names each group's source (e.g. "nih", "iml"); the calibration is reported
    per source. Groups with fewer than min_cells cells are left out.
    """
    groups = {k: v for k, v in groups.items() if len(v[1]) >= min_cells}
    if len(groups) < 5:
        raise ValueError(f"a domain reference needs at least 5 groups of {min_cells}+ cells")
    features = np.concatenate([np.asarray(f, np.float64) for f, _ in groups.values()])
    reference: dict = {"version": VERSION, **feature_projection(features, pca_dims)}
    n_axes, names = len(reference["pca_axes"]), sorted(groups)
    descriptors = np.stack(
        [group_descriptor(cell_vectors(*groups[name], reference)) for name in names]
    )
    reference["group_whitening"] = whitening(descriptors).round(8).tolist()
    loo = leave_one_out_scores(descriptors)
    limit = calibrated_limit(loo, flag_rate)
    group_sources = {name: (sources or {}).get(name, "all") for name in names}
    reference.update(
        group_names=names,
        group_sources=[group_sources[n] for n in names],
        group_descriptors=descriptors.round(5).tolist(),
        limit=limit,
        flag_rate=flag_rate,
        min_cells=min_cells,
        descriptor_keys=[*COLOUR_KEYS, *(f"pc{i + 1}" for i in range(n_axes)), "distance"],
        calibration=flagged_per_source(loo, limit, [group_sources[n] for n in names]),
    )
    reference["key"] = reference_key(reference)
    return reference


def feature_projection(features: np.ndarray, pca_dims: int = PCA_DIMS) -> dict:
    """The standardisation and principal axes of the features (n, 128), rounded for JSON."""
    mean = features.mean(axis=0)
    std = np.maximum(features.std(axis=0), 1e-3 * max(float(features.std()), 1e-6))
    z = (features - mean) / std
    _, _, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
    axes = vt[:pca_dims]
    # A principal axis has no sign: fix one so that the same data always gives the same reference.
    axes *= np.where(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)] < 0, -1.0, 1.0)[
        :, None
    ]
    return {
        "feature_mean": mean.round(6).tolist(),
        "feature_std": std.round(6).tolist(),
        "pca_axes": axes.round(6).tolist(),
    }


def flagged_per_source(loo: np.ndarray, limit: float, sources: list[str]) -> dict:
    """Per source: its number of groups and the share of them that leave-one-out flags."""
    calibration = {}
    for source in sorted(set(sources)):
        flagged = [score > limit for score, s in zip(loo, sources, strict=True) if s == source]
        calibration[source] = {
            "groups": len(flagged),
            "flagged_leave_one_out": round(float(np.mean(flagged)), 4),
        }
    return calibration


def leave_one_out_scores(descriptors: np.ndarray) -> np.ndarray:
    """Each group's score against the others, the whitening fitted without it too: a group the
    reference has never seen is judged exactly so, and a whitening fitted with the group would
    pull it closer than a new group of its kind will be."""
    scores = np.empty(len(descriptors))
    for i in range(len(descriptors)):
        others = np.delete(descriptors, i, axis=0)
        w = whitening(others)
        scores[i] = np.sqrt((((others - descriptors[i]) @ w) ** 2).sum(axis=1)).min()
    return scores


def calibrated_limit(scores: np.ndarray, flag_rate: float) -> float:
    """The smallest of the scores such that at most flag_rate of them lie above it."""
    ordered = np.sort(np.asarray(scores, np.float64))
    index = max(0, math.ceil((1.0 - flag_rate) * len(ordered)) - 1)
    return float(ordered[index])


def reference_key(reference: Mapping) -> str:
    """A short hash of what cell vectors depend on: stored vectors carry it, stale ones are ignored."""
    basis = {k: reference[k] for k in ("feature_mean", "feature_std", "pca_axes")}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:12]
