"""Class-agnostic 3D box AP for axis-aligned boxes, as VoteNet's / mmdetection3d's ``eval_det_cls`` computes it.

Boxes are M x 6 float ``[xmin, ymin, zmin, xmax, ymax, zmax]`` (metres, world frame). Per overlap:

- all detections of all scenes are sorted by descending confidence (stable: equal scores keep input order);
- each detection takes the GT box of its scene with the highest 3D IoU (matched or not, first on ties);
  it is a true positive if that IoU > overlap and that GT is still free (the GT is then taken), otherwise
  a false positive — there is no fall-back to the second-best GT;
- recall = cumulative TP / number of GT boxes; precision = cumulative TP / max(TP + FP, eps);
- AP is VOC's all-point interpolated area (``voc_ap`` with ``use_07_metric=False``).
AP is NaN without GT boxes and 0 with GT but no detections.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

BOX_OVERLAPS = (0.25, 0.5)


@dataclass
class SceneBoxes:
    """One scene: ``gt_boxes`` G x 6, ``pred_boxes`` P x 6 (min/max corners), ``scores`` P confidences."""

    gt_boxes: np.ndarray
    pred_boxes: np.ndarray
    scores: np.ndarray
    name: str = "scene"

    def __post_init__(self) -> None:
        self.gt_boxes = _check_boxes(self.gt_boxes, f"{self.name}: gt_boxes")
        self.pred_boxes = _check_boxes(self.pred_boxes, f"{self.name}: pred_boxes")
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(self.scores) != len(self.pred_boxes):
            raise ValueError(f"{self.name}: {len(self.scores)} scores for {len(self.pred_boxes)} predicted boxes")


@dataclass
class BoxAP:
    """``ap_per_overlap`` and ``max_recall`` are aligned with ``overlaps``."""

    overlaps: np.ndarray
    ap_per_overlap: np.ndarray
    max_recall: np.ndarray
    num_gt: int
    num_pred: int

    @property
    def ap25(self) -> float:
        return self._at(0.25)

    @property
    def ap50(self) -> float:
        return self._at(0.5)

    def _at(self, overlap: float) -> float:
        hit = np.flatnonzero(np.isclose(self.overlaps, overlap))
        return float(self.ap_per_overlap[hit[0]]) if hit.size else float("nan")

    def as_dict(self) -> dict[str, float]:
        out = {"num_gt": self.num_gt, "num_pred": self.num_pred}
        for o, ap, rec in zip(self.overlaps, self.ap_per_overlap, self.max_recall):
            out[f"ap@{o:.2f}"], out[f"recall@{o:.2f}"] = float(ap), float(rec)
        return out


def box_iou_3d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A x B IoU of axis-aligned boxes given as min/max corners; 0 where both volumes are 0."""
    a = _check_boxes(a, "box_iou_3d: a")
    b = _check_boxes(b, "box_iou_3d: b")
    low = np.maximum(a[:, None, :3], b[None, :, :3])
    high = np.minimum(a[:, None, 3:], b[None, :, 3:])
    inter = np.clip(high - low, 0.0, None).prod(-1)
    union = _volumes(a)[:, None] + _volumes(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros(inter.shape, np.float64), where=union > 0)


def box_ap(
    gt_boxes: np.ndarray, pred_boxes: np.ndarray, scores: np.ndarray, overlaps: Sequence[float] = BOX_OVERLAPS
) -> BoxAP:
    """Box AP of one scene."""
    return evaluate_box_scenes([SceneBoxes(gt_boxes, pred_boxes, scores)], overlaps)


def evaluate_box_scenes(scenes: Sequence[SceneBoxes], overlaps: Sequence[float] = BOX_OVERLAPS) -> BoxAP:
    """Box AP over several scenes: detections of all scenes ranked together, each matched in its own scene."""
    overlaps = np.asarray(overlaps, dtype=np.float64).reshape(-1)
    num_gt = sum(len(s.gt_boxes) for s in scenes)
    best_iou, best_gt, scores = _best_gt_per_detection(scenes)
    order = np.argsort(-scores, kind="stable")
    aps, recalls = [], []
    for overlap in overlaps:
        tp = _true_positives(best_iou[order], best_gt[order], float(overlap))
        ap, recall = _voc_curve(tp, num_gt)
        aps.append(ap)
        recalls.append(recall)
    return BoxAP(overlaps, np.array(aps), np.array(recalls), num_gt, len(scores))


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point interpolated AP (the area under the monotone precision envelope)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    envelope = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * envelope[steps + 1]))


def _best_gt_per_detection(scenes: Sequence[SceneBoxes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per detection (all scenes concatenated): best IoU, that GT's global index (-1 if none), score."""
    best_iou, best_gt, scores, offset = [], [], [], 0
    for scene in scenes:
        iou = box_iou_3d(scene.pred_boxes, scene.gt_boxes)
        if iou.shape[1]:
            best_iou.append(iou.max(1))
            best_gt.append(iou.argmax(1) + offset)
        else:
            best_iou.append(np.full(len(iou), -np.inf))
            best_gt.append(np.full(len(iou), -1))
        scores.append(scene.scores)
        offset += len(scene.gt_boxes)
    return _concatenate(best_iou, np.float64), _concatenate(best_gt, np.int64), _concatenate(scores, np.float64)


def _concatenate(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _true_positives(best_iou: np.ndarray, best_gt: np.ndarray, overlap: float) -> np.ndarray:
    """TP flags of ranked detections: a detection claims its best GT if the IoU passes and it is free."""
    candidate = best_iou > overlap
    # the first (highest-ranked) candidate of each GT claims it; later candidates of that GT are FPs
    first = np.zeros(len(best_gt), bool)
    rows = np.flatnonzero(candidate)
    _, first_rows = np.unique(best_gt[rows], return_index=True)
    first[rows[first_rows]] = True
    return first


def _voc_curve(tp: np.ndarray, num_gt: int) -> tuple[float, float]:
    """(AP, final recall) of ranked TP flags."""
    if num_gt == 0:
        return float("nan"), float("nan")
    tp_cum = np.cumsum(tp, dtype=np.float64)
    fp_cum = np.cumsum(~tp, dtype=np.float64)
    recall = tp_cum / float(num_gt)
    precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    return voc_ap(recall, precision), float(recall[-1]) if len(recall) else 0.0


def _volumes(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 3:] - boxes[:, :3]).prod(-1)


def _check_boxes(boxes: np.ndarray, what: str) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 6)
    if boxes.ndim != 2 or boxes.shape[1] != 6:
        raise ValueError(f"{what} must be M x 6 [xmin, ymin, zmin, xmax, ymax, zmax], got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{what} holds non-finite values")
    if (boxes[:, 3:] < boxes[:, :3]).any():
        bad = int(np.flatnonzero((boxes[:, 3:] < boxes[:, :3]).any(1))[0])
        raise ValueError(f"{what}: box {bad} has a max corner below its min corner: {boxes[bad].tolist()}")
    return boxes
