"""Z-buffer splatting, hole filling and outlines on small hand-made point sets."""
from __future__ import annotations

import numpy as np
import pytest

from viz.splat import fill_holes, outline, splat_points

RED, BLUE = (255, 0, 0), (0, 0, 255)


def test_nearest_point_wins_whatever_the_order():
    pixels = np.array([[5.0, 5.0], [5.2, 4.9]])
    for order in ([0, 1], [1, 0]):
        depth = np.array([2.0, 1.0])[order]
        colors = np.array([RED, BLUE], np.uint8)[order]
        out = splat_points(pixels[order], depth, colors, np.array([0, 0]), 10, 10)
        assert tuple(out.rgb[5, 5]) == BLUE and out.depth[5, 5] == 1.0
        assert out.index[5, 5] == order.index(1)


def test_radius_covers_a_square_and_a_near_small_point_beats_a_far_big_one():
    out = splat_points(np.array([[4.0, 4.0], [6.0, 4.0]]), np.array([5.0, 1.0]),
                       np.array([RED, BLUE], np.uint8), np.array([2, 0]), 10, 10)
    red = np.all(out.rgb == RED, axis=-1)
    assert red.sum() == 25 - 1  # 5 x 5 square minus the pixel the near point owns
    assert tuple(out.rgb[4, 6]) == BLUE
    assert np.isinf(out.depth[0, 0]) and out.index[0, 0] == -1


def test_points_outside_the_image_are_clipped():
    out = splat_points(np.array([[-3.0, 2.0], [20.0, 2.0], [0.0, 0.0]]), np.ones(3), np.zeros((3, 3), np.uint8),
                       np.array([3, 0, 1]), 8, 6)
    drawn = out.index >= 0
    assert drawn.sum() == 8  # column 0 rows 0-5 from the first point, plus (0, 1) and (1, 1) from the third
    assert np.all(drawn[:, 0]) and drawn[0, 1] and drawn[1, 1]
    assert out.index[0, 1] == 2 and out.index[5, 0] == 0


def test_fill_holes_closes_pin_holes_but_not_open_background():
    rgb = np.full((7, 7, 3), 255, np.uint8)
    index = np.full((7, 7), -1, np.int64)
    depth = np.full((7, 7), np.inf)
    index[1:6, 1:6], depth[1:6, 1:6], rgb[1:6, 1:6] = 0, 2.0, RED
    index[3, 3], depth[3, 3], rgb[3, 3] = -1, np.inf, (255, 255, 255)
    from viz.splat import Splat

    filled = fill_holes(Splat(rgb, depth, index))
    assert filled.index[3, 3] == 0 and tuple(filled.rgb[3, 3]) == RED and filled.depth[3, 3] == 2.0
    assert filled.index[0, 3] == -1 and filled.index[0, 0] == -1  # outside the square stays empty


def test_outline_darkens_label_boundaries_only():
    labels = np.zeros((6, 6), np.int64)
    labels[:, 3:] = 1
    rgb = np.full((6, 6, 3), 200, np.uint8)
    out = outline(rgb, labels)
    assert np.all(out[:, 2:4] < 200) and np.all(out[:, [0, 1, 4, 5]] == 200)


def test_mismatched_inputs_raise():
    with pytest.raises(ValueError, match="splat_points"):
        splat_points(np.zeros((3, 2)), np.zeros(2), np.zeros((3, 3), np.uint8), np.zeros(3), 4, 4)
