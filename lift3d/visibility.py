"""Where world points stand relative to one depth frame: out of view, free space, surface, occluded.

Used to decide which frames could have observed a voxel (view consensus, ``keep voxels detected in
most frames that see them``) and which frames saw through it (free-space carving, ``coarse_depth``:
a small, conservative summary of a depth image to classify against later). Units: metres; ``pose``
camera-to-world, OpenCV axes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backproject import DEFAULT_DEPTH_RANGE, check_camera, project, valid_depth
from .voxels import voxel_centers

OUT_OF_VIEW = np.int8(0)  # behind the camera, outside the image, or beyond the depth range
NO_DEPTH = np.int8(1)  # projects into the image where depth is invalid
FREE = np.int8(2)  # in front of the observed surface: the ray passed through it
SURFACE = np.int8(3)  # within the tolerance of the observed depth
OCCLUDED = np.int8(4)  # behind the observed surface


@dataclass(frozen=True)
class VisibilityConfig:
    """``|z - depth| < surface_tol * max(1, z / tol_ref_depth)`` counts as the surface (4 cm up to 2 m,
    then growing linearly with depth like the sensor noise)."""

    surface_tol: float = 0.04
    tol_ref_depth: float = 2.0
    depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE


@dataclass
class Visibility:
    """Per point: ``classes`` (int8, the constants above), ``pixels`` (int64 flat index v * W + u of
    the pixel it projects to, -1 when OUT_OF_VIEW), ``z`` (float64 camera depth, metres)."""

    classes: np.ndarray
    pixels: np.ndarray
    z: np.ndarray

    def fraction(self, cls: np.int8) -> float:
        return float(np.mean(self.classes == cls)) if self.classes.size else 0.0


def classify_points(
    points: np.ndarray,
    depth: np.ndarray,
    K: np.ndarray,
    pose: np.ndarray,
    config: VisibilityConfig = VisibilityConfig(),
) -> Visibility:
    """Classify N x 3 world points (metres) against the depth image (metres, 0 = invalid) of a camera."""
    check_camera(depth, K, pose, "classify_points")
    height, width = depth.shape
    uv, z = project(points, K, pose)
    near, far = config.depth_range
    with np.errstate(invalid="ignore"):
        u = np.floor(uv[:, 0] + 0.5)
        v = np.floor(uv[:, 1] + 0.5)
        in_view = (z >= near) & (z <= far) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    pixels = np.full(z.shape, -1, np.int64)
    pixels[in_view] = v[in_view].astype(np.int64) * width + u[in_view].astype(np.int64)
    observed = np.zeros(z.shape, np.float64)
    observed[in_view] = depth.reshape(-1)[pixels[in_view]]
    has_depth = in_view & (observed >= near) & (observed <= far)
    tol = config.surface_tol * np.maximum(1.0, z / config.tol_ref_depth)
    classes = np.full(z.shape, OUT_OF_VIEW, np.int8)
    classes[in_view & ~has_depth] = NO_DEPTH
    with np.errstate(invalid="ignore"):
        classes[has_depth & (z <= observed - tol)] = FREE
        classes[has_depth & (np.abs(z - observed) < tol)] = SURFACE
        classes[has_depth & (z >= observed + tol)] = OCCLUDED
    return Visibility(classes, pixels, z)


def classify_voxels(
    keys: np.ndarray,
    voxel_size: float,
    depth: np.ndarray,
    K: np.ndarray,
    pose: np.ndarray,
    config: VisibilityConfig = VisibilityConfig(),
) -> Visibility:
    """``classify_points`` for the centres of the voxels ``keys`` (``voxel_size`` in metres)."""
    return classify_points(voxel_centers(keys, voxel_size), depth, K, pose, config)


def coarse_depth(depth: np.ndarray, block: int, margin: int = 1,
                 depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE) -> np.ndarray:
    """The nearest surface around each tile of ``block`` x ``block`` pixels: ceil(H / block) x
    ceil(W / block) float16 metres, the least valid depth over the tile and the ``margin`` tiles on
    every side of it; 0 where the tile itself holds no valid depth.

    Classified against it (``classify_points`` with ``coarse_intrinsics``), a point is FREE only when
    it lies in front of every surface seen around its pixel: a thin object (a chair leg) that a point
    misses by a few pixels of pose error, and the mixed pixels along a depth edge, give no free-space
    evidence. float16 rounds by at most 4 mm below 8 m, well inside the surface tolerance."""
    if not isinstance(depth, np.ndarray) or depth.ndim != 2:
        raise ValueError(f"coarse_depth: depth must be an H x W array in metres, got shape {np.shape(depth)}")
    if block < 1 or margin < 0:
        raise ValueError(f"coarse_depth: block must be >= 1 pixel and margin >= 0 tiles, got {block}, {margin}")
    height, width = depth.shape
    rows, cols = -(-height // block), -(-width // block)
    near, far = depth_range
    padded = np.full((rows * block, cols * block), np.inf, np.float32)
    padded[:height, :width] = depth
    with np.errstate(invalid="ignore"):
        np.copyto(padded, np.inf, where=~((padded >= near) & (padded <= far)))  # invalid, NaN -> inf
    # tile minima by strided slices (several times faster than a min over reshaped axes)
    columns = padded[:, 0::block].copy()
    for k in range(1, block):
        np.minimum(columns, padded[:, k::block], out=columns)
    tiles = columns[0::block].copy()
    for k in range(1, block):
        np.minimum(tiles, columns[k::block], out=tiles)
    has_depth = np.isfinite(tiles)
    nearest = tiles
    for axis in (0, 1):  # a separable min filter over (2 margin + 1)^2 tiles
        source, nearest = nearest, nearest.copy()
        for k in range(1, margin + 1):
            ahead, behind = [slice(None)] * 2, [slice(None)] * 2
            ahead[axis], behind[axis] = slice(k, None), slice(None, -k)
            np.minimum(nearest[tuple(ahead)], source[tuple(behind)], out=nearest[tuple(ahead)])
            np.minimum(nearest[tuple(behind)], source[tuple(ahead)], out=nearest[tuple(behind)])
    return np.where(has_depth, nearest, 0.0).astype(np.float16)


def coarse_intrinsics(K: np.ndarray, block: int) -> np.ndarray:
    """The 3 x 3 intrinsics of the tile grid of ``coarse_depth``: a point projecting into pixel
    (u, v) projects into tile (u // block, v // block)."""
    K = np.asarray(K, np.float64)
    scale = np.diag([1.0 / block, 1.0 / block, 1.0])
    tiles = scale @ K
    tiles[:2, 2] = (K[:2, 2] + 0.5) / block - 0.5
    return tiles
