"""Class-agnostic 3D instance AP, computed as ScanNet's ``evaluate_semantic_instance.py`` computes it.

Ground truth is one integer per point (mesh vertex), all instances one class:

- ``id > 0``: an instance (every positive id is one GT instance);
- ``id == 0``: void (unlabelled or not evaluated): a prediction lying mostly on void is not a false
  positive, exactly as the script treats its "void" vertices;
- ``id < 0``: background (evaluated, but no instance; the script's wall/floor or unannotated vertices):
  predictions there count against precision.

The protocol (each step as in the script):

- overlaps ``np.append(np.arange(0.5, 0.95, 0.05), 0.25)``; AP is the mean over the first nine (0.50..0.90),
  AP50 and AP25 the values at 0.5 and 0.25;
- GT instances with fewer than ``min_region_size`` (100) points are ignored; predictions with fewer
  points are dropped before anything else;
- matching goes GT by GT in ascending id order, and for each GT over the predictions that intersect it in
  the order given; a prediction is a match when IoU > overlap and it is not already matched. Further
  matches of the same GT are false positives with the lower confidence (the GT keeps the highest);
- an unmatched prediction (no IoU > overlap with any GT, small GT included) is a false positive unless
  (points on void + points on small GT) / its size > overlap;
- the precision-recall curve uses one point per unique score plus the closing point (recall 0,
  precision 1) and step widths ``np.convolve(recall, [-0.5, 0, 0.5], 'valid')``;
- AP is NaN without GT instances, 0 with GT but no predictions. Where the script would crash (GT and
  predictions, but every prediction ignored and none matched) AP is 0.
Scenes are accumulated like the script: one curve over all scenes' matches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
from scipy import sparse

SCANNET_OVERLAPS = np.append(np.arange(0.5, 0.95, 0.05), 0.25)
SCANNET_OVERLAPS.flags.writeable = False


@dataclass(frozen=True)
class InstanceAPConfig:
    """``overlaps``: IoU thresholds; ``min_region_size``: points below which GT is ignored and predictions dropped."""

    overlaps: np.ndarray = field(default_factory=lambda: SCANNET_OVERLAPS.copy())
    min_region_size: int = 100


@dataclass
class ScenePredictions:
    """One scene: ``gt_ids`` (N int, see the module docstring), ``masks`` (P x N bool) and ``scores`` (P float).

    ``name`` is only used in error messages.
    """

    gt_ids: np.ndarray
    masks: np.ndarray
    scores: np.ndarray
    name: str = "scene"

    def __post_init__(self) -> None:
        self.gt_ids = np.asarray(self.gt_ids)
        if self.gt_ids.ndim != 1 or not np.issubdtype(self.gt_ids.dtype, np.integer):
            raise ValueError(
                f"{self.name}: gt_ids must be a 1-D integer array, got {self.gt_ids.dtype} {self.gt_ids.shape}"
            )
        self.masks = np.asarray(self.masks)
        if self.masks.ndim == 1 and self.masks.size == 0:
            self.masks = self.masks.reshape(0, len(self.gt_ids))
        if self.masks.ndim != 2 or self.masks.shape[1] != len(self.gt_ids) or self.masks.dtype != bool:
            raise ValueError(
                f"{self.name}: masks must be P x {len(self.gt_ids)} bool (one row per prediction), "
                f"got {self.masks.dtype} {self.masks.shape}"
            )
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(self.scores) != len(self.masks):
            raise ValueError(f"{self.name}: {len(self.scores)} scores for {len(self.masks)} masks")

    @classmethod
    def from_pairs(cls, gt_ids: np.ndarray, pairs: Sequence[tuple[np.ndarray, float]], name: str = "scene"):
        """From a list of (N bool mask, confidence)."""
        masks = np.array([m for m, _ in pairs], dtype=bool).reshape(len(pairs), len(gt_ids))
        return cls(gt_ids, masks, [c for _, c in pairs], name)

    @classmethod
    def from_labels(cls, gt_ids: np.ndarray, labels: np.ndarray, scores: np.ndarray, name: str = "scene"):
        """From per-point prediction labels (0..P-1, negative = none) and P confidences indexed by label."""
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        return cls(gt_ids, masks_from_labels(labels, len(scores)), scores, name)


@dataclass
class InstanceAP:
    """``ap_per_overlap`` is aligned with ``overlaps``; ``num_gt`` counts evaluated (large enough) GT
    instances and ``num_pred`` the kept predictions, over all scenes."""

    overlaps: np.ndarray
    ap_per_overlap: np.ndarray
    num_gt: int
    num_pred: int

    @property
    def ap(self) -> float:
        values = self.ap_per_overlap[~np.isclose(self.overlaps, 0.25)]
        return float("nan") if np.isnan(values).all() else float(np.nanmean(values))

    @property
    def ap50(self) -> float:
        return self._at(0.5)

    @property
    def ap25(self) -> float:
        return self._at(0.25)

    def _at(self, overlap: float) -> float:
        hit = np.flatnonzero(np.isclose(self.overlaps, overlap))
        return float(self.ap_per_overlap[hit[0]]) if hit.size else float("nan")

    def as_dict(self) -> dict[str, float]:
        out = {"ap": self.ap, "ap50": self.ap50, "ap25": self.ap25, "num_gt": self.num_gt, "num_pred": self.num_pred}
        out.update({f"ap@{o:.2f}": float(v) for o, v in zip(self.overlaps, self.ap_per_overlap)})
        return out


def instance_ap(
    gt_ids: np.ndarray, masks: np.ndarray, scores: np.ndarray, config: InstanceAPConfig = InstanceAPConfig()
) -> InstanceAP:
    """AP of one scene: ``gt_ids`` N int, ``masks`` P x N bool, ``scores`` P confidences."""
    return evaluate_scenes([ScenePredictions(gt_ids, masks, scores)], config)


def masks_from_labels(labels: np.ndarray, num_predictions: int | None = None) -> np.ndarray:
    """P x N bool masks from per-point prediction labels (0..P-1, negative = no prediction)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    count = int(labels.max(initial=-1)) + 1 if num_predictions is None else num_predictions
    return labels[None, :] == np.arange(count)[:, None]


def objects_only(gt_ids: np.ndarray, structure_ids: Iterable[int], as_void: bool = True) -> np.ndarray:
    """GT for the "objects" report: the ``structure_ids`` (wall, floor, ...) stop being instances.

    ``as_void=True`` makes their points void (0: predictions there are ignored); ``False`` makes them
    background (-1: predictions there are false positives, as ScanNet's 18-class benchmark treats walls).
    """
    gt_ids = np.asarray(gt_ids)
    structure = np.isin(gt_ids, np.fromiter(structure_ids, dtype=np.int64)) & (gt_ids > 0)
    return np.where(structure, 0 if as_void else -1, gt_ids)


def evaluate_scenes(scenes: Sequence[ScenePredictions], config: InstanceAPConfig = InstanceAPConfig()) -> InstanceAP:
    """AP over several scenes, accumulated into one precision-recall curve per overlap."""
    overlaps = np.asarray(config.overlaps, dtype=np.float64)
    stats = [_SceneOverlaps.build(scene, config.min_region_size) for scene in scenes]
    num_gt = sum(int(s.gt_valid.sum()) for s in stats)
    num_pred = sum(len(s.scores) for s in stats)
    aps = np.array([_ap_at(stats, float(o), num_gt > 0, num_pred > 0) for o in overlaps])
    return InstanceAP(overlaps, aps, num_gt, num_pred)


def instance_ious(masks: np.ndarray, gt_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P x G point IoU of each prediction mask (P x N bool) with each GT instance (ids > 0, ascending), those
    G ids, their point counts): the overlaps the matching reads, before any size filter (for diagnostics)."""
    scene = ScenePredictions(np.asarray(gt_ids), np.asarray(masks, bool), np.zeros(len(masks)))
    stats = _SceneOverlaps.build(scene, 0)
    ids = np.unique(scene.gt_ids)
    return stats.iou(), ids[ids > 0], stats.gt_sizes


@dataclass
class _SceneOverlaps:
    """Per-scene counts after dropping small predictions: everything the matching needs.

    ``inter`` P x G points shared by prediction p and GT g (GT in ascending id order), ``void_inter`` P
    points of p on void, ``pred_sizes`` P, ``gt_sizes`` G, ``gt_valid`` G (large enough to evaluate).
    """

    inter: np.ndarray
    void_inter: np.ndarray
    pred_sizes: np.ndarray
    gt_sizes: np.ndarray
    gt_valid: np.ndarray
    scores: np.ndarray

    @classmethod
    def build(cls, scene: ScenePredictions, min_region_size: int) -> "_SceneOverlaps":
        pred_sizes = scene.masks.sum(1, dtype=np.int64)
        keep = pred_sizes >= min_region_size
        masks, scores, pred_sizes = scene.masks[keep], scene.scores[keep], pred_sizes[keep]
        gt_values, columns = np.unique(scene.gt_ids, return_inverse=True)
        counts = _mask_label_counts(masks, columns.reshape(-1), len(gt_values))
        instance = gt_values > 0
        gt_sizes = np.bincount(columns.reshape(-1), minlength=len(gt_values))[instance].astype(np.int64)
        return cls(
            inter=counts[:, instance],
            void_inter=counts[:, gt_values == 0].sum(1),
            pred_sizes=pred_sizes,
            gt_sizes=gt_sizes,
            gt_valid=gt_sizes >= min_region_size,
            scores=scores,
        )

    def iou(self) -> np.ndarray:
        union = self.pred_sizes[:, None] + self.gt_sizes[None, :] - self.inter
        return np.divide(self.inter, union, out=np.zeros(self.inter.shape, np.float64), where=self.inter > 0)


def _mask_label_counts(masks: np.ndarray, columns: np.ndarray, num_labels: int) -> np.ndarray:
    """P x L int64: points of each mask carrying each label, as a sparse product (exact integers)."""
    if len(masks) == 0 or num_labels == 0:
        return np.zeros((len(masks), num_labels), np.int64)
    points = sparse.csr_matrix(masks, dtype=np.int64)
    one_hot = sparse.csr_matrix(
        (np.ones(len(columns), np.int64), (np.arange(len(columns)), columns)), shape=(len(columns), num_labels)
    )
    return np.asarray((points @ one_hot).todense(), dtype=np.int64)


def _match_scene(scene: _SceneOverlaps, overlap: float) -> tuple[list[float], list[float], int]:
    """True/false flags and scores of one scene at one overlap, plus its count of unmatched GT."""
    iou = scene.iou()
    visited = np.zeros(len(scene.scores), bool)
    y_true: list[float] = []
    y_score: list[float] = []
    hard_false_negatives = 0
    for g in np.flatnonzero(scene.gt_valid):
        hits = np.flatnonzero((iou[:, g] > overlap) & ~visited)
        if hits.size == 0:
            hard_false_negatives += 1
            continue
        visited[hits[0]] = True
        # the script's running max: the GT keeps the best score, every other hit is a false positive
        hit_scores = scene.scores[hits]
        best = int(np.argmax(hit_scores))
        y_true.append(1.0)
        y_score.append(float(hit_scores[best]))
        y_true.extend([0.0] * (hits.size - 1))
        y_score.extend(np.delete(hit_scores, best).tolist())
    unmatched = ~(iou > overlap).any(1)
    ignored = scene.void_inter + scene.inter[:, ~scene.gt_valid].sum(1)
    false_positive = unmatched & (ignored / np.maximum(scene.pred_sizes, 1) <= overlap)
    y_true.extend([0.0] * int(false_positive.sum()))
    y_score.extend(scene.scores[false_positive].tolist())
    return y_true, y_score, hard_false_negatives


def _ap_at(stats: list[_SceneOverlaps], overlap: float, has_gt: bool, has_pred: bool) -> float:
    if not has_gt:
        return float("nan")
    if not has_pred:
        return 0.0
    y_true: list[float] = []
    y_score: list[float] = []
    hard_false_negatives = 0
    for scene in stats:
        t, s, fn = _match_scene(scene, overlap)
        y_true += t
        y_score += s
        hard_false_negatives += fn
    if not y_true:
        return 0.0
    return _average_precision(np.array(y_true), np.array(y_score), hard_false_negatives)


def _average_precision(y_true: np.ndarray, y_score: np.ndarray, hard_false_negatives: int) -> float:
    """The script's curve: one point per unique score (ascending), then the closing point (0, 1)."""
    order = np.argsort(y_score)
    true_cumsum = np.cumsum(y_true[order])
    _, first = np.unique(y_score[order], return_index=True)
    below = np.append(true_cumsum, 0.0)[first - 1]  # true examples scored strictly below each threshold
    tp = true_cumsum[-1] - below
    fp = len(y_score) - first - tp
    fn = below + hard_false_negatives
    precision = np.append(tp / (tp + fp), 1.0)
    recall = np.append(tp / (tp + fn), 0.0)
    padded = np.concatenate([recall[:1], recall, [0.0]])
    step_widths = np.convolve(padded, [-0.5, 0, 0.5], "valid")
    return float(np.dot(precision, step_widths))
