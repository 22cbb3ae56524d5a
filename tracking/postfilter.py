"""Post-filters that turn clusters of segments into clean objects on the fine voxel grid.

1. per-voxel detection ratio: a cluster keeps a voxel detected (by its segments) in more than
   ``detection_ratio`` of the frames whose surface held it;
2. exclusive voxels: each voxel goes to the cluster that detected it most;
3. containment: a cluster that lost >= ``contain_share`` of its voxels to one other joins it;
4. disconnected parts holding >= ``split_min_share`` of an object split off (cells of ``split_gap / 2``
   metres, 26-connected); smaller parts stay;
5. objects whose surface area is under ``min_area`` dropped (``lift3d.area.projected_areas``: the area their
   voxels cover on their principal plane, the same whether depth filled one voxel layer or three).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lift3d.area import projected_areas
from lift3d.split import grouped_cell_components
from lift3d.voxels import unpack_keys

from .config import RefineConfig
from .consensus import distinct_counts
from .export import dominant_per_voxel


@dataclass
class VoxelObjects:
    """``keys`` V int64 (sorted), ``object`` V int64: the owning object (dense 0..O-1) of each voxel;
    ``origin``: per object, the cluster it came from."""

    keys: np.ndarray
    object: np.ndarray
    origin: np.ndarray


def filter_objects(cluster_rows: np.ndarray, keys: np.ndarray, seen: np.ndarray, voxel_size: float,
                   config: RefineConfig = RefineConfig(), voxel_rows: np.ndarray | None = None) -> VoxelObjects:
    """``cluster_rows``/``keys``: (cluster, voxel key) detection rows, one per segment voxel (repeats count
    detections); ``seen``: per row, the frames whose surface held that voxel. No rows (nothing lifted, or
    no cluster kept a segment) gives no objects: an empty map is a valid result. ``voxel_rows``: optional
    dense voxel number of each row, increasing with the key (``VoxelTable.of_seg``): the rows are then
    grouped by one radix sort of an integer code instead of a two-key lexsort (same result)."""
    if keys.size == 0:
        empty = np.zeros(0, np.int64)
        return VoxelObjects(empty, empty.copy(), empty.copy())
    detected = _detections(cluster_rows, keys, seen, config.detection_ratio, voxel_rows)
    own_keys, owner, _ = dominant_per_voxel(detected[1], detected[0], detected[2])
    owner = _absorb_contained(detected, own_keys, owner, config.contain_share)
    parts = _split_parts(own_keys, owner, voxel_size, config.split_gap, config.split_min_share)
    keep = projected_areas(own_keys, parts, voxel_size)[parts] >= config.min_area
    dense, origin = _densify(parts[keep], owner[keep])
    return VoxelObjects(own_keys[keep], dense, origin)


def _detections(cluster_rows, keys, seen, ratio, voxel_rows=None):
    """Distinct (cluster, key) pairs with their detection count, kept above the detection ratio."""
    if voxel_rows is None:
        order = np.lexsort((keys, cluster_rows))
        c, k = cluster_rows[order], keys[order]
        start = np.r_[True, (c[1:] != c[:-1]) | (k[1:] != k[:-1])]
        count = np.bincount(np.cumsum(start) - 1)
        first = order[start]
        c, k, s = cluster_rows[first], keys[first], seen[first]
    else:
        # The rows come segment by segment, each a sorted run of voxels of one cluster: a stable sort of
        # the codes takes the runs whole (no argsort, no inverse), and each distinct code's key and
        # count of frames seeing it are read per voxel (scene0113_00: 5M rows, 0.5 CPU-s less)
        voxels = int(voxel_rows.max()) + 1
        codes, count = distinct_counts(cluster_rows * voxels + voxel_rows)
        key_of, seen_of = np.zeros(voxels, np.int64), np.zeros(voxels, seen.dtype)
        key_of[voxel_rows], seen_of[voxel_rows] = keys, seen
        c, voxel = np.divmod(codes, voxels)
        k, s = key_of[voxel], seen_of[voxel]
    count, s = count.astype(np.float64), np.maximum(s, 1)
    keep = np.minimum(count, s) > ratio * s
    return c[keep], k[keep], count[keep]


def _absorb_contained(detected, own_keys, owner, share):
    """Clusters that kept less than 1 - ``share`` of their detected voxels join the cluster that took most."""
    clusters, keys, _ = detected
    n = int(clusters.max(initial=-1)) + 1
    total = np.bincount(clusters, minlength=n)
    kept = np.bincount(owner, minlength=n)
    taken_by = owner[np.searchsorted(own_keys, keys)]
    lost = taken_by != clusters
    absorbed = (total > 0) & (kept < (1.0 - share) * total)
    if not absorbed.any():
        return owner
    target = np.arange(n)
    pair_code = clusters[lost] * n + taken_by[lost]
    codes, counts = np.unique(pair_code[absorbed[clusters[lost]]], return_counts=True)
    src, dst = np.divmod(codes, n)
    order = np.lexsort((-counts, src))
    first = np.r_[True, src[order][1:] != src[order][:-1]]
    target[src[order][first]] = dst[order][first]
    for _ in range(8):  # follow short chains (a absorbed by b absorbed by c)
        target = target[target]
    return target[owner]


def _split_parts(keys, owner, voxel_size, gap, min_share):
    """Dense part id per voxel: each object's spatially connected parts holding >= ``min_share`` of its
    voxels; smaller parts stay with the object's largest part (thin links lost to filtering are not splits)."""
    if gap is None or keys.size == 0:
        return np.unique(owner, return_inverse=True)[1].reshape(-1)
    ratio = max(1, int(round(gap / 2 / voxel_size)))
    part = grouped_cell_components(owner, np.floor_divide(unpack_keys(keys), ratio))
    part_size = np.bincount(part)
    part_owner = np.zeros(part_size.size, np.int64)
    part_owner[part] = owner
    owner_size = np.bincount(owner)
    order = np.lexsort((-part_size, part_owner))
    first = np.r_[True, part_owner[order][1:] != part_owner[order][:-1]]
    largest = np.zeros(owner_size.size, np.int64)
    largest[part_owner[order][first]] = order[first]
    small = part_size < min_share * owner_size[part_owner]
    target = np.where(small, largest[part_owner], np.arange(part_size.size))
    return target[part]


def _densify(parts, owner):
    """Dense object ids (0..O-1) of parts, and the cluster each came from."""
    unique, first, dense = np.unique(parts, return_index=True, return_inverse=True)
    return dense.reshape(-1).astype(np.int64), owner[first]
