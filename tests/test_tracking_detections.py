"""The post-filter's detection grouping gives the same objects whether rows are grouped by a lexsort of
(cluster, key) or by one integer code over dense voxel numbers (the global pass's fast path)."""
from __future__ import annotations

import numpy as np

from lift3d.voxels import group_int64, pack_keys
from tracking.config import RefineConfig
from tracking.postfilter import _detections, filter_objects


def _rows(seed: int):
    rng = np.random.default_rng(seed)
    cells = rng.integers(-40, 40, (3000, 3))
    cells[:, 2] = rng.integers(0, 4, 3000)  # a few slabs, so clusters touch and overlap
    keys = pack_keys(cells)[rng.integers(0, 3000, 20000)]
    clusters = rng.integers(0, 12, keys.size)
    distinct, _, voxel, _ = group_int64(keys)
    seen = rng.integers(1, 9, distinct.size)[voxel]
    return clusters, keys, seen, voxel


def test_detections_by_code_equal_detections_by_lexsort():
    for seed in range(3):
        clusters, keys, seen, voxel = _rows(seed)
        slow = _detections(clusters, keys, seen, 0.3)
        fast = _detections(clusters, keys, seen, 0.3, voxel)
        assert slow[0].size > 100 and slow[0].size < keys.size  # repeats grouped, some rows dropped by the ratio
        for a, b in zip(slow, fast):
            np.testing.assert_array_equal(a, b)


def test_filter_objects_is_the_same_with_dense_voxel_rows():
    clusters, keys, seen, voxel = _rows(7)
    config = RefineConfig(min_area=0.002)  # about five 2 cm voxels
    slow = filter_objects(clusters, keys, seen, 0.02, config)
    fast = filter_objects(clusters, keys, seen, 0.02, config, voxel)
    assert slow.origin.size > 3
    for a, b in ((slow.keys, fast.keys), (slow.object, fast.object), (slow.origin, fast.origin)):
        np.testing.assert_array_equal(a, b)
