"""A frame's observed surface as voxel keys: the visibility test of the online tracker.

An object voxel is visible in a frame when the frame's depth put a point in that voxel (at the
surface, within one voxel): out-of-view, occluded and free-space voxels are not in the set. Shares
measured against this set compare like with like, since a segment's voxels come from the same pixels.
"""
from __future__ import annotations

import numpy as np

from lift3d.backproject import backproject_pixels, check_camera, valid_pixels
from lift3d.lift import KnownSurface
from lift3d.voxels import point_cells, unique_point_keys
from scene.datasets import Frame


def surface_points(frame: Frame, stride: int, depth_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted flat indices, N x 3 float32 world points) of ``frame``'s valid depth pixels on every
    ``stride``-th row and column: the points ``surface_keys`` voxelises."""
    check_camera(frame.depth, frame.K, frame.pose, "surface_keys")
    pixels = valid_pixels(frame.depth, stride, depth_range)
    return pixels, backproject_pixels(frame.depth, frame.K, frame.pose, pixels)


def surface_keys(frame: Frame, voxel_size: float, stride: int, depth_range: tuple[float, float],
                 points: np.ndarray | None = None) -> np.ndarray:
    """Sorted distinct int64 keys of the voxels (``voxel_size`` metres, world frame) holding at least one
    valid depth pixel of ``frame`` (every ``stride``-th row and column). ``points``: those pixels' points
    when the caller has them (``surface_points``)."""
    if points is None:
        points = surface_points(frame, stride, depth_range)[1]
    if points.size == 0:
        return np.zeros(0, np.int64)
    return unique_point_keys(points, voxel_size)


def known_surface(frame: Frame, voxel_size: float, stride: int, depth_range: tuple[float, float]) -> KnownSurface:
    """``frame``'s surface pixels (``surface_points``) with their voxels: ``cells.keys`` are its
    ``surface_keys``, and the lift takes the pixels' points and voxels from it (``lift_partition``)."""
    pixels, points = surface_points(frame, stride, depth_range)
    return KnownSurface(pixels, points, point_cells(points, voxel_size), float(voxel_size))
