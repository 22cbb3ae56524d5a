"""``benchmarks.costs``: the price of each false positive, checked against the evaluators on hand-made scenes."""
from __future__ import annotations

import numpy as np

from benchmarks.costs import box_costs, cost_lines, point_costs
from scene.eval import SceneBoxes, ScenePredictions, evaluate_box_scenes, evaluate_scenes


def _box(x: float, size: float = 1.0) -> list[float]:
    return [x, 0.0, 0.0, x + size, size, size]


def _two_box_scenes() -> list[SceneBoxes]:
    # scene a: two GT boxes, found by predictions 0 and 2; prediction 1 (a false positive) ranks between them
    a = SceneBoxes(np.array([_box(0), _box(5)]), np.array([_box(0.05), _box(10), _box(5.1)]),
                   np.array([0.9, 0.8, 0.3]), "a")
    # scene b: one GT box, found by its only prediction, ranked under both of scene a's false positives
    b = SceneBoxes(np.array([_box(0)]), np.array([_box(20), _box(0.0)]), np.array([0.95, 0.5]), "b")
    return [a, b]


def test_box_costs_name_the_false_positives_in_pooled_rank_order_and_price_them_with_the_evaluator():
    scenes = _two_box_scenes()
    costs = box_costs(scenes, top=5)
    assert costs.ap50 == evaluate_box_scenes(scenes).ap50 < 1.0
    assert costs.ap50_by_iou == 1.0  # every GT box has a prediction over 0.5: ranked by IoU, all come first
    assert [(c.scene, c.index, c.rank) for c in costs.errors] == [("b", 0, 1), ("a", 1, 3)]
    first, second = costs.errors
    assert first.confidence == 0.95 and first.best_iou == 0.0 and first.best_gt == -1
    assert second.best_gt == -1 and second.ap50_without > costs.ap50
    without_b0 = [scenes[0], SceneBoxes(scenes[1].gt_boxes, scenes[1].pred_boxes[1:], scenes[1].scores[1:], "b")]
    assert first.ap50_without == evaluate_box_scenes(without_b0).ap50 > costs.ap50
    # the list stops at ``top``
    assert [c.index for c in box_costs(scenes, top=1).errors] == [0]
    lines = cost_lines("boxes", costs, lambda scene, index, gt: f"object {index}")
    assert lines[0].startswith("boxes: AP50 ") and len(lines) == 3  # every GT box is found: no misses
    assert "false positive, rank   1 b #0 confidence 0.950, best IoU 0.00 (object 0)" in lines[1]
    assert costs.misses == []


def test_a_miss_is_priced_as_its_best_prediction_made_exact_or_as_an_exact_one_beside_a_merge():
    # GT 0 is half covered by prediction 0 (a piece); GT 1 and GT 2 lie side by side and prediction 1
    # covers GT 1 and most of GT 2 (a merge matched to GT 1); GT 3 has no prediction near it
    gt = np.array([_box(0), _box(5), _box(6), _box(20)])
    merged = [5.0, 0.0, 0.0, 6.8, 1.0, 1.0]
    scene = SceneBoxes(gt, np.array([[0.0, 0.0, 0.0, 0.45, 1.0, 1.0], merged]), np.array([0.9, 0.8]), "s")
    costs = box_costs([scene], top=5)
    by_gt = {m.gt: m for m in costs.misses}
    assert set(by_gt) == {0, 2, 3}
    piece = by_gt[0]
    assert (piece.index, piece.rank, piece.confidence) == (0, 1, 0.9) and 0.4 < piece.iou < 0.5
    made_exact = SceneBoxes(gt, np.array([_box(0), merged]), scene.scores, "s")
    assert piece.ap50_if_fixed == evaluate_box_scenes([made_exact]).ap50 > costs.ap50
    split = by_gt[2]
    assert split.index == 1 and split.iou < 0.5
    beside = SceneBoxes(gt, np.vstack([scene.pred_boxes, [_box(6)]]), np.array([0.9, 0.8, 0.8]), "s")
    assert split.ap50_if_fixed == evaluate_box_scenes([beside]).ap50 > costs.ap50
    assert by_gt[3].index == -1 and np.isnan(by_gt[3].ap50_if_fixed)
    assert [m.gt for m in costs.misses][-1] == 3  # the unpriced miss last
    lines = cost_lines("boxes", costs)
    assert lines[-1] == "  missed, s GT 3: no prediction overlaps it"


def test_point_costs_use_the_instance_protocol_and_skip_matched_predictions():
    gt = np.repeat([1, 2, -1], 200)  # two instances of 200 points, then background
    true_one = np.zeros(600, bool)
    true_one[:200] = True
    true_two = np.zeros(600, bool)
    true_two[200:400] = True
    background = np.zeros(600, bool)
    background[400:] = True
    masks = np.stack([true_one, background, true_two])
    scene = ScenePredictions(gt, masks, np.array([0.9, 0.8, 0.7]), "s")
    costs = point_costs([scene], top=3)
    assert costs.ap50 == evaluate_scenes([scene]).as_dict()["ap50"] < 1.0
    assert costs.ap50_by_iou == 1.0
    assert len(costs.errors) == 1
    error = costs.errors[0]
    assert (error.index, error.rank, error.best_iou, error.best_gt) == (1, 2, 0.0, -1)
    assert error.ap50_without == 1.0
    assert costs.misses == []
