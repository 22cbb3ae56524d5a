"""Voxels an object does not own (scene.trim) on generated objects, hand-built records and a mapped scene."""
from __future__ import annotations

import numpy as np
import pytest

from lift3d.voxels import keys_of_points
from scene.map import InstanceMap, MapMetadata, MapObject
from scene.trim import owned_voxels, stray_voxels, trim_strays


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _chair(rng, rotation=np.eye(3)):
    """A 0.7 x 0.8 x 0.5 m seat and back, a thin leg 0.4 m under it, a rim of its edges (all owned, the
    rim and leg seen in few frames) and 40 voxels of floor 1 m off that only masks lying mostly on the
    floor held (not owned). Returns points, owned, and the index of each part (0 body, 1 rim, 2 leg,
    3 spill)."""
    body = rng.uniform([0.0, 0.0, 0.4], [0.7, 0.8, 0.9], (3000, 3))
    rim = np.stack([rng.uniform(0.0, 0.7, 200), np.full(200, 0.79), rng.uniform(0.4, 0.9, 200)], 1)
    leg = np.stack([np.full(60, 0.02), np.full(60, 0.02), np.linspace(0.0, 0.4, 60)], 1)
    spill = rng.uniform([-1.0, -0.3, 0.0], [-0.9, -0.2, 0.04], (40, 3))
    points = np.concatenate([body, rim, leg, spill]) @ rotation.T
    part = np.repeat([0, 1, 2, 3], [3000, 200, 60, 40])
    return points, part < 3, part


@pytest.mark.parametrize("angle", [0.0, 0.6])
def test_a_spill_far_from_the_body_goes_its_rims_and_thin_leg_stay_whatever_the_frame(angle):
    rng = np.random.default_rng(0)
    points, owned, part = _chair(rng, _rotation(angle))
    stray = stray_voxels(points, owned, 0.02, 2.0)
    assert stray[part == 3].all() and not stray[part < 3].any()
    assert not stray_voxels(points, np.ones(len(points), bool), 0.02, 2.0).any()  # all owned: nothing goes
    assert not stray_voxels(points[:2], owned[:2], 0.02, 2.0).any()  # no body to measure against


def test_a_spill_inside_the_body_box_stays():
    rng = np.random.default_rng(2)
    points, owned, _ = _chair(rng)
    inside = rng.uniform([0.1, 0.1, 0.5], [0.6, 0.7, 0.8], (30, 3))  # masks of a neighbour, but no box changes
    points = np.concatenate([points, inside])
    owned = np.concatenate([owned, np.zeros(30, bool)])
    stray = stray_voxels(points, owned, 0.02, 2.0)
    assert stray.sum() == 40 and not stray[-30:].any()


def test_owned_voxels_from_hand_built_records():
    # refined voxels 10, 11 (object 5) and 20, 21 (object 7); segments 0 (object 5: keys 10, 11),
    # 1 (object 7: keys 20, 11: it spilled onto 11, which object 5 owns anyway) and 2 (object 5: key 21,
    # a spill of object 5's masks onto a voxel that went to object 7 and that no segment of 7 holds)
    rows = np.array([0, 0, 1, 1, 2])
    keys = np.array([10, 11, 20, 11, 21])
    keys_out, owned = owned_voxels(rows, keys, np.array([5, 7, 5]), np.array([21, 10, 20, 11]),
                                   np.array([7, 5, 7, 5]))
    assert keys_out.tolist() == [10, 11, 20, 21]
    assert owned.tolist() == [True, True, True, False]
    assert owned_voxels(rows[:0], keys[:0], np.zeros(0, np.int64), np.array([3]), np.array([1]))[1].tolist() == [False]


def test_trimming_a_map_keeps_ids_confidences_and_flags_and_fits_the_box_to_the_body():
    rng = np.random.default_rng(1)
    points, owned, part = _chair(rng)
    points = points.astype(np.float32)
    imap = InstanceMap(MapMetadata(voxel_size=0.02))
    imap.add(MapObject.from_points(3, points, weights=np.full(len(points), 5, np.float32), confidence=0.7,
                                   num_observations=15))
    imap.add(MapObject.from_points(4, points + np.float32(5.0), confidence=0.6))  # voxels unknown: owned
    point_keys = keys_of_points(points, 0.02)
    unowned = np.unique(point_keys[~owned])
    keys = np.unique(point_keys)
    dropped = trim_strays(imap, keys, ~np.isin(keys, unowned), 2.0)
    assert dropped == {3: 40}
    chair = imap.get(3)
    assert chair.num_points == 3260 and chair.confidence == 0.7 and chair.num_observations == 15
    body = points[part < 3]
    assert np.allclose(chair.aabb_min, body.min(0)) and np.allclose(chair.aabb_max, body.max(0))
    assert imap.get(4).num_points == len(points)
    assert trim_strays(imap, keys, ~np.isin(keys, unowned), 2.0) == {}  # nothing left to trim


def test_the_refined_map_drops_a_neighbours_surface_that_merged_masks_spilled_and_only_when_asked():
    """Ground-truth masks with 30% of adjacent pairs merged per frame: an object's merged masks spill
    onto its neighbour; what the trim drops is that neighbour's surface, and nothing else changes. The
    refinement starts from the online objects, as it does for the default (weight-free) masks: from
    single segments ("auto" for ground-truth masks) the consensus leaves those spills out itself."""
    from dataclasses import replace

    from scipy.spatial import cKDTree

    from scene.config import MapperConfig
    from scene.datasets.synthetic import make_scene
    from scene.pipeline import Mapper
    from segment2d.degrade import DegradeConfig, DegradedMaskGenerator
    from segment2d.factory import make_generator

    scene = make_scene("tabletop", seed=0, noisy=True, num_frames=8, width=320, height=240)
    maps = []
    for trim in (False, True):
        masks = DegradedMaskGenerator(make_generator("ground-truth"), DegradeConfig(merge_rate=0.3), seed=0)
        config = MapperConfig()
        config = replace(config, trim_unowned=trim, refine=replace(config.refine, from_online=True))
        mapper = Mapper(config, generator=masks)
        for frame in scene.frames():
            mapper.integrate(frame)
        maps.append(mapper.finalize())
        mapper.close()
    plain, trimmed = maps
    gt = scene.gt_points()
    nearest = cKDTree(gt.xyz)
    assert sorted(o.id for o in plain) == sorted(o.id for o in trimmed)
    dropped = 0
    for obj in plain:
        kept = trimmed.get(obj.id)
        assert kept.confidence == obj.confidence and kept.is_structure == obj.is_structure
        gone = ~np.isin(obj.points.view("V12"), kept.points.view("V12")).ravel()
        assert kept.num_points == obj.num_points - gone.sum()  # a subset of the points
        if gone.any():
            gt_ids = gt.ids[nearest.query(obj.points)[1]]
            own = np.bincount(gt_ids[~gone]).argmax()  # the GT object the kept points lie on
            assert (gt_ids[gone] != own).mean() > 0.9
            dropped += gone.sum()
    assert dropped > 0
