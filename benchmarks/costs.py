"""What each false positive costs a pooled AP50, and what ranking alone could give.

For a set of scenes scored together (the ScanNet scenes' boxes, or one synthetic preset's seeds), the
predictions are ranked by confidence over all scenes, as the AP computation ranks them. For each of the
highest-ranked predictions that overlaps no GT object by the threshold (its best IoU with any GT object is
below ``overlap``), the AP50 of the same scenes with that one prediction left out: the price of that
error, so that the next change can go where it pays most. Beside it, the AP50 of the same predictions
ranked by their best GT IoU instead of their confidence: what better ranking alone could reach.

The AP figures come from the evaluators themselves (``scene.eval``); the best IoU only chooses and names
the predictions (box IoU for boxes, point IoU over the GT instances, ids > 0, for points). A duplicate of
a matched object (its IoU over the threshold, its GT taken by a higher-ranked prediction) is a false
positive that is not listed.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from scene.eval import SceneBoxes, ScenePredictions, evaluate_box_scenes, evaluate_scenes
from scene.eval.box_ap import box_iou_3d


@dataclass(frozen=True)
class Cost:
    """One false positive: its ``scene`` (name), pooled ``rank`` (1 = highest confidence), ``index`` in its
    scene's predictions, ``confidence``, ``best_iou`` with any GT object and that object's ``best_gt``
    (index of the GT box, or GT instance id; -1 when it overlaps none), and ``ap50_without``: the pooled
    AP50 with this prediction left out."""

    scene: str
    rank: int
    index: int
    confidence: float
    best_iou: float
    best_gt: int
    ap50_without: float


@dataclass(frozen=True)
class Costs:
    """``ap50`` as ranked, ``ap50_by_iou`` ranked by best GT IoU, and the listed false positives."""

    ap50: float
    ap50_by_iou: float
    errors: list[Cost]


def box_costs(scenes: Sequence[SceneBoxes], top: int, overlap: float = 0.5) -> Costs:
    """``Costs`` of the ``top`` highest-ranked false positives of box scenes (``evaluate_box_scenes``)."""
    best = [_best(box_iou_3d(s.pred_boxes, s.gt_boxes)) for s in scenes]
    return _costs(list(scenes), best, lambda chosen: float(evaluate_box_scenes(chosen).ap50),
                  lambda s, keep: replace(s, pred_boxes=s.pred_boxes[keep], scores=s.scores[keep]), top, overlap)


def point_costs(scenes: Sequence[ScenePredictions], top: int, overlap: float = 0.5) -> Costs:
    """``Costs`` of the ``top`` highest-ranked false positives of point scenes (``evaluate_scenes``)."""
    best = [_best_point(s.masks, s.gt_ids) for s in scenes]
    return _costs(list(scenes), best, lambda chosen: float(evaluate_scenes(chosen).as_dict()["ap50"]),
                  lambda s, keep: replace(s, masks=s.masks[keep], scores=s.scores[keep]), top, overlap)


def _costs(scenes: list, best: list[tuple[np.ndarray, np.ndarray]], ap50: Callable, without: Callable,
           top: int, overlap: float) -> Costs:
    base = ap50(scenes)
    by_iou = ap50([replace(s, scores=iou.astype(np.float64)) for s, (iou, _) in zip(scenes, best)])
    rows = [(float(score), k, p) for k, s in enumerate(scenes) for p, score in enumerate(np.asarray(s.scores))]
    rows.sort(key=lambda row: (-row[0], row[1], row[2]))
    errors = []
    for rank, (score, k, p) in enumerate(rows, 1):
        if len(errors) >= top:
            break
        iou, gt = best[k]
        if iou[p] >= overlap:
            continue
        keep = np.ones(len(scenes[k].scores), bool)
        keep[p] = False
        left = scenes[:k] + [without(scenes[k], keep)] + scenes[k + 1:]
        errors.append(Cost(scenes[k].name, rank, p, score, float(iou[p]), int(gt[p]), ap50(left)))
    return Costs(base, by_iou, errors)


def _best(iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per prediction (rows of a P x G IoU table) the best IoU and its column (-1 where it overlaps none)."""
    if iou.shape[1] == 0:
        return np.zeros(iou.shape[0]), np.full(iou.shape[0], -1, np.int64)
    best = iou.max(axis=1)
    return best, np.where(best > 0, iou.argmax(axis=1), -1).astype(np.int64)


def _best_point(masks: np.ndarray, gt_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per prediction mask (P x N bool) the best point IoU with a GT instance (ids > 0) and that id."""
    masks = np.asarray(masks, bool)
    ids, column = np.unique(np.asarray(gt_ids), return_inverse=True)
    instances = ids > 0
    if masks.shape[0] == 0 or not instances.any():
        return np.zeros(masks.shape[0]), np.full(masks.shape[0], -1, np.int64)
    member = np.zeros((masks.shape[1], ids.size), np.float64)
    member[np.arange(masks.shape[1]), column.reshape(-1)] = 1.0
    inter = masks.astype(np.float64) @ member[:, instances]
    union = masks.sum(1, keepdims=True) + member[:, instances].sum(0)[None, :] - inter
    iou, at = _best(inter / np.maximum(union, 1.0))
    return iou, np.where(at >= 0, ids[instances][np.maximum(at, 0)], -1)


def cost_lines(title: str, costs: Costs, names: Callable[[Cost], str] = lambda cost: "") -> list[str]:
    """Report lines: the AP50 as ranked and by IoU, then one line per listed false positive."""
    lines = [f"{title}: AP50 {costs.ap50:.3f}, ranked by best GT IoU {costs.ap50_by_iou:.3f}"]
    for cost in costs.errors:
        label = names(cost)
        lines.append(f"  rank {cost.rank:>3} {cost.scene} #{cost.index} confidence {cost.confidence:.3f}, best IoU "
                     f"{cost.best_iou:.2f}{' (' + label + ')' if label else ''}: AP50 without it "
                     f"{cost.ap50_without:.3f} ({cost.ap50_without - costs.ap50:+.3f})")
    return lines


__all__ = ["Cost", "Costs", "box_costs", "cost_lines", "point_costs"]
