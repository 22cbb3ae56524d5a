"""Surface area of voxelised objects, independent of how many voxel layers a surface fills.

A voxel count measures a surface times its thickness: exact depth (a mesh rendering, a clean scanner) puts a
surface into one layer of voxels, sensor noise into two or three, so one object has two to three times the
voxels under noisy depth. A size test on voxel counts therefore keeps small objects under noisy depth that it
drops under exact depth. The area here projects each object's voxel centres onto its principal plane (the
plane of its two largest extents, from the covariance of its centres) and counts the distinct voxel-sized
cells they cover: layers stacked across the surface fall into the same cells. For a flat object it is the
surface area; for a curved one its footprint seen along its thinnest direction (a ball: its disc).
"""
from __future__ import annotations

import numpy as np

from .voxels import unpack_keys


def projected_areas(keys: np.ndarray, groups: np.ndarray, voxel_size: float,
                    num_groups: int | None = None) -> np.ndarray:
    """Per group (dense ids 0..G-1 in ``groups``, one per voxel key), the area (m^2) covered by its voxels
    projected onto its principal plane, at ``voxel_size`` cells. Groups without voxels get 0."""
    groups = np.asarray(groups, np.int64).reshape(-1)
    n = int(num_groups) if num_groups is not None else int(groups.max(initial=-1)) + 1
    if groups.size == 0:
        return np.zeros(n, np.float64)
    cells = unpack_keys(np.asarray(keys, np.int64)).astype(np.float64)
    centred = cells - _group_means(cells, groups, n)[groups]
    plane = _principal_planes(centred, groups, n)
    u = np.floor(np.einsum("ij,ij->i", centred, plane[groups, 0]) + 0.5).astype(np.int64)
    v = np.floor(np.einsum("ij,ij->i", centred, plane[groups, 1]) + 0.5).astype(np.int64)
    span = int(max(np.abs(u).max(), np.abs(v).max())) * 2 + 1
    code = np.sort((groups * span + (u + span // 2)) * span + (v + span // 2))  # sorting: np.unique hashes, slower
    distinct = code[np.r_[True, code[1:] != code[:-1]]] // (span * span)
    return np.bincount(distinct, minlength=n).astype(np.float64) * float(voxel_size) ** 2


def _group_means(cells: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    count = np.maximum(np.bincount(groups, minlength=n), 1).astype(np.float64)
    return np.stack([np.bincount(groups, weights=cells[:, a], minlength=n) for a in range(3)], axis=1) / count[:, None]


def _principal_planes(centred: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """G x 2 x 3: per group the unit axes of its two largest extents (eigenvectors of the covariance of its
    ``centred`` cells)."""
    covariance = np.empty((n, 3, 3))
    for a in range(3):
        for b in range(a, 3):
            covariance[:, a, b] = covariance[:, b, a] = np.bincount(groups, weights=centred[:, a] * centred[:, b],
                                                                    minlength=n)
    _, vectors = np.linalg.eigh(covariance)  # ascending eigenvalues: columns 1 and 2 span the plane
    return np.transpose(vectors[:, :, 1:], (0, 2, 1))[:, ::-1]
