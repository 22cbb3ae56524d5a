"""Few-observation voxels sticking out of an object's body (scene.trim) on generated objects."""
from __future__ import annotations

import numpy as np
import pytest

from scene.map import InstanceMap, MapMetadata, MapObject
from scene.parts import PartConfig
from scene.trim import stray_voxels, trim_strays


def _chair(rng, rotation=np.eye(3)):
    """A 0.7 x 0.8 x 0.8 m chair seen in ~15 frames: its body, a rim of its edges seen in 4 (real
    surface, inside the body's box) and 40 flying pixels seen in 3, 1 m off. Returns points, hits and
    the index of each part (0 body, 1 rim, 2 strays)."""
    body = rng.uniform([0.0, 0.0, 0.0], [0.7, 0.8, 0.8], (3000, 3))
    rim = np.stack([rng.uniform(0.0, 0.7, 200), np.full(200, 0.79), rng.uniform(0.0, 0.8, 200)], 1)
    strays = rng.uniform([-1.0, -0.3, 0.2], [-0.9, -0.2, 0.3], (40, 3))
    points = np.concatenate([body, rim, strays]) @ rotation.T
    hits = np.concatenate([rng.integers(10, 20, 3000), np.full(200, 4), np.full(40, 3)]).astype(np.float64)
    return points, hits, np.repeat([0, 1, 2], [3000, 200, 40])


@pytest.mark.parametrize("angle", [0.0, 0.6])
def test_strays_far_from_the_body_go_the_rims_stay_whatever_the_frame(angle):
    rng = np.random.default_rng(0)
    c, s = np.cos(angle), np.sin(angle)
    points, hits, part = _chair(rng, np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]))
    stray = stray_voxels(points, hits, 0.02, 0.5, 2.0)
    assert stray[part == 2].all() and not stray[part < 2].any()
    assert not stray_voxels(points, hits, 0.02, 0.2, 2.0).any()  # at 0.2 the strays (3 of ~15) are body
    assert not stray_voxels(points[:2], hits[:2], 0.02, 0.5, 2.0).any()  # no body to measure against


def test_trimming_a_map_keeps_ids_confidences_and_flags_and_shrinks_the_box():
    rng = np.random.default_rng(1)
    points, hits, part = _chair(rng)
    imap = InstanceMap(MapMetadata(voxel_size=0.02))
    imap.add(MapObject.from_points(3, points.astype(np.float32), weights=hits.astype(np.float32), confidence=0.7,
                                   num_observations=15))
    imap.add(MapObject.from_points(4, points.astype(np.float32), confidence=0.6))  # no hit counts: left alone
    assert trim_strays(imap, 0.5, 2.0) == {3: 40}
    chair = imap.get(3)
    assert chair.num_points == 3200 and chair.confidence == 0.7 and chair.num_observations == 15
    assert chair.aabb_min[0] >= 0.0 and imap.get(4).num_points == 3240
    assert trim_strays(imap, 0.5, 2.0) == {}  # nothing left to trim


def test_trim_share_is_checked():
    assert PartConfig().trim_share == 0.0
    with pytest.raises(ValueError, match="trim_share"):
        PartConfig(trim_share=1.5)


def test_the_refined_map_is_trimmed_only_when_asked():
    from dataclasses import replace

    from scene.config import MapperConfig
    from scene.datasets.synthetic import make_scene
    from scene.pipeline import Mapper

    scene = make_scene("tabletop", seed=0, noisy=True, num_frames=8, width=320, height=240)
    maps = []
    for share in (0.0, 1.0):  # 1.0 and a margin of a hundredth of a voxel: every object's rims go
        config = MapperConfig()
        mapper = Mapper(replace(config, parts=replace(config.parts, trim_share=share, contact_voxels=0.01)))
        for frame in scene.frames():
            mapper.integrate(frame)
        maps.append(mapper.finalize())
        mapper.close()
    plain, trimmed = maps
    assert sorted(o.id for o in plain) == sorted(o.id for o in trimmed)
    fewer = 0
    for obj in plain:
        kept = trimmed.get(obj.id)
        assert kept.confidence == obj.confidence and kept.is_structure == obj.is_structure
        assert kept.num_points <= obj.num_points
        assert np.isin(kept.points.view("V12"), obj.points.view("V12")).all()  # a subset of the points
        fewer += kept.num_points < obj.num_points
    assert fewer > 0
