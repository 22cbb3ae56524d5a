"""2D mask-proposal recall (SAM's proposal metric): how well a mask set covers the ground-truth instances.

For every ground-truth instance the best IoU over all predicted masks is taken (no one-to-one
matching: a proposal may serve several instances). From these:

- ``mean_best_iou``: mean of the per-instance best IoU;
- ``recall[t]``: share of instances whose best IoU is >= ``thresholds[t]`` (COCO's ``>=`` convention);
- ``average_recall``: mean recall over ``thresholds`` (default ``np.linspace(0.5, 0.95, 10)``).

IoU is the plain IoU of two binary masks over the whole image: predicted pixels on void (id <= 0)
count in the prediction's area, so a mask that spills onto void is penalised like any other spill.
Ground-truth instances with fewer than ``min_area`` pixels are skipped (not counted at all).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from segment2d.types import MaskSet

DEFAULT_THRESHOLDS = np.linspace(0.5, 0.95, 10)
DEFAULT_THRESHOLDS.flags.writeable = False
_WORD_BITS = 64


@dataclass
class MaskRecall:
    """Per-instance best IoU and the recall statistics derived from it.

    - ``gt_ids``: G int64 instance ids that were evaluated (one frame, or several concatenated);
    - ``gt_areas``: G int64 pixel areas;
    - ``best_iou``: G float64, best IoU of any predicted mask with that instance (0 when none overlaps);
    - ``best_mask``: G int64 index of that mask in its frame's mask set, -1 when none overlaps;
    - ``thresholds``: T float64 IoU thresholds.
    """

    gt_ids: np.ndarray
    gt_areas: np.ndarray
    best_iou: np.ndarray
    best_mask: np.ndarray
    thresholds: np.ndarray

    @property
    def num_gt(self) -> int:
        return int(self.best_iou.shape[0])

    @property
    def recall(self) -> np.ndarray:
        """T float64: share of instances with best IoU >= each threshold (NaN without instances)."""
        if self.num_gt == 0:
            return np.full(len(self.thresholds), np.nan)
        return (self.best_iou[None, :] >= self.thresholds[:, None]).mean(1)

    @property
    def average_recall(self) -> float:
        return float(self.recall.mean()) if self.num_gt else float("nan")

    @property
    def mean_best_iou(self) -> float:
        return float(self.best_iou.mean()) if self.num_gt else float("nan")

    def summary(self) -> dict[str, float]:
        out = {"num_gt": float(self.num_gt), "mean_best_iou": self.mean_best_iou, "average_recall": self.average_recall}
        out.update({f"recall@{t:.2f}": float(r) for t, r in zip(self.thresholds, self.recall)})
        return out

    @staticmethod
    def concatenate(results: list["MaskRecall"]) -> "MaskRecall":
        """Pool instances of several frames (each instance counts once, as COCO-style AR does)."""
        if not results:
            raise ValueError("MaskRecall.concatenate: got an empty list of results")
        thresholds = results[0].thresholds
        if any(not np.array_equal(r.thresholds, thresholds) for r in results):
            raise ValueError("MaskRecall.concatenate: results use different IoU thresholds")
        names = ("gt_ids", "gt_areas", "best_iou", "best_mask")
        return MaskRecall(*[np.concatenate([getattr(r, name) for r in results]) for name in names], thresholds)


def mask_recall(
    gt_instances: np.ndarray,
    masks: MaskSet | np.ndarray,
    min_area: int = 0,
    thresholds: np.ndarray = DEFAULT_THRESHOLDS,
) -> MaskRecall:
    """Best-IoU recall of predicted ``masks`` (MaskSet or N x H x W bool) against ``gt_instances``.

    ``gt_instances`` is an H x W integer instance-id image; ids <= 0 are void.
    """
    gt = _check_gt(gt_instances)
    pred = _check_masks(masks, gt.shape)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    ids, areas, dense, slices = _gt_instances(gt, min_area)
    packed = _pack_rows(pred)
    inter = _intersections(dense, packed, slices)
    union = _popcount_sum(packed, axis=(1, 2))[:, None] + areas[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros(inter.shape, np.float64), where=union > 0)
    best_mask = np.full(len(ids), -1, np.int64)
    best_iou = np.zeros(len(ids), np.float64)
    if len(pred):
        best_mask = np.where(iou.max(0) > 0, iou.argmax(0), -1).astype(np.int64)
        best_iou = iou.max(0)
    return MaskRecall(ids, areas, best_iou, best_mask, thresholds)


def _check_gt(gt_instances: np.ndarray) -> np.ndarray:
    gt = np.asarray(gt_instances)
    if gt.ndim != 2:
        raise ValueError(f"gt_instances must be an H x W id image, got shape {gt.shape}")
    if not np.issubdtype(gt.dtype, np.integer):
        raise ValueError(f"gt_instances must hold integer ids, got dtype {gt.dtype}")
    return gt.astype(np.int64, copy=False)


def _check_masks(masks: MaskSet | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    array = masks.masks if isinstance(masks, MaskSet) else np.asarray(masks)
    if array.ndim != 3 or array.shape[1:] != shape:
        raise ValueError(f"masks must be N x {shape[0]} x {shape[1]} to match gt_instances, got shape {array.shape}")
    if array.dtype != bool:
        raise ValueError(f"masks must be bool, got dtype {array.dtype}")
    return array


def _gt_instances(gt: np.ndarray, min_area: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Evaluated ids, their areas, the id image renumbered densely (0 void, 1..K) and (label, box slices)."""
    ids, dense = _dense_labels(np.where(gt > 0, gt, 0))
    areas = np.bincount(dense.ravel(), minlength=len(ids) + 1)[1:].astype(np.int64)
    slices = ndimage.find_objects(dense, max_label=len(ids))
    keep = np.flatnonzero(areas >= max(min_area, 1))
    return ids[keep].astype(np.int64), areas[keep], dense, [(k + 1, slices[k]) for k in keep]


def _dense_labels(ids_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positive ids present and the image relabelled 1..K (0 stays void).

    A lookup table is much faster than ``np.unique`` for the usual small ids; huge ids fall back to it.
    """
    largest = int(ids_image.max()) if ids_image.size else 0
    if largest > 4 * ids_image.size + 65536:
        ids, dense = np.unique(ids_image, return_inverse=True)
        dense = dense.reshape(ids_image.shape).astype(np.int32)
        if ids.size and ids[0] == 0:
            return ids[1:], dense
        return ids, dense + 1
    present = np.bincount(ids_image.ravel(), minlength=largest + 1)
    ids = np.flatnonzero(present[1:]) + 1
    lookup = np.zeros(largest + 1, np.int32)
    lookup[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return ids, lookup[ids_image]


def _pack_rows(bits: np.ndarray) -> np.ndarray:
    """Pack the last (width) axis of a bool array into uint64 words, zero padded."""
    packed = np.packbits(bits, axis=-1)
    pad = (-packed.shape[-1]) % (_WORD_BITS // 8)
    if pad:
        packed = np.concatenate([packed, np.zeros(packed.shape[:-1] + (pad,), np.uint8)], axis=-1)
    return np.ascontiguousarray(packed).view(np.uint64)


def _popcount_sum(words: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words).sum(axis=axis, dtype=np.int64)
    table = np.array([bin(i).count("1") for i in range(256)], np.uint8)  # numpy < 2 fallback
    counts = table[words.view(np.uint8)].reshape(words.shape + (8,)).sum(-1, dtype=np.int64)
    return counts.sum(axis=axis)


def _intersections(dense: np.ndarray, packed: np.ndarray, slices: list) -> np.ndarray:
    """N x G pixel counts of mask n inside instance g, by AND + popcount on bit-packed rows.

    ``packed``: the masks as N x H x words (``_pack_rows``); ``dense``: the relabelled id image; ``slices``:
    (label, bounding slices) per instance. Only the words covering each instance's box are touched, so the
    cost is N x (sum of box areas) / 64 word operations.
    """
    inter = np.zeros((len(packed), len(slices)), np.int64)
    if len(packed) == 0 or not slices:
        return inter
    width = packed.shape[-1] * _WORD_BITS
    wide = np.zeros((dense.shape[0], width), np.int32)
    wide[:, : dense.shape[1]] = dense
    for column, (label, (rows, cols)) in enumerate(slices):
        w0, w1 = cols.start // _WORD_BITS, -(-cols.stop // _WORD_BITS)
        inside = wide[rows, w0 * _WORD_BITS : w1 * _WORD_BITS] == label
        inter[:, column] = _popcount_sum(packed[:, rows, w0:w1] & _pack_rows(inside)[None], axis=(1, 2))
    return inter
