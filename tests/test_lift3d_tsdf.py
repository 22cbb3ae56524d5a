"""TSDF fusion of the analytic box scene: the mesh lies on the true surfaces and carries their colours."""
from __future__ import annotations

import numpy as np
import pytest

from lift3d import TSDFFusion
from test_lift3d_scene import BOX_COLORS, WALL_COLOR, BoxScene, intrinsics, pose_from, render

VOXEL = 0.03


@pytest.fixture(scope="module")
def fused():
    K, scene = intrinsics(), BoxScene()
    fusion = TSDFFusion(voxel_size=VOXEL, trunc=4 * VOXEL)
    views = [
        ([0.0, 0.0, 0.0], [0.1, 0.0, 0.0]),
        ([0.05, 0.2, 0.0], [-0.5, -0.1, 0.1]),
        ([-0.05, -0.2, 0.02], [0.7, 0.1, 0.0]),
    ]
    for rotvec, position in views:
        pose = pose_from(rotvec, position)
        depth, _, color = render(scene, K, pose)
        fusion.integrate_arrays(depth, K, pose, color)
    return scene, fusion


def test_mesh_vertices_lie_on_the_true_surfaces(fused):
    scene, fusion = fused
    vertices, triangles, colors = fusion.extract_mesh()
    assert len(vertices) > 1000 and len(triangles) > 1000
    assert vertices.dtype == np.float32 and triangles.dtype == np.int64 and colors.dtype == np.uint8
    assert triangles.max() < len(vertices)
    distance = scene.distance(vertices.astype(np.float64))
    assert np.percentile(distance, 99) < VOXEL and np.median(distance) < VOXEL / 4


def test_mesh_colours_match_the_surfaces(fused):
    scene, fusion = fused
    vertices, _, colors = fusion.extract_mesh()
    lo, hi = scene.boxes[0]
    inside_face = np.all((vertices[:, :2] > lo[:2] + 0.05) & (vertices[:, :2] < hi[:2] - 0.05), 1)
    on_front_face = (np.abs(vertices[:, 2] - lo[2]) < 0.005) & inside_face
    on_wall = np.abs(vertices[:, 2] - 3.0) < 0.005
    assert on_front_face.sum() > 20 and on_wall.sum() > 100
    assert np.abs(colors[on_front_face].astype(int) - BOX_COLORS[0]).max() <= 3
    assert np.median(np.abs(colors[on_wall].astype(int) - WALL_COLOR)) <= 3


def sorted_rows(a):
    return a[np.lexsort(a.T[::-1])]


def test_point_cloud_and_save_load_round_trip(fused, tmp_path):
    scene, fusion = fused
    points, colors = fusion.extract_point_cloud()
    assert len(points) > 1000 and len(colors) == len(points)
    assert np.percentile(scene.distance(points.astype(np.float64)), 99) < VOXEL
    fusion.save(tmp_path / "grid.npz")
    loaded = TSDFFusion.load(tmp_path / "grid.npz")
    assert loaded.config.voxel_size == pytest.approx(VOXEL)
    np.testing.assert_allclose(sorted_rows(loaded.extract_mesh()[0]), sorted_rows(fusion.extract_mesh()[0]))
    with pytest.raises(ValueError, match="npz"):
        fusion.save(tmp_path / "grid.bin")
    with pytest.raises(FileNotFoundError, match="no such file"):
        TSDFFusion.load(tmp_path / "missing.npz")


def test_empty_fusion_extracts_nothing():
    vertices, triangles, colors = TSDFFusion().extract_mesh()
    assert vertices.shape == (0, 3) and triangles.shape == (0, 3) and colors.shape == (0, 3)


def test_one_frame_is_enough_and_depth_only_frames_keep_colours():
    K, scene = intrinsics(), BoxScene()
    pose = pose_from([0.0, 0.0, 0.0], [0.1, 0.0, 0.0])
    depth, _, color = render(scene, K, pose)
    fusion = TSDFFusion(voxel_size=VOXEL)
    fusion.integrate_arrays(depth, K, pose, color)
    vertices, _, colors = fusion.extract_mesh()
    assert len(vertices) > 500
    fusion.integrate_arrays(depth, K, pose)  # no colour
    vertices_after, _, colors_after = fusion.extract_mesh()
    on_wall = np.abs(vertices_after[:, 2] - 3.0) < 0.005
    assert on_wall.sum() > 100
    assert np.median(np.abs(colors_after[on_wall].astype(int) - WALL_COLOR)) <= 3
