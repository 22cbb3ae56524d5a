"""Surface area of voxelised objects: the same for a surface in one voxel layer (exact depth) or three (noise)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from lift3d.area import projected_areas
from lift3d.voxels import keys_of_points, pack_keys
from tracking import RefineConfig
from tracking.postfilter import filter_objects

VOXEL = 0.02


def _patch(rng, side, depth_noise, rotation=None, centre=(1.0, 2.0, 0.5), n=40000):
    """Distinct voxel keys of a square surface patch (``side`` metres), with Gaussian noise across it."""
    points = np.c_[rng.uniform(0, side, n), rng.uniform(0, side, n), rng.normal(0, depth_noise, n)]
    if rotation is not None:
        points = points @ Rotation.from_euler("xyz", rotation, degrees=True).as_matrix().T
    return np.unique(keys_of_points(points + centre, VOXEL))


@pytest.mark.parametrize("rotation", [None, (30, 20, 10)])
def test_a_surface_has_one_area_however_many_voxel_layers_it_fills(rotation):
    rng = np.random.default_rng(0)
    exact, noisy = _patch(rng, 0.3, 0.0, rotation), _patch(rng, 0.3, 0.01, rotation)
    assert noisy.size > 2.0 * exact.size  # a voxel count sees noise as size
    areas = [projected_areas(k, np.zeros(k.size, np.int64), VOXEL)[0] for k in (exact, noisy)]
    assert areas == pytest.approx([0.09, 0.09], rel=0.25)
    assert abs(areas[0] - areas[1]) < 0.25 * 0.09


def test_areas_are_per_group_and_empty_groups_have_none():
    rng = np.random.default_rng(1)
    big, small = _patch(rng, 0.4, 0.0), _patch(rng, 0.1, 0.0, centre=(3.0, 0.0, 0.0))
    keys = np.concatenate([small, big])
    groups = np.r_[np.full(small.size, 2), np.zeros(big.size, np.int64)]
    areas = projected_areas(keys, groups, VOXEL, num_groups=4)
    assert areas[0] == pytest.approx(0.16, rel=0.15) and areas[2] == pytest.approx(0.01, rel=0.3)
    assert areas[1] == 0 and areas[3] == 0
    assert projected_areas(np.zeros(0, np.int64), np.zeros(0, np.int64), VOXEL, num_groups=2).tolist() == [0, 0]


def test_a_line_of_voxels_has_the_area_of_its_cells():
    keys = pack_keys(np.c_[np.arange(20), np.zeros(20), np.zeros(20)].astype(np.int64))
    assert projected_areas(keys, np.zeros(20, np.int64), VOXEL)[0] == pytest.approx(20 * VOXEL ** 2)


def test_the_refined_size_test_keeps_a_small_object_under_exact_depth_as_under_noisy_depth():
    """A 13 cm patch: ~45 voxels in one layer, ~130 in three; under the former 60-voxel limit only the noisy
    one survived. By area both are kept, and a 6 cm patch is dropped in both."""
    rng = np.random.default_rng(2)
    config = RefineConfig(min_area=0.012, split_gap=None, detection_ratio=0.0)
    kept = {}
    for name, side, noise in (("exact", 0.13, 0.0), ("noisy", 0.13, 0.01), ("tiny exact", 0.06, 0.0),
                              ("tiny noisy", 0.06, 0.01)):
        keys = _patch(rng, side, noise)
        out = filter_objects(np.zeros(keys.size, np.int64), keys, np.ones(keys.size, np.int64), VOXEL, config)
        kept[name] = (keys.size, out.keys.size == keys.size)
    assert kept["exact"][0] < 60 <= kept["noisy"][0]
    assert kept["exact"][1] and kept["noisy"][1]
    assert not kept["tiny exact"][1] and not kept["tiny noisy"][1]
