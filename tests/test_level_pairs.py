"""``benchmarks.level_pairs``: which GT objects stand on which, and what each generator level makes of them."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.level_pairs import LEVELS, frame_verdicts, label_verdict, resting_pairs
from scene.datasets.synthetic.layout import SceneObject
from segment2d.geometric import GeometricMaskGenerator
from test_geometric import make_frame  # the analytic box renderer (tests/ is on the path, as for broken_data)


def _object(id_, lo, hi, structure=False):
    return SceneObject(id=id_, kind="box", is_structure=structure, aabb_min=lo, aabb_max=hi, color=(0, 0, 0))


def test_resting_pairs_are_objects_on_a_top_or_a_board_of_another():
    floor = _object(1, (0, 0, 0), (4, 4, 0), structure=True)
    shelf = _object(3, (0, 0, 0), (1, 0.4, 1.8))
    on_board = _object(4, (0.2, 0.1, 0.9), (0.4, 0.3, 1.1))  # on a board inside the shelf's height
    on_top = _object(5, (0.5, 0.1, 1.8), (0.7, 0.3, 2.0))
    beside = _object(6, (2, 2, 0), (2.5, 2.5, 0.5))  # on the floor: structure is never a lower object
    pairs = {(u.id, l.id) for u, l in resting_pairs([floor, shelf, on_board, on_top, beside])}
    assert pairs == {(4, 3), (5, 3)}


def test_label_verdict_reads_held_and_apart_from_the_upper_objects_region():
    labels = np.array([[1, 1, 2, 2]] * 4)
    upper, lower = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    upper[:, 0], lower[:, 1:] = True, True  # the upper object's region 1 holds a third of the lower one
    assert label_verdict(labels, upper, lower) == (True, False)
    assert label_verdict(np.where(labels == 1, 1, 0) * (np.arange(4) == 0), upper, lower) == (False, True)


def test_a_box_standing_on_a_box_is_apart_at_level_0_and_held_by_whole_objects():
    # No depth jump between the two boxes: level 2 (cut along depth jumps only) holds both, while level 0
    # cuts along the concave crease where the upper box's sides meet the lower box's top.
    lower = _object(3, (-0.4, 1.0, 0.0), (0.4, 1.6, 0.4))
    upper = _object(4, (-0.15, 1.15, 0.4), (0.15, 1.45, 0.7))
    frame = make_frame([(lower.aabb_min, lower.aabb_max), (upper.aabb_min, upper.aabb_max)], noise=0.002,
                       colors=[[180, 60, 50], [180, 60, 50]])
    verdict = frame_verdicts(GeometricMaskGenerator(), frame, resting_pairs([lower, upper]), min_px=200)
    rows = dict(zip(LEVELS, verdict[(4, 3)]))
    assert tuple(rows["L0"]) == (False, True)
    assert tuple(rows["L2"]) == (True, False)
    assert rows["offered"][1]


def test_bad_overrides_exit_with_one_line_naming_the_field():
    from benchmarks.level_pairs import _overrides, main

    assert _overrides(["normal_smooth=3", "concave_strong=0.2"]) == {"normal_smooth": 3, "concave_strong": 0.2}
    for item, message in (("nosuch=1", "unknown GeometricConfig field 'nosuch'"),
                          ("normal_smooth=abc", "normal_smooth must be int, got 'abc'"),
                          ("level_weights=1", "--set takes int and float fields; level_weights is tuple")):
        with pytest.raises(SystemExit, match=message):
            _overrides([item])
    with pytest.raises(SystemExit, match="GeometricConfig.normal_smooth must be >= 1, got -3"):
        main(["room", "--seeds", "2", "--frames", "1", "--set", "normal_smooth=-3"])
