"""Synthetic Giemsa-like cell images for tests, fixtures and benchmarks (no real data needed).

A cell is a pale pink disc on a light background; a parasitized cell carries one or more dark
purple chromatin dots with a faint blue ring. Crude, but learnable in seconds by the real network,
which is what tests need. Also writes folders in the NIH layout (Parasitized/, Uninfected/) with
NIH-style file names so that patient-grouped splits can be exercised.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image as PILImage


def make_cell(rng: np.random.Generator, parasitized: bool, size: int = 120) -> np.ndarray:
    """One RGB uint8 cell crop of shape (size, size, 3)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = size / 2 + rng.uniform(-4, 4, 2)
    radius = size * rng.uniform(0.36, 0.44)
    dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    background = np.array([235, 228, 232], np.float32) + rng.normal(0, 3, 3)
    cell_colour = np.array([222, 160, 170], np.float32) + rng.normal(0, 8, 3)
    img = np.empty((size, size, 3), np.float32)
    img[:] = background
    inside = dist < radius
    # Central pallor: the cell's centre is paler than its rim.
    pallor = np.clip(1.0 - dist / radius, 0, 1)[..., None] * 25.0
    img[inside] = (cell_colour + pallor)[inside]
    if parasitized:
        for _ in range(rng.integers(1, 4)):
            angle, r = rng.uniform(0, 2 * np.pi), rng.uniform(0, radius * 0.6)
            py, px = cy + r * np.sin(angle), cx + r * np.cos(angle)
            d = np.sqrt((yy - py) ** 2 + (xx - px) ** 2)
            ring_r = rng.uniform(4, 8) * size / 120
            ring = (np.abs(d - ring_r) < 1.6 * size / 120) & inside
            img[ring] = np.array([120, 110, 190], np.float32)
            dot = (d < 2.6 * size / 120) & inside
            img[dot] = np.array([90, 30, 120], np.float32)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def write_nih_folder(
    root: Path, n_per_class: int, n_patients: int = 6, size: int = 120, seed: int = 0
) -> Path:
    """Write an NIH-layout folder: root/Parasitized/*.png and root/Uninfected/*.png.

    File names follow NIH's pattern (C<patient>P<n>ThinF_IMG_<date>_<time>_cell_<k>.png) so the
    patient of each file can be recovered from its name.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    for label, parasitized in (("Parasitized", True), ("Uninfected", False)):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(n_per_class):
            patient = 100 + k % n_patients
            name = f"C{patient}P{patient - 40}ThinF_IMG_20150918_1441{k % 60:02d}_cell_{k}.png"
            PILImage.fromarray(make_cell(rng, parasitized, size)).save(folder / name)
    return root


def make_field(
    rng: np.random.Generator,
    centres: list[tuple[int, int]],
    shape: tuple[int, int] = (480, 640),
    diameter: int = 60,
    parasitized: set[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A field photograph with synthetic cells at the given (y, x) centres; returns the RGB image
    and each cell's box (n, 4: x, y, w, h) clipped to the image, as an annotator would draw it.

    Centres closer than `diameter` give touching or overlapping cells; centres near the edge give
    cells cut by it. Cells listed in `parasitized` (indices) carry chromatin dots.
    """
    height, width = shape
    field = np.clip(rng.normal([232, 228, 230], 3, (height, width, 3)), 0, 255).astype(np.uint8)
    parasitized = parasitized or set()
    size = int(diameter / 0.8)
    half = size // 2
    radius = diameter / 2
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius**2
    boxes = []
    for k, (cy, cx) in enumerate(centres):
        cell = make_cell(rng, parasitized=k in parasitized, size=size)
        y0, x0 = cy - half, cx - half
        ys, xs = slice(max(0, y0), min(height, y0 + size)), slice(max(0, x0), min(width, x0 + size))
        inner = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        patch = field[ys, xs]
        patch[disc[inner]] = cell[inner][disc[inner]]
        bx0, by0 = max(0.0, cx - radius), max(0.0, cy - radius)
        bx1, by1 = min(float(width), cx + radius), min(float(height), cy + radius)
        boxes.append([bx0, by0, bx1 - bx0, by1 - by0])
    return field, np.array(boxes, float).reshape(-1, 4)


def random_centres(
    rng: np.random.Generator, shape: tuple[int, int], diameter: int, n: int
) -> list[tuple[int, int]]:
    """About n cell centres: mostly apart, some touching pairs, some cut by the image's edge."""
    height, width = shape
    centres: list[tuple[int, int]] = []
    for _ in range(n * 30):
        if len(centres) >= n:
            break
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        gaps = [np.hypot(cy - y, cx - x) for y, x in centres]
        # Touching (0.85-1 diameter apart) is allowed; deeper overlaps are not.
        if not gaps or min(gaps) >= 0.85 * diameter:
            centres.append((cy, cx))
    return centres


def write_smear_folder(
    root: Path,
    n_fields: int,
    seed: int = 0,
    shape: tuple[int, int] = (480, 640),
    diameter: int = 60,
) -> Path:
    """Write an IML-layout folder (annotations.json + images/*.JPG) of synthetic fields."""
    import json

    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for k in range(n_fields):
        centres = random_centres(rng, shape, diameter, int(rng.integers(25, 40)))
        sick = {int(i) for i in rng.choice(len(centres), size=2, replace=False)}
        rgb, boxes = make_field(rng, centres, shape, diameter, parasitized=sick)
        name = f"SYN{k:04d}.JPG"
        PILImage.fromarray(rgb).save(root / "images" / name, quality=92)
        objects = [
            {
                "type": "ring" if i in sick else "red blood cell",
                "bbox": {key: str(round(v)) for key, v in zip("xywh", box, strict=True)},
            }
            for i, box in enumerate(boxes)
        ]
        entries.append({"image_name": name, "objects": objects})
    (root / "annotations.json").write_text(json.dumps(entries))
    return root
