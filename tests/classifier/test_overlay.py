"""Overlay and heatmap PNGs decode to the original image's size."""

import cv2
import numpy as np

from classifier.overlay import heatmap_png, overlay_image, overlay_png
from classifier.synthetic import make_cell


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_the_overlay_png_has_the_original_size_and_blends_jet(rng):
    rgb = make_cell(rng, True, size=97)[:, :80]
    heat = np.zeros((34, 34), np.float32)
    heat[10:20, 10:20] = 1.0
    decoded = decode(overlay_png(rgb, heat))
    assert decoded.shape == (97, 80, 3)
    blended = overlay_image(rgb, np.zeros((97, 80), np.float32), alpha=0.4)
    jet_zero_rgb = np.array([0, 0, 128])  # JET at 0 is dark blue
    np.testing.assert_allclose(blended, 0.6 * rgb + 0.4 * jet_zero_rgb, atol=1.01)


def test_the_heatmap_png_is_8_bit_grayscale_of_the_map():
    heat = np.linspace(0, 1, 50 * 60, dtype=np.float32).reshape(50, 60)
    decoded = decode(heatmap_png(heat))
    assert decoded.shape == (50, 60) and decoded.dtype == np.uint8
    assert decoded[0, 0] == 0 and decoded[-1, -1] == 255
