"""Visibility classes on hand-made configurations and on the analytic box scene."""
from __future__ import annotations

import numpy as np

from lift3d import (
    FREE,
    NO_DEPTH,
    OCCLUDED,
    OUT_OF_VIEW,
    SURFACE,
    VisibilityConfig,
    backproject,
    classify_points,
    classify_voxels,
    keys_of_points,
)
from test_lift3d_scene import DEFAULT_POSE, BoxScene, intrinsics, pose_from, render


def test_hand_made_points_get_the_expected_classes():
    K = intrinsics(40, 30, 30.0)
    depth = np.full((30, 40), 2.0, np.float32)
    depth[:, :5] = 0.0  # a strip without depth on the left
    pose = pose_from([0.0, 0.3, 0.0], [1.0, 0.5, -0.5])
    centre = np.array([(20 - K[0, 2]) / K[0, 0], (15 - K[1, 2]) / K[1, 1], 1.0])
    left = np.array([(2 - K[0, 2]) / K[0, 0], (15 - K[1, 2]) / K[1, 1], 1.0])
    camera_points = np.array([
        centre * 1.0,  # in front of the 2 m surface
        centre * 2.03,  # within 4 cm of it
        centre * 1.97,
        centre * 3.0,  # behind it
        -centre,  # behind the camera
        [50.0, 0.0, 2.0],  # outside the image
        left * 1.5,  # into the strip without depth
        centre * 9.0,  # beyond the depth range
    ])
    points = camera_points @ pose[:3, :3].T + pose[:3, 3]
    vis = classify_points(points, depth, K, pose)
    expected = [FREE, SURFACE, SURFACE, OCCLUDED, OUT_OF_VIEW, OUT_OF_VIEW, NO_DEPTH, OUT_OF_VIEW]
    np.testing.assert_array_equal(vis.classes, expected)
    assert vis.pixels[0] == 15 * 40 + 20 and vis.pixels[6] == 15 * 40 + 2 and vis.pixels[4] == -1
    np.testing.assert_allclose(vis.z[:4], [1.0, 2.03, 1.97, 3.0], atol=1e-9)


def test_surface_tolerance_grows_with_depth():
    K = intrinsics(40, 30, 30.0)
    pose = np.eye(4)
    ray = np.array([(20 - K[0, 2]) / K[0, 0], (15 - K[1, 2]) / K[1, 1], 1.0])
    near, far = np.full((30, 40), 1.0, np.float32), np.full((30, 40), 6.0, np.float32)
    config = VisibilityConfig(surface_tol=0.04, tol_ref_depth=2.0)
    assert classify_points((ray * 1.07)[None], near, K, pose, config).classes[0] == OCCLUDED
    assert classify_points((ray * 6.07)[None], far, K, pose, config).classes[0] == SURFACE  # tol 12 cm at 6 m
    assert classify_points((ray * 6.2)[None], far, K, pose, config).classes[0] == OCCLUDED


def test_box_scene_surfaces_seen_and_hidden_from_a_second_view():
    K, scene = intrinsics(), BoxScene()
    depth_a, ids_a, _ = render(scene, K, DEFAULT_POSE)
    points, pixels = backproject(depth_a, K, DEFAULT_POSE)
    wall = ids_a.reshape(-1)[pixels] == 0
    vis = classify_points(points, depth_a, K, DEFAULT_POSE)
    assert np.all(vis.classes == SURFACE)
    # the wall behind the boxes, seen from the first view, is occluded by them from the second view
    pose_b = pose_from([0.0, 0.5, 0.0], [-1.2, 0.0, 0.6])
    depth_b, ids_b, _ = render(scene, K, pose_b)
    vis_b = classify_points(points, depth_b, K, pose_b)
    seen_b = vis_b.classes != OUT_OF_VIEW
    hits_box_in_b = np.zeros(points.shape[0], bool)
    hits_box_in_b[seen_b] = ids_b.reshape(-1)[vis_b.pixels[seen_b]] > 0
    occluded_wall = wall & hits_box_in_b
    assert occluded_wall.sum() > 100
    assert np.mean(vis_b.classes[occluded_wall] == OCCLUDED) > 0.99
    free_probe = points[wall] + (pose_b[:3, 3] - points[wall]) * 0.1  # 10% of the way to camera b
    probe_vis = classify_points(free_probe, depth_b, K, pose_b)
    visible_wall = (vis_b.classes[wall] == SURFACE) & (probe_vis.classes != OUT_OF_VIEW)
    assert visible_wall.sum() > 100 and np.all(probe_vis.classes[visible_wall] == FREE)


def test_voxel_centres_classify_like_points():
    K = intrinsics(40, 30, 30.0)
    depth = np.full((30, 40), 2.0, np.float32)
    points = np.array([[0.011, 0.013, 1.0], [0.011, 0.013, 2.001], [0.011, 0.013, 2.5]])
    vis = classify_voxels(keys_of_points(points, 0.02), 0.02, depth, K, np.eye(4))
    np.testing.assert_array_equal(vis.classes, [FREE, SURFACE, OCCLUDED])
    assert classify_points(np.zeros((0, 3)), depth, K, np.eye(4)).classes.shape == (0,)
