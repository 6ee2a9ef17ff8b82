"""decode_image() reads every accepted format; preprocess() gives the network's input."""

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from classifier.preprocess import ImageDecodeError, decode_image, preprocess, resize_rgb, to_input
from classifier.synthetic import make_cell

REPO = Path(__file__).resolve().parents[2]


def encode(img: PILImage.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.fixture
def cell(rng) -> np.ndarray:
    return make_cell(rng, parasitized=True, size=64)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP"])
def test_it_decodes_common_formats_to_rgb_uint8(cell, fmt):
    decoded = decode_image(encode(PILImage.fromarray(cell), fmt))
    assert decoded.shape == cell.shape and decoded.dtype == np.uint8
    tolerance = 20 if fmt == "JPEG" else 0
    assert np.abs(decoded.astype(int) - cell).mean() <= tolerance


def test_it_maps_16_bit_grayscale_onto_8_bits():
    values = np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=np.uint16)
    decoded = decode_image(encode(PILImage.fromarray(values), "PNG"))
    assert decoded.shape == (2, 2, 3)
    assert decoded[..., 0].tolist() == [[0, 100], [200, 255]]


def test_it_expands_grayscale_to_three_channels(cell):
    gray = PILImage.fromarray(cell).convert("L")
    decoded = decode_image(encode(gray, "PNG"))
    assert decoded.shape == cell.shape
    assert np.array_equal(decoded[..., 0], decoded[..., 2])


def test_it_composites_transparency_onto_white(cell):
    rgba = np.dstack([cell, np.full(cell.shape[:2], 255, np.uint8)])
    rgba[:8, :8, 3] = 0
    decoded = decode_image(encode(PILImage.fromarray(rgba, "RGBA"), "PNG"))
    assert decoded.shape == cell.shape
    assert (decoded[:8, :8] == 255).all()
    assert np.array_equal(decoded[20:, 20:], cell[20:, 20:])


def test_it_converts_cmyk_and_palette_images(cell):
    cmyk = decode_image(encode(PILImage.fromarray(cell).convert("CMYK"), "JPEG", quality=95))
    palette = decode_image(encode(PILImage.fromarray(cell).convert("P"), "PNG"))
    for decoded in (cmyk, palette):
        assert decoded.shape == cell.shape and decoded.dtype == np.uint8
        assert np.abs(decoded.astype(int) - cell).mean() < 25


def test_it_applies_exif_orientation():
    img = PILImage.fromarray(np.zeros((20, 40, 3), np.uint8))  # 20 high, 40 wide
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    decoded = decode_image(encode(img, "JPEG", exif=exif.tobytes()))
    assert decoded.shape == (40, 20, 3)


@pytest.mark.parametrize(
    "data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40], ids=str
)
def test_it_rejects_bytes_that_are_not_an_image(data):
    with pytest.raises(ImageDecodeError):
        decode_image(data)


def test_it_rejects_a_truncated_file(cell):
    data = encode(PILImage.fromarray(cell), "PNG")
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2])


def test_preprocess_gives_150px_float_input_in_unit_range(cell):
    x = preprocess(encode(PILImage.fromarray(cell), "PNG"))
    assert x.shape == (150, 150, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert np.array_equal(x, to_input(resize_rgb(cell)))


def test_the_web_side_modules_do_not_import_tensorflow():
    modules = "classifier.preprocess, classifier.synthetic, classifier.quality, "
    modules += "classifier.overlay, classifier.engine, classifier.segment"
    code = f"import sys, {modules}; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
