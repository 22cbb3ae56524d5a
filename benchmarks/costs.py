"""What each error costs a pooled AP50, and what ranking alone could give.

For a set of scenes scored together (the ScanNet scenes' boxes, or one synthetic preset's seeds), the
predictions are ranked by confidence over all scenes, as the AP computation ranks them. Two price lists,
so that the next change can go where it pays most:

- false positives: for each of the highest-ranked predictions that overlaps no GT object by the threshold
  (its best IoU with any GT object is below ``overlap``), the AP50 with that one prediction left out;
- misses: for each GT object no prediction overlaps by the threshold, the AP50 had the prediction that
  overlaps it most covered it exactly (its box made the GT box, or its points the GT instance's), at that
  prediction's own confidence: what mending that object's segmentation would give. Where that prediction
  is another GT object's match (the missed one merged into it), the exact one is added beside it instead,
  as a split would give. Each price is of one mend alone.

Beside them, the AP50 of the same predictions ranked by their best GT IoU instead of their confidence: what
better ranking alone could reach. The AP figures come from the evaluators themselves (``scene.eval``); the
IoU tables only choose and name (box IoU for boxes; point IoU over the GT instances the evaluator counts,
ids > 0 of at least ``min_region_size`` points, for points). A duplicate of a matched object (over the
threshold, its GT taken by a higher-ranked prediction) is a false positive that is not listed.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from scene.eval import SceneBoxes, ScenePredictions, evaluate_box_scenes, evaluate_scenes, instance_ious
from scene.eval.instance_ap import InstanceAPConfig
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
class Miss:
    """A GT object (``gt``: index of the GT box, or instance id, in ``scene``) that no prediction overlaps
    by the threshold; ``index``, ``rank``, ``confidence`` and ``iou`` of the prediction overlapping it most
    (index and rank -1 when none does), and ``ap50_if_fixed``: the pooled AP50 had that prediction covered
    it exactly, or had an exact one been added at its confidence where it is another object's match (NaN
    when no prediction overlaps it)."""

    scene: str
    gt: int
    index: int
    rank: int
    confidence: float
    iou: float
    ap50_if_fixed: float


@dataclass(frozen=True)
class Costs:
    """``ap50`` as ranked, ``ap50_by_iou`` ranked by best GT IoU, the listed false positives (in rank order)
    and the misses (the largest gain first)."""

    ap50: float
    ap50_by_iou: float
    errors: list[Cost]
    misses: list[Miss]


def box_costs(scenes: Sequence[SceneBoxes], top: int, overlap: float = 0.5) -> Costs:
    """``Costs`` of box scenes (``evaluate_box_scenes``): at most ``top`` false positives and misses."""
    tables = [box_iou_3d(s.pred_boxes, s.gt_boxes) for s in scenes]
    columns = [np.arange(len(s.gt_boxes)) for s in scenes]

    def fixed(scene: SceneBoxes, index: int, gt: int, beside: bool) -> SceneBoxes:
        box = scene.gt_boxes[gt][None]
        if beside:
            return replace(scene, pred_boxes=np.vstack([scene.pred_boxes, box]),
                           scores=np.append(scene.scores, scene.scores[index]))
        boxes = scene.pred_boxes.copy()
        boxes[index] = box
        return replace(scene, pred_boxes=boxes)

    return _costs(list(scenes), tables, columns, lambda chosen: float(evaluate_box_scenes(chosen).ap50),
                  lambda s, keep: replace(s, pred_boxes=s.pred_boxes[keep], scores=s.scores[keep]), fixed,
                  top, overlap)


def point_costs(scenes: Sequence[ScenePredictions], top: int, overlap: float = 0.5,
                min_points: int = InstanceAPConfig().min_region_size) -> Costs:
    """``Costs`` of point scenes (``evaluate_scenes``): at most ``top`` false positives and misses."""
    tables, columns = zip(*[_point_iou(s.masks, s.gt_ids, min_points) for s in scenes]) if scenes else ((), ())

    def fixed(scene: ScenePredictions, index: int, gt: int, beside: bool) -> ScenePredictions:
        mask = scene.gt_ids == gt
        if beside:
            return replace(scene, masks=np.vstack([scene.masks, mask[None]]),
                           scores=np.append(scene.scores, scene.scores[index]))
        masks = scene.masks.copy()
        masks[index] = mask
        return replace(scene, masks=masks)

    return _costs(list(scenes), list(tables), list(columns),
                  lambda chosen: float(evaluate_scenes(chosen).as_dict()["ap50"]),
                  lambda s, keep: replace(s, masks=s.masks[keep], scores=s.scores[keep]), fixed, top, overlap)


def _costs(scenes: list, tables: list[np.ndarray], columns: list[np.ndarray], ap50: Callable, without: Callable,
           fixed: Callable, top: int, overlap: float) -> Costs:
    """The price lists from each scene's P x G IoU table (``columns``: the GT box index or instance id of
    each column) and the scene edits ``without`` (keep a subset of predictions) and ``fixed`` (a prediction
    made one GT object, or that object added beside it)."""
    base = ap50(scenes)
    best = [_best(table, column) for table, column in zip(tables, columns)]
    by_iou = ap50([replace(s, scores=iou.astype(np.float64)) for s, (iou, _) in zip(scenes, best)])
    rows = [(float(score), k, p) for k, s in enumerate(scenes) for p, score in enumerate(np.asarray(s.scores))]
    rows.sort(key=lambda row: (-row[0], row[1], row[2]))
    rank_of = {(k, p): rank for rank, (_, k, p) in enumerate(rows, 1)}

    def swapped(k: int, scene) -> list:
        return scenes[:k] + [scene] + scenes[k + 1:]

    errors = []
    for score, k, p in rows:
        iou, gt = best[k]
        if len(errors) < top and iou[p] < overlap:
            keep = np.ones(len(scenes[k].scores), bool)
            keep[p] = False
            errors.append(Cost(scenes[k].name, rank_of[(k, p)], p, score, float(iou[p]), int(gt[p]),
                               ap50(swapped(k, without(scenes[k], keep)))))
    misses = []
    for k, (table, column) in enumerate(zip(tables, columns)):
        for j in range(table.shape[1]):
            iou = float(table[:, j].max(initial=0.0))
            if iou >= overlap:
                continue
            p = int(table[:, j].argmax()) if iou > 0 else -1
            beside = p >= 0 and best[k][0][p] >= overlap  # p is another object's match
            gain = ap50(swapped(k, fixed(scenes[k], p, int(column[j]), beside))) if p >= 0 else float("nan")
            confidence = float(scenes[k].scores[p]) if p >= 0 else float("nan")
            misses.append(Miss(scenes[k].name, int(column[j]), p, rank_of.get((k, p), -1), confidence, iou, gain))
    misses.sort(key=lambda m: np.inf if np.isnan(m.ap50_if_fixed) else -m.ap50_if_fixed)  # unpriced last
    return Costs(base, by_iou, errors, misses[:top])


def _best(table: np.ndarray, column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per prediction (rows of a P x G IoU table) the best IoU and its GT (``column``'s; -1 where it
    overlaps none)."""
    if table.shape[1] == 0:
        return np.zeros(table.shape[0]), np.full(table.shape[0], -1, np.int64)
    best = table.max(axis=1)
    return best, np.where(best > 0, np.asarray(column)[table.argmax(axis=1)], -1).astype(np.int64)


def _point_iou(masks: np.ndarray, gt_ids: np.ndarray, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(P x K point IoU of the prediction masks with the GT instances the evaluator counts (ids > 0 of at
    least ``min_points`` points), those K ids)."""
    iou, ids, sizes = instance_ious(masks, gt_ids)
    counted = sizes >= min_points
    return iou[:, counted], ids[counted]


Names = Callable[[str, int, int], str]  # (scene, prediction index or -1, GT or -1) -> words naming them


def cost_lines(title: str, costs: Costs, names: Names = lambda scene, index, gt: "") -> list[str]:
    """Report lines: the AP50 as ranked and by IoU, one line per listed false positive, then per miss."""
    lines = [f"{title}: AP50 {costs.ap50:.3f}, ranked by best GT IoU {costs.ap50_by_iou:.3f}"]
    for cost in costs.errors:
        lines.append(f"  false positive, rank {cost.rank:>3} {cost.scene} #{cost.index} confidence "
                     f"{cost.confidence:.3f}, best IoU {cost.best_iou:.2f}"
                     f"{_words(names(cost.scene, cost.index, cost.best_gt))}: AP50 without it "
                     f"{cost.ap50_without:.3f} ({cost.ap50_without - costs.ap50:+.3f})")
    for miss in costs.misses:
        words = _words(names(miss.scene, miss.index, miss.gt))
        if miss.index < 0:
            lines.append(f"  missed, {miss.scene} GT {miss.gt}{words}: no prediction overlaps it")
        else:
            lines.append(f"  missed, {miss.scene} GT {miss.gt}: best #{miss.index}, rank {miss.rank}, confidence "
                         f"{miss.confidence:.3f}, IoU {miss.iou:.2f}{words}: AP50 had it covered the object "
                         f"{miss.ap50_if_fixed:.3f} ({miss.ap50_if_fixed - costs.ap50:+.3f})")
    return lines


def _words(text: str) -> str:
    return f" ({text})" if text else ""


__all__ = ["Cost", "Costs", "Miss", "box_costs", "cost_lines", "point_costs"]
