"""`ObjectMap`: the map as one object id per voxel, with per-object confidence; labels for any points.

Built from the online tracker (``online_map``) or from ``refine``'s result. Units: metres, world frame
(the frames' camera-to-world poses); voxel keys as ``lift3d.voxels.pack_keys``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from lift3d.voxels import VoxelIndex, cells_of_points, pack_keys, voxel_centers

# Neighbour offsets nearest first (faces, edges, corners), for points whose own voxel holds no object.
_NEIGHBOURS = sorted((d for d in itertools.product((-1, 0, 1), repeat=3) if any(d)), key=lambda d: sum(map(abs, d)))


@dataclass
class ObjectMap:
    """``keys`` V int64 voxel keys, ``object`` V int64 object id per voxel; per object (aligned with
    ``ids``): ``confidence`` in [0, 1], ``num_obs`` observing frames, ``structure`` (floor/wall votes won).
    ``voxel_size`` metres."""

    keys: np.ndarray
    object: np.ndarray
    ids: np.ndarray
    confidence: np.ndarray
    num_obs: np.ndarray
    structure: np.ndarray
    voxel_size: float

    def __len__(self) -> int:
        return int(self.ids.size)

    def label_points(self, points: np.ndarray, search: bool = True) -> np.ndarray:
        """Object id (int64, -1 for none) of each world point (N x 3 metres): the object of its voxel,
        else (``search``) of the nearest occupied neighbour voxel."""
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"ObjectMap.label_points: points must be N x 3, got shape {points.shape}")
        index = VoxelIndex(max(self.keys.size, 16))
        index.insert(self.keys)
        cells = cells_of_points(points, self.voxel_size)
        rows = index.lookup(pack_keys(cells))
        if search:
            for offset in _NEIGHBOURS:
                missing = np.flatnonzero(rows < 0)
                if missing.size == 0:
                    break
                rows[missing] = index.lookup(pack_keys(cells[missing] + np.array(offset)))
        return np.where(rows >= 0, self.object[np.maximum(rows, 0)], -1)

    def points_of(self, object_id: int) -> np.ndarray:
        """Voxel centres (K x 3 float64 metres) of one object."""
        return voxel_centers(self.keys[self.object == object_id], self.voxel_size)

    def boxes(self, transform: np.ndarray | None = None) -> np.ndarray:
        """Per object (aligned with ``ids``) the axis-aligned box [min xyz, max xyz] (metres) of its voxel
        centres, after applying the 4 x 4 ``transform`` (e.g. ScanNet's axis alignment) when given."""
        centres = voxel_centers(self.keys, self.voxel_size)
        if transform is not None:
            centres = centres @ np.asarray(transform, np.float64)[:3, :3].T + np.asarray(transform, np.float64)[:3, 3]
        at = np.searchsorted(self.ids, self.object)
        lo = np.full((self.ids.size, 3), np.inf)
        hi = np.full((self.ids.size, 3), -np.inf)
        np.minimum.at(lo, at, centres)
        np.maximum.at(hi, at, centres)
        return np.concatenate([lo, hi], axis=1)

    def voxel_counts(self) -> np.ndarray:
        """Voxels per object, aligned with ``ids``."""
        return np.bincount(np.searchsorted(self.ids, self.object), minlength=self.ids.size)


def observation_confidence(mean_score: np.ndarray, num_obs: np.ndarray, consistency: np.ndarray | float = 1.0,
                           num_voxels: np.ndarray | None = None, saturation: float = 4.0,
                           voxel_scale: float = 0.0) -> np.ndarray:
    """Object confidence: the mean mask score times the detection consistency (share of the frames that
    saw the object in which a mask found it), discounted for objects seen in few frames and, when
    ``voxel_scale`` > 0, for objects of few voxels (``1 - exp(-num_voxels / voxel_scale)``).

    Measured 2026-12-06 and not kept (the cached refined maps of the noisy synthetic presets, seeds 0-5, ranked
    afresh; held-out seeds 2-5 AP50 room / cluttered / tabletop, as ranked today 0.827 / 0.639 / 0.876, by
    each prediction's best GT IoU 0.864 / 0.730 / 0.887): a logistic ranking on log detection confidence,
    attached share (``scene.parts``), log views and log points, fit on the tuned seeds 0-1 of all three
    presets, 0.813 / 0.621 / 0.883; this product without the parts discount 0.812 / 0.618 / 0.878; times
    the square root of the views 0.823 / 0.638 / 0.878; times the log of the points 0.816 / 0.620 / 0.884.
    The false positives left are pieces and merges whose statistics look like whole objects'."""
    few = 1.0 - np.exp(-np.asarray(num_obs, np.float64) / saturation)
    confidence = np.asarray(mean_score, np.float64) * np.asarray(consistency, np.float64) * few
    if voxel_scale > 0 and num_voxels is not None:
        confidence = confidence * (1.0 - np.exp(-np.asarray(num_voxels, np.float64) / voxel_scale))
    return confidence


def dominant_per_voxel(keys: np.ndarray, owners: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From (key, owner, weight) rows (repeats allowed), each key's owner of largest summed weight.

    Returns (distinct keys sorted, owner, that owner's summed weight)."""
    keys = np.asarray(keys, np.int64)
    owners = np.asarray(owners, np.int64)
    order = np.lexsort((owners, keys))
    k, o = keys[order], owners[order]
    start = np.r_[True, (k[1:] != k[:-1]) | (o[1:] != o[:-1])]
    summed = np.bincount(np.cumsum(start) - 1, weights=np.asarray(weights, np.float64)[order])
    pair_keys, pair_owners = k[start], o[start]
    best = np.lexsort((-summed, pair_keys))
    first = np.r_[True, pair_keys[best][1:] != pair_keys[best][:-1]]
    pick = best[first]
    return pair_keys[pick], pair_owners[pick], summed[pick]


__all__ = ["ObjectMap", "dominant_per_voxel", "observation_confidence"]
