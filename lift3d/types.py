"""`Segment3D`: one cleaned 2D mask (or one connected part of it) lifted to world voxels.

The type that crosses from lift3d into tracking. Units: metres, world frame (the frame's
camera-to-world pose applied); voxel keys are ``lift3d.voxels.pack_keys`` of
``floor(point / voxel_size)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Segment3D:
    """One 3D segment of one frame.

    - ``frame_index``: ``Frame.index`` of the source frame.
    - ``mask_index``: row of the mask in that frame's MaskSet; ``part``: 0.. when the mask was split
      into spatially separate parts (largest first), else 0.
    - ``voxel_keys``: K int64, sorted, distinct occupied voxels; ``voxel_counts``: K int32 points per voxel.
    - ``num_points``: points kept after cleaning (after pixel stride).
    - ``centroid`` (3 float64), ``aabb_min`` / ``aabb_max`` (3 float64): of the kept points, metres.
    - ``score``: the mask's score; ``box``: the mask's XYXY pixel box (4 float32) from the MaskSet.
    - ``points`` (M x 3 float32, metres) and ``colors`` (M x 3 uint8 RGB): optional subsample, one
      point per occupied voxel (aligned with ``voxel_keys``), for the map's geometry.
    - ``voxel_size``: metres.
    """

    frame_index: int
    mask_index: int
    part: int
    voxel_keys: np.ndarray
    voxel_counts: np.ndarray
    num_points: int
    centroid: np.ndarray
    aabb_min: np.ndarray
    aabb_max: np.ndarray
    score: float
    box: np.ndarray
    voxel_size: float
    points: np.ndarray | None = None
    colors: np.ndarray | None = None

    @property
    def num_voxels(self) -> int:
        return int(self.voxel_keys.size)

    @property
    def extent(self) -> np.ndarray:
        """AABB side lengths, metres."""
        return self.aabb_max - self.aabb_min


def stack_voxel_keys(segments: list[Segment3D]) -> tuple[np.ndarray, np.ndarray]:
    """(keys, groups): all segments' voxel keys concatenated, and the index of each key's segment in
    ``segments`` — the input of ``LabelStore.overlaps`` and ``LabelStore.add`` for a whole frame."""
    if not segments:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = np.concatenate([s.voxel_keys for s in segments])
    groups = np.repeat(np.arange(len(segments), dtype=np.int64), [s.num_voxels for s in segments])
    return keys, groups
