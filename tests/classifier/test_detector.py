"""The cell detector: its targets and decoding (without a network), and the shipped detector on
generated fields with known cells — separate, touching and cut by the image's edge."""

import numpy as np
import pytest

from classifier import detector as det
from classifier.synthetic import make_field, random_centres
from training.smears import match_boxes


def perfect_output(boxes_work: np.ndarray, height: int, width: int) -> np.ndarray:
    """What a perfect network would output for these boxes: the training target's channels."""
    target = det.encode_targets(boxes_work, height, width)
    return target[..., :5]


def test_decoding_the_training_target_gives_back_every_box():
    boxes = np.array([[10, 12, 40, 38], [48, 14, 40, 40], [120, 100, 36, 44]], float)
    output = perfect_output(boxes, 192, 192)
    cells = det.decode(output, threshold=0.5, scale=1.0, width=192, height=192)
    found = np.array([[c.x, c.y, c.w, c.h] for c in cells], float)
    assert len(cells) == 3
    assert len(match_boxes(found, boxes, 0.8)) == 3  # touching cells 1 and 2 stay two cells


def test_decoded_boxes_are_in_the_original_fields_pixels():
    boxes_work = np.array([[40, 40, 40, 40]], float)
    output = perfect_output(boxes_work, 128, 128)
    [cell] = det.decode(output, threshold=0.5, scale=0.5, width=256, height=256)
    assert abs(cell.x - 80) <= 4 and abs(cell.w - 80) <= 4 and not cell.on_border


def test_a_cell_cut_by_the_edge_is_flagged():
    boxes_work = np.array([[0, 30, 22, 40], [60, 30, 40, 40]], float)
    cells = det.decode(perfect_output(boxes_work, 128, 128), 0.5, 1.0, 128, 128)
    assert sorted(c.on_border for c in cells) == [False, True]


def test_a_field_never_yields_more_than_the_cap():
    noise = np.random.default_rng(0).random((400, 400, 5)).astype(np.float32)
    cells = det.decode(noise, threshold=0.0, scale=0.25, width=6400, height=6400)
    assert len(cells) == det.MAX_CELLS


def test_duplicates_of_one_cell_are_suppressed():
    boxes = np.array([[0, 0, 40, 40], [2, 1, 40, 40], [100, 100, 40, 40]], float)
    assert det.suppress_duplicates(boxes, 0.5) == [0, 2]


def test_the_cell_size_is_estimated_from_the_photograph(rng):
    for diameter in (40, 80):
        centres = random_centres(rng, (480, 640), diameter, 30)
        rgb, boxes = make_field(rng, centres, diameter=diameter)
        estimate = det.estimate_cell_diameter(rgb)
        assert 0.8 * diameter < estimate < 1.5 * diameter


def test_a_blank_photograph_has_no_cell_size_and_gets_a_default_scale():
    blank = np.full((960, 1280, 3), 230, np.uint8)
    assert det.estimate_cell_diameter(blank) is None
    assert det.work_scale(blank) == pytest.approx(0.5)


def test_work_images_are_padded_to_multiples_of_16():
    work = det.to_work(np.zeros((479, 641, 3), np.uint8), 0.5)
    assert work.shape[0] % 16 == 0 and work.shape[1] % 16 == 0
