"""Throughput of the analysis engine against the naive per-image path and a plain forward pass.

    python bench/engine.py [--n N] [--batch-size B] [--model PATH] [--jit]

All paths run in one process on the same images and include the same preprocessing (resize to
150x150, /255) so the comparison is fair:
  naive    per image: model.predict on one image, then a separate eager GradientTape Grad-CAM,
           then the heatmap upsampled to the image size;
  engine   Engine.analyse: one compiled forward+backward call per batch, calibration, quality
           gate, heatmaps upsampled to each image's size; reported without and with overlay PNG
           encoding (overlay_png for every cell);
  forward  the same kind of compiled call (tf.function, fixed input signature, same jit setting)
           running model(x, training=False) only: the ceiling for any Grad-CAM method.
Images: real NIH cells when $MALARIA_DATA_DIR/nih_cells exists (default ../shared/data), else
synthetic cells. Model: --model, else classifier/default_model/model.keras, else an untrained
build_model() (throughput does not depend on the weights). The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from classifier.architecture import INPUT_SIZE, build_model  # noqa: E402
from classifier.engine import Engine, gradcam_submodel, upsample_heatmap  # noqa: E402
from classifier.gradcam_reference import naive_analyse  # noqa: E402
from classifier.overlay import overlay_png  # noqa: E402
from classifier.preprocess import decode_image, resize_rgb, to_input  # noqa: E402
from classifier.synthetic import make_cell  # noqa: E402

DEFAULT_MODEL = ROOT / "classifier" / "default_model" / "model.keras"


def load_images(n: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
    data_dir = Path(os.environ.get("MALARIA_DATA_DIR", ROOT.parent / "shared" / "data"))
    cells = data_dir / "nih_cells"
    if cells.is_dir():
        files = sorted(cells.glob("*/*.png"))
        chosen = random.Random(seed).sample(files, min(n, len(files)))
        return [decode_image(f.read_bytes()) for f in chosen], f"NIH cells from {cells}"
    rng = np.random.default_rng(seed)
    images = [make_cell(rng, i % 2 == 0, int(rng.integers(100, 160))) for i in range(n)]
    return images, "synthetic cells"


def load_model(path: str | None):
    import keras

    if path:
        return keras.saving.load_model(path, compile=False), path
    if DEFAULT_MODEL.exists():
        return keras.saving.load_model(DEFAULT_MODEL, compile=False), str(DEFAULT_MODEL)
    return build_model(seed=0), "untrained build_model()"


def rate(fn, n_items: int, min_seconds: float = 2.0) -> float:
    """Items per second of fn() (which processes n_items), repeated for at least min_seconds."""
    runs, start = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return runs * n_items / elapsed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256, help="images for the batched paths")
    parser.add_argument("--n-naive", type=int, default=32, help="images for the naive path")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default=None)
    parser.add_argument("--jit", action="store_true", help="XLA-compile the tf.functions")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum time per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    return parser.parse_args()


def measured_paths(model, images: list, args: argparse.Namespace) -> list[tuple]:
    """(name, fn, images per call) of the four paths: naive, forward only, engine, engine + PNGs."""
    import tensorflow as tf

    # (a) naive: one predict + one eager tape per image.
    submodel = gradcam_submodel(model)
    naive_images = images[: args.n_naive]

    def naive() -> None:
        for rgb in naive_images:
            _p, cam = naive_analyse(model, to_input(resize_rgb(rgb)), submodel)
            upsample_heatmap(cam, *rgb.shape[:2])

    # (b) the engine, with and without the overlay PNGs.
    engine = Engine(model, batch_size=args.batch_size, jit_compile=args.jit)

    def engine_only() -> None:
        engine.analyse(images)

    def engine_overlay() -> None:
        for rgb, result in zip(images, engine.analyse(images), strict=True):
            overlay_png(rgb, result.heatmap)

    # (c) forward only: same compiled-call style, same preprocessing, same batching.
    @tf.function(
        input_signature=[tf.TensorSpec((None, INPUT_SIZE, INPUT_SIZE, 3), tf.float32)],
        jit_compile=args.jit,
    )
    def forward_step(x):
        return model(x, training=False)

    def forward() -> None:
        for i in range(0, len(images), args.batch_size):
            chunk = images[i : i + args.batch_size]
            x = np.stack([to_input(resize_rgb(rgb)) for rgb in chunk])
            forward_step(x).numpy()

    return [
        ("naive", naive, len(naive_images)),
        ("forward", forward, len(images)),
        ("engine", engine_only, len(images)),
        ("engine_overlay", engine_overlay, len(images)),
    ]


def measure(paths: list[tuple], rounds: int, seconds: float) -> dict[str, float]:
    """Median cells/s of each path over interleaved rounds (printed with every round's rate)."""
    for _name, fn, _n_items in paths:
        fn()  # warm-up: tracing, compilation, first-call allocations
    # Interleaved rounds, median per path: other processes on a shared machine hit every path alike.
    samples: dict[str, list[float]] = {name: [] for name, _fn, _n in paths}
    for _round in range(rounds):
        for name, fn, n_items in paths:
            samples[name].append(rate(fn, n_items, seconds))
    results = {name: float(np.median(values)) for name, values in samples.items()}
    for name, value in results.items():
        spread = ", ".join(f"{v:.1f}" for v in samples[name])
        print(f"{name:>15}: {value:8.1f} cells/s (median of rounds: {spread})")
    return results


def main() -> None:
    args = parse_args()
    images, source = load_images(args.n)
    model, model_name = load_model(args.model)
    print(f"images: {len(images)} {source}; model: {model_name}; batch {args.batch_size}")
    print(f"jit_compile={args.jit}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    results = measure(measured_paths(model, images, args), args.rounds, args.seconds)
    summary = {
        "naive_cells_per_s": round(results["naive"], 1),
        "engine_cells_per_s": round(results["engine"], 1),
        "engine_with_overlay_png_cells_per_s": round(results["engine_overlay"], 1),
        "forward_cells_per_s": round(results["forward"], 1),
        "batch_size": args.batch_size,
        "jit_compile": args.jit,
        "engine_over_naive": round(results["engine"] / results["naive"], 2),
        "engine_over_forward": round(results["engine"] / results["forward"], 3),
        "engine_overlay_over_naive": round(results["engine_overlay"] / results["naive"], 2),
        "engine_excludes": "overlay PNG encoding (see engine_with_overlay_png_cells_per_s)",
        "n": len(images),
        "n_naive": len(images[: args.n_naive]),
        "rounds": args.rounds,
        "images": source,
        "model": model_name,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(
        f"engine/naive {summary['engine_over_naive']}x, engine/forward "
        f"{summary['engine_over_forward']:.0%}"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
