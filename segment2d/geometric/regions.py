"""Regions of one level: connected components of the uncut pixels, grown back over the cut pixels, and the
thin structures (poles) the cuts leave without a seed."""
from __future__ import annotations

import cv2
import numpy as np

from .. import depth_ops
from ..planes import RegionPlanes
from .config import GeometricConfig


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def components(free: np.ndarray, min_px: int) -> tuple[np.ndarray, int]:
    """4-connected components of ``free``; components under ``min_px`` dropped; labels renumbered 1..n-1."""
    # Without stats (3x faster: they include double-precision centroids); areas from one bincount.
    n, labels = cv2.connectedComponents(free.astype(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    keep = np.bincount(labels.ravel(), minlength=n) >= min_px
    keep[0] = False
    remap = np.zeros(n, np.int32)
    remap[keep] = np.arange(1, keep.sum() + 1, dtype=np.int32)
    return remap.take(labels), int(keep.sum()) + 1


def grow(labels: np.ndarray, depth: np.ndarray, valid: np.ndarray, pts: np.ndarray, planes: RegionPlanes,
          planar: np.ndarray, cfg: GeometricConfig) -> np.ndarray:
    """Give unlabelled valid pixels the label of the best-fitting 4-neighbour.

    The misfit to a planar region is the pixel's distance to the region's plane (metres, limit
    ``on_plane_abs + on_plane_rel * z``); to any other region, the depth step to the neighbour (limit: the
    depth-jump threshold). The smallest misfit within its limit wins, so cut lines and dropped specks are
    absorbed by the surface they belong to, the crease band where a box meets the floor goes to the box
    above the floor plane, and nothing is taken across a depth jump. Runs ``grow_iters`` synchronous steps
    over the frontier only (unlabelled pixels next to a label, or next to one labelled in the last step), on
    flat indices into copies padded by one unlabelled pixel.
    """
    h, w = labels.shape
    lab = depth_ops.pad1(labels).ravel()
    dep = depth_ops.pad1(depth).ravel()
    xyz = depth_ops.pad1(pts).reshape(3, -1)
    open_ = depth_ops.pad1(valid & (labels == 0)).ravel()
    plane = np.concatenate([planes.normal, planes.offset[:, None]], axis=1).astype(np.float32)
    steps = np.array([1, -1, w + 2, -(w + 2)])[:, None]  # one row per neighbour, in tie-breaking order
    touched = cv2.dilate((labels > 0).astype(np.uint8), _CROSS) > 0
    front = np.flatnonzero(open_ & depth_ops.pad1(touched).ravel())  # only pixels next to a label can change
    near = np.zeros_like(open_)
    inf = np.float32(np.inf)
    plane_columns = [np.ascontiguousarray(plane[:, i]) for i in range(4)]
    for _ in range(cfg.grow_iters):
        if len(front) == 0:
            break
        z = dep[front]
        neighbour = front + steps  # 4 x F, all neighbours at once
        nl = lab[neighbour]
        cost = np.abs(dep[neighbour] - z)
        np.copyto(cost, inf, where=cost > depth_ops.jump_limit(z, cfg.rel_jump, cfg.sigma0, cfg.sigma2, cfg.n_sigma))
        on = np.flatnonzero(planar[nl])
        if len(on):
            at = front[on % len(front)]
            on_label = nl.ravel()[on]
            a, b, c, d = (col[on_label] for col in plane_columns)
            dist = np.abs(a * xyz[0, at] + b * xyz[1, at] + c * xyz[2, at] + d)
            plane_limit = np.float32(cfg.on_plane_abs) + np.float32(cfg.on_plane_rel) * dep[at]
            cost.ravel()[on] = np.where(dist <= plane_limit, dist, inf)
        np.copyto(cost, inf, where=nl == 0)
        # A neighbour wins only when strictly better than the earlier ones (ties: ``steps`` order).
        best_cost, best_label = cost[0], nl[0]
        for k in range(1, 4):
            better = cost[k] < best_cost
            np.copyto(best_cost, cost[k], where=better)
            np.copyto(best_label, nl[k], where=better)
        done = best_cost < inf
        grown = front[done]
        lab[grown] = best_label[done]
        open_[grown] = False
        near[grown + steps] = True
        front = np.flatnonzero(near & open_)
        near[front] = False  # the rest of ``near`` is not open and never read again
    return lab.reshape(h + 2, w + 2)[1:-1, 1:-1].copy()


def elongated(labels: np.ndarray, n: int, ratio: float) -> np.ndarray:
    """Per label: its pixels' larger principal spread is at least ``ratio`` x the smaller (spreads as stds,
    the smaller floored at half a pixel), from per-label image moments."""
    pixels = np.flatnonzero(labels)
    flat = labels.ravel()[pixels]
    ys, xs = np.divmod(pixels, labels.shape[1])
    ys, xs = ys.astype(np.float64), xs.astype(np.float64)
    count = np.maximum(np.bincount(flat, minlength=n), 1).astype(np.float64)
    mean_x, mean_y = np.bincount(flat, xs, n) / count, np.bincount(flat, ys, n) / count
    xx = np.bincount(flat, xs * xs, n) / count - mean_x ** 2
    yy = np.bincount(flat, ys * ys, n) / count - mean_y ** 2
    xy = np.bincount(flat, xs * ys, n) / count - mean_x * mean_y
    half_gap = np.sqrt(((xx - yy) / 2) ** 2 + xy ** 2)
    large, small = (xx + yy) / 2 + half_gap, np.maximum((xx + yy) / 2 - half_gap, 0.25)
    return large >= ratio ** 2 * small


def in_front(labels: np.ndarray, label: int, stat: np.ndarray, depth: np.ndarray, valid: np.ndarray,
              cfg: GeometricConfig) -> bool:
    """Whether component ``label`` (its ``cv2`` stats row) lies in front of the valid pixels around it by
    more than the depth-jump limit (medians)."""
    x, y, w, h = (int(v) for v in stat[:4])
    rows, cols = slice(max(y - 3, 0), y + h + 3), slice(max(x - 3, 0), x + w + 3)
    inside = labels[rows, cols] == label
    ring = (cv2.dilate(inside.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0) & ~inside & valid[rows, cols]
    if ring.sum() < 5:
        return False
    near, around = np.median(depth[rows, cols][inside]), np.median(depth[rows, cols][ring])
    return bool(around - near > depth_ops.jump_limit(np.float32(near), cfg.rel_jump, cfg.sigma0, cfg.sigma2,
                                                              cfg.n_sigma))
