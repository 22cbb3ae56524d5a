"""Back-projection and projection on the analytic box scene (non-identity pose)."""
from __future__ import annotations

import numpy as np
import pytest

from lift3d import backproject, backproject_masks, project
from test_lift3d_scene import DEFAULT_POSE, WALL_Z, BoxScene, intrinsics, render


@pytest.fixture(scope="module")
def view():
    K, scene = intrinsics(), BoxScene()
    depth, ids, color = render(scene, K, DEFAULT_POSE)
    return scene, K, depth, ids


def test_backprojected_points_project_back_to_their_pixels(view):
    scene, K, depth, _ = view
    points, pixels = backproject(depth, K, DEFAULT_POSE)
    assert points.dtype == np.float32 and pixels.dtype == np.int64
    assert pixels.size == np.count_nonzero(depth)
    uv, z = project(points, K, DEFAULT_POSE)
    v, u = np.divmod(pixels, depth.shape[1])
    np.testing.assert_allclose(uv[:, 0], u, atol=2e-3)
    np.testing.assert_allclose(uv[:, 1], v, atol=2e-3)
    np.testing.assert_allclose(z, depth.reshape(-1)[pixels], rtol=1e-5)


def test_world_coordinates_lie_on_the_true_surfaces(view):
    scene, K, depth, ids = view
    points, pixels = backproject(depth, K, DEFAULT_POSE)
    assert np.all(scene.distance(points.astype(np.float64)) < 1e-5)
    wall = ids.reshape(-1)[pixels] == 0
    np.testing.assert_allclose(points[wall, 2], WALL_Z, atol=1e-5)
    lo, hi = scene.boxes[0]
    box = points[ids.reshape(-1)[pixels] == 1]
    assert np.all((box >= lo - 1e-5) & (box <= hi + 1e-5))


def test_mask_stride_and_depth_range_select_pixels(view):
    _, K, depth, ids = view
    points, pixels = backproject(depth, K, DEFAULT_POSE, mask=ids == 1, stride=3, depth_range=(0.1, 2.2))
    v, u = np.divmod(pixels, depth.shape[1])
    assert pixels.size > 50
    assert np.all(v % 3 == 0) and np.all(u % 3 == 0)
    assert np.all(ids.reshape(-1)[pixels] == 1)
    assert np.all(depth.reshape(-1)[pixels] <= 2.2)
    expected = (ids == 1) & (depth <= 2.2) & (depth >= 0.1)
    assert pixels.size == expected[::3, ::3].sum()


def test_batched_lifting_equals_per_mask_lifting(view):
    _, K, depth, ids = view
    rng = np.random.default_rng(3)
    masks = np.stack([ids == 1, ids == 2, ids == 0, rng.random(depth.shape) < 0.3, np.zeros_like(ids, bool)])
    points, mask_ids, pixels = backproject_masks(depth, K, DEFAULT_POSE, masks, stride=2)
    for i, mask in enumerate(masks):
        ref_points, ref_pixels = backproject(depth, K, DEFAULT_POSE, mask=mask, stride=2)
        np.testing.assert_array_equal(pixels[mask_ids == i], ref_pixels)
        np.testing.assert_array_equal(points[mask_ids == i], ref_points)
    assert np.all(np.diff(mask_ids) >= 0)


def test_bad_inputs_raise_clear_errors(view):
    _, K, depth, _ = view
    with pytest.raises(ValueError, match="depth"):
        backproject(depth.astype(np.uint16), K, DEFAULT_POSE)
    with pytest.raises(ValueError, match="pose"):
        backproject(depth, K, np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="K must"):
        backproject(depth, np.eye(2), DEFAULT_POSE)
    with pytest.raises(ValueError, match="mask shape"):
        backproject(depth, K, DEFAULT_POSE, mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="masks must be"):
        backproject_masks(depth, K, DEFAULT_POSE, np.ones((2, 3, 3), bool))
