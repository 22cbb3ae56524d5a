"""Two-view stereo depth (``lift3d.stereo``) against true depth on a synthetic scene, partner choice,
and the CLI's stereo mode."""
from __future__ import annotations

import numpy as np
import pytest

from lift3d.stereo import StereoConfig, StereoDepthSource, choose_partner, stereo_depth


@pytest.fixture(scope="module")
def room():
    from scene.datasets.synthetic import make_scene

    return make_scene("room", seed=0, noisy=False, num_frames=48, width=320, height=240)


def test_stereo_depth_agrees_with_true_depth(room):
    source = StereoDepthSource(room.source())
    checked = 0
    relative = []
    for k in range(0, 48, 6):
        frame = source[k]
        if frame.meta["stereo_partner"] < 0:
            continue
        truth = room.render_clean(k).depth
        both = (frame.depth > 0) & (truth > 0)
        relative.append(np.abs(frame.depth[both] - truth[both]) / truth[both])
        checked += 1
    relative = np.concatenate(relative)
    assert checked >= 4
    # The synthetic walls are barely textured: few pixels match, but those that pass the check are right.
    assert len(relative) > 0.03 * checked * room.width * room.height
    assert np.median(relative) < 0.05 and np.mean(relative < 0.10) > 0.7


def test_partner_is_sideways_and_in_range():
    poses = np.repeat(np.eye(4)[None], 5, axis=0)
    poses[1, 0, 3] = 0.15  # sideways
    poses[2, 2, 3] = 0.15  # forward: no disparity after rectification
    poses[3, 0, 3] = 2.0  # too far
    poses[4, 0, 3] = 0.01  # too close
    assert choose_partner(poses, 0, StereoConfig(search=5)) == 1
    assert choose_partner(poses[[0, 2, 3, 4]], 0, StereoConfig(search=5)) is None


def test_vertical_baseline_is_refused():
    colour = np.zeros((48, 64, 3), np.uint8)
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    up = np.eye(4)
    up[1, 3] = 0.2
    with pytest.raises(ValueError, match="vertical"):
        stereo_depth(colour, colour, K, np.eye(4), up)


def test_cli_maps_posed_rgb_with_stereo_depth(room, tmp_path):
    from scene.app.cli import main
    from scene.datasets.synthetic import write_scene
    from scene.storage import MapStore

    write_scene(room, tmp_path / "data", frames=(room.frame(i) for i in range(16)), instances=False, gt=False)
    out = tmp_path / "map.sqlite"
    assert main(["run", str(tmp_path / "data"), "--depth", "stereo", "--out", str(out), "--quiet",
                 "--max-frames", "16"]) == 0
    with MapStore(out, read_only=True) as store:
        assert len(store.load()) > 0


def test_estimates_fuse_only_where_they_agree():
    from lift3d.stereo import fuse_estimates

    a = np.array([[2.0, 2.0, 0.0, 3.0]], np.float32)
    b = np.array([[2.02, 2.5, 4.0, 0.0]], np.float32)
    fused = fuse_estimates([a, b], agreement=0.03)
    # agreeing: the mean; disagreeing: none; seen by one partner only: that estimate
    assert np.allclose(fused, [[2.01, 0.0, 4.0, 3.0]], atol=1e-6)


def test_planar_segments_are_filled_from_their_plane_and_others_left_alone():
    from lift3d.stereo import fill_planar_segments

    h, w = 120, 160
    K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
    v, u = np.mgrid[0:h, 0:w]
    x, y = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
    plane = 1.0 / (0.2 * x + 0.1 * y + 0.4)  # a slanted wall: inverse depth affine in (x, y)
    color = np.zeros((h, w, 3), np.uint8)
    color[:, : w // 2] = (200, 180, 160)  # left half: the textureless wall
    color[:, w // 2:] = (20, 60, 200)  # right half: another surface, not planar
    rng = np.random.default_rng(0)
    depth = np.zeros((h, w), np.float32)
    sparse = rng.random((h, w)) < 0.25
    left = u < w // 2
    depth[sparse & left] = plane[sparse & left]
    bumpy = 2.0 + 0.5 * rng.random((h, w))
    depth[sparse & ~left] = bumpy[sparse & ~left]
    filled = fill_planar_segments(depth, color, K, StereoConfig(segment_min_size=50))
    inner = left & (u < w // 2 - 2)
    got = inner & (filled > 0)
    assert np.mean(got[inner]) > 0.98 and np.allclose(filled[got], plane[got], rtol=1e-3)
    assert np.array_equal(filled[~left] > 0, depth[~left] > 0)  # not a plane: unmatched pixels stay empty
