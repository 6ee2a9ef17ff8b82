"""Images that cannot be a microscope field or a cell (a strip thousands of pixels long and a few
wide, a single pixel, an empty or truncated file) are refused by every entry point the worker
calls with a ValueError whose message says why, never an OpenCV error."""

import io

import numpy as np
import pytest
from PIL import Image

from classifier.detector import Detector
from classifier.preprocess import ImageDecodeError, ImageShapeError, check_shape, decode_image
from classifier.quality import assess, image_metrics
from classifier.segment import segment_cells

# (width, height) -> the reason in the message
ODD_SIZES = {
    (20000, 8): "too narrow to be a microscope field or a cell",
    (8, 13000): "too narrow to be a microscope field or a cell",
}


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 150, 170)).save(buffer, format="PNG")
    return buffer.getvalue()


def field_entry_points():
    return {
        "detection": Detector(model=None).detect,  # refused before the network is called
        "classical segmentation": segment_cells,
    }


@pytest.mark.parametrize("size", list(ODD_SIZES))
@pytest.mark.parametrize("entry", ["detection", "classical segmentation"])
def test_a_strip_is_refused_as_a_field(size, entry):
    rgb = decode_image(png(*size))  # what the worker reads from storage
    with pytest.raises(ImageShapeError) as info:
        field_entry_points()[entry](rgb)
    assert str(info.value) == f"image is {size[0]}×{size[1]} pixels: {ODD_SIZES[size]}"


@pytest.mark.parametrize("size", list(ODD_SIZES))
def test_a_strip_is_refused_as_a_cell_by_the_engine_and_the_quality_gate(size, tiny_engine):
    rgb = decode_image(png(*size))
    for check in (
        lambda: tiny_engine.analyse([rgb]),
        lambda: assess(rgb, None, None),
        lambda: image_metrics(rgb),
    ):
        with pytest.raises(ImageShapeError, match=ODD_SIZES[size]):
            check()


def test_a_single_pixel_is_too_small_for_either(tiny_engine):
    rgb = decode_image(png(1, 1))
    for detect in field_entry_points().values():
        with pytest.raises(ImageShapeError, match="1×1 pixels: too small to be a microscope field"):
            detect(rgb)
    with pytest.raises(ImageShapeError, match="1×1 pixels: too small to be a cell"):
        tiny_engine.analyse([rgb])
    with pytest.raises(ImageShapeError, match="too small to be a cell"):
        assess(rgb, None, None)


def test_one_odd_cell_refuses_its_batch_before_any_work(tiny_engine, rng):
    good = rng.integers(0, 255, (120, 110, 3), dtype=np.uint8)
    with pytest.raises(ImageShapeError):
        tiny_engine.analyse([good, np.zeros((8, 20000, 3), np.uint8), good])


@pytest.mark.parametrize(
    "data, reason",
    [(b"", "not a readable image"), (png(640, 480)[:300], "not a readable image")],
    ids=["empty", "truncated"],
)
def test_an_empty_or_truncated_file_is_refused_when_decoded(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(data)


def test_the_refusals_are_value_errors_the_worker_already_reports():
    assert issubclass(ImageShapeError, ValueError) and issubclass(ImageDecodeError, ValueError)


def test_real_fields_and_cells_cut_by_the_edge_pass(tiny_engine, rng):
    assert segment_cells(np.full((480, 640, 3), 230, np.uint8)) == []
    check_shape(np.zeros((600, 2000, 3), np.uint8), "field")  # a wide panorama: still a field
    # A detected cell cut by the field's edge: a few pixels wide, several times as tall.
    edge_cells = [rng.integers(0, 255, shape, dtype=np.uint8) for shape in ((40, 6, 3), (3, 20, 3))]
    results = tiny_engine.analyse(edge_cells)
    assert [r.heatmap.shape for r in results] == [(40, 6), (3, 20)]
    assert image_metrics(edge_cells[0])["foreground_fraction"] >= 0
