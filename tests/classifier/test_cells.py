"""cut_cell: the one function that cuts a detected cell out of its field, for training and serving."""

import numpy as np

from classifier.cells import CellBox, clip_box, cut_cell, touches_border


def test_a_box_cell_is_cut_inside_its_ellipse_on_black():
    rgb = np.full((100, 100, 3), 200, np.uint8)
    out = cut_cell(rgb, CellBox(20, 30, 40, 40))
    assert out.shape == (40, 40, 3)
    assert (out[20, 20] == 200).all()  # the centre is kept
    assert (out[0, 0] == 0).all() and (out[39, 39] == 0).all()  # the box's corners are not


def test_padding_beyond_the_image_is_black():
    rgb = np.full((50, 50, 3), 200, np.uint8)
    out = cut_cell(rgb, CellBox(0, 0, 20, 20), pad=5)
    assert out.shape == (30, 30, 3)
    assert (out[:5] == 0).all() and (out[15, 15] == 200).all()


def test_an_explicit_mask_is_used_instead_of_the_ellipse():
    rgb = np.full((40, 40, 3), 200, np.uint8)
    mask = np.zeros((20, 20), bool)
    mask[:, :10] = True
    out = cut_cell(rgb, CellBox(10, 10, 20, 20, mask=mask))
    assert (out[10, 2] == 200).all() and (out[10, 18] == 0).all()


def test_boxes_at_the_edge_are_border_cells():
    assert touches_border(0, 40, 30, 30, 200, 100)
    assert touches_border(150, 40, 50, 30, 200, 100)
    assert not touches_border(40, 40, 30, 30, 200, 100)


def test_clip_box_keeps_a_box_inside_the_image():
    assert clip_box(-5.4, 10.2, 30, 200, 100, 100) == (0, 10, 25, 90)
