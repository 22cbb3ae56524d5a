"""Which regions are offered and how confident each is: outline support (the share of a region's outline on
cut evidence), near-duplicates across levels, and colour regions inside a small object's region."""
from __future__ import annotations

import cv2
import numpy as np

from .levels import Level


def outline_support(labels: np.ndarray, n: int, evidence: np.ndarray) -> np.ndarray:
    """Per label, the share of its outline pixels (inside the image, not on the image border) that lie
    within one pixel of cut evidence or of unlabelled pixels. 1.0 for labels with no such outline."""
    h, w = labels.shape
    outline = np.zeros((h, w), bool)
    across = labels[:, 1:] != labels[:, :-1]  # each 4-neighbour pair compared once, marked on both sides
    outline[:, :-1] |= across
    outline[:, 1:] |= across
    across = labels[1:] != labels[:-1]
    outline[:-1] |= across
    outline[1:] |= across
    outline &= labels > 0
    outline[0, :] = outline[-1, :] = outline[:, 0] = outline[:, -1] = False
    near = cv2.dilate((evidence | (labels == 0)).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    total = np.bincount(labels[outline], minlength=n).astype(np.float32)
    hit = np.bincount(labels[outline & near], minlength=n).astype(np.float32)
    return np.where(total > 0, hit / np.maximum(total, 1), np.float32(1.0)).astype(np.float32)


def support_score(support: np.ndarray, floor: float) -> np.ndarray:
    """Region confidence in [``floor``, 1] from its outline support."""
    return (np.float32(floor) + np.float32(1.0 - floor) * np.clip(support, 0, 1)).astype(np.float32)


def overlaps(a: Level, b: Level) -> np.ndarray:
    """a.n x b.n: the pixels labelled i in ``a`` and j in ``b`` (row / column 0: unlabelled)."""
    return np.bincount(a.labels.ravel().astype(np.int64) * b.n + b.labels.ravel(),
                       minlength=a.n * b.n).reshape(a.n, b.n)


def not_duplicates(lv0: Level, lv1: Level, max_iou: float, counts: np.ndarray | None = None) -> np.ndarray:
    """Per level-1 label: True unless it has IoU >= ``max_iou`` with some level-0 label (``counts``: their
    ``overlaps``, when already counted)."""
    inter = (overlaps(lv0, lv1) if counts is None else counts)[1:, :]
    union = lv0.area[1:, None] + lv1.area[None, :] - inter
    iou = inter / np.maximum(union, 1)
    return ~(iou >= max_iou).any(axis=0) if len(iou) else np.ones(lv1.n, bool)


def inside_small_object(parent: Level, child: Level, max_extent: float, max_fraction: float,
                        share: float, counts: np.ndarray | None = None) -> np.ndarray:
    """Per child label: True when ``share`` of it lies in one non-structure parent region whose 3D extent
    (largest std, metres) is below ``max_extent`` and whose area is below ``max_fraction`` of the image
    (``counts``: their ``overlaps``, when already counted)."""
    inter = overlaps(parent, child) if counts is None else counts
    best = inter.argmax(axis=0)
    small = (~parent.structure & (parent.planes.extent[:, 0] < max_extent)
             & (parent.area < max_fraction * parent.labels.size))
    small[0] = False
    return small[best] & (inter[best, np.arange(child.n)] >= share * np.maximum(child.area, 1))
