"""Exports: instance PLYs (read back by Open3D), mesh PLYs, vertex files, ScanNet predictions, JSON summary."""
import json

import numpy as np
import pytest

from scene.eval.scannet_format import read_predictions
from scene.export import (
    export_scannet, instance_colors, read_ply_vertex_properties, read_vertices, summary, write_instance_ply,
    write_mesh_ply, write_summary_json,
)
from scene.map import InstanceMap, MapObject

o3d = pytest.importorskip("open3d")


def blob_map(seed: int = 0, n_objects: int = 6) -> InstanceMap:
    rng = np.random.default_rng(seed)
    imap = InstanceMap()
    for k in range(n_objects):
        n = int(rng.integers(30, 120))
        imap.add(MapObject(10 + 7 * k, rng.normal(size=(n, 3)) * 0.1 + rng.uniform(0, 3, 3),
                           rng.integers(0, 256, (n, 3)), confidence=float(rng.random())))
    return imap


def test_instance_ply_reads_back_in_open3d(tmp_path):
    imap = blob_map()
    ids = np.concatenate([np.full(o.num_points, o.id) for o in imap])
    points = np.concatenate([o.points for o in imap])
    path = write_instance_ply(imap, tmp_path / "map.ply")
    cloud = o3d.t.io.read_point_cloud(str(path))
    np.testing.assert_array_equal(cloud.point.positions.numpy(), points)
    np.testing.assert_array_equal(cloud.point.instance.numpy().reshape(-1), ids)
    np.testing.assert_array_equal(cloud.point.colors.numpy(), instance_colors(ids))
    legacy = o3d.io.read_point_cloud(str(write_instance_ply(imap, tmp_path / "rgb.ply", color_by="rgb")))
    assert len(legacy.points) == imap.num_points
    np.testing.assert_allclose(np.asarray(legacy.colors) * 255, np.concatenate([o.colors for o in imap]), atol=1e-6)


def test_instance_colors_distinguish_ids():
    colors = instance_colors(np.arange(50))
    assert len({tuple(c) for c in colors}) == 50
    np.testing.assert_array_equal(instance_colors(np.array([-1])), [[0, 0, 0]])


def test_mesh_ply_keeps_triangles_colours_and_ids(tmp_path):
    mesh = o3d.geometry.TriangleMesh.create_box(1.0, 2.0, 0.5)
    vertices, triangles = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    ids = np.arange(len(vertices)) % 3 - 1
    colors = np.random.default_rng(1).integers(0, 256, (len(vertices), 3)).astype(np.uint8)
    path = write_mesh_ply(tmp_path / "mesh.ply", vertices, triangles, colors, ids)
    back = o3d.t.io.read_triangle_mesh(str(path))
    np.testing.assert_array_equal(back.triangle.indices.numpy(), triangles)
    np.testing.assert_allclose(back.vertex.positions.numpy(), vertices, atol=1e-6)
    np.testing.assert_array_equal(read_ply_vertex_properties(path)["instance"], ids)  # Open3D drops it
    np.testing.assert_allclose(back.vertex.colors.numpy() * 255, colors, atol=1e-3)  # Open3D scales to [0, 1]
    with pytest.raises(ValueError, match="triangles must be T x 3 indices"):
        write_mesh_ply(tmp_path / "bad.ply", vertices, triangles + len(vertices))


def test_read_vertices_from_ply_and_bin(tmp_path):
    imap = blob_map(seed=2)
    points = np.concatenate([o.points for o in imap])
    xyz, rgb = read_vertices(write_instance_ply(imap, tmp_path / "a.ply", color_by="rgb"))
    np.testing.assert_array_equal(xyz, points)
    np.testing.assert_array_equal(rgb, np.concatenate([o.colors for o in imap]))
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    o3d.io.write_point_cloud(str(tmp_path / "ascii.ply"), cloud, write_ascii=True)
    xyz, rgb = read_vertices(tmp_path / "ascii.ply")
    np.testing.assert_allclose(xyz, points, atol=1e-5)  # Open3D writes 6 digits
    assert rgb is None
    with_rgb = np.column_stack([points, np.concatenate([o.colors for o in imap])]).astype("<f4")
    with_rgb.tofile(tmp_path / "six.bin")
    xyz, rgb = read_vertices(tmp_path / "six.bin")
    np.testing.assert_array_equal(xyz, points)
    np.testing.assert_array_equal(rgb, with_rgb[:, 3:])
    points[: len(points) // 2 * 2].astype("<f4").tofile(tmp_path / "three.bin")  # even N: divisible by 6 too
    xyz, rgb = read_vertices(tmp_path / "three.bin")
    assert xyz.shape == (len(points) // 2 * 2, 3) and rgb is None
    (tmp_path / "odd.bin").write_bytes(b"\0" * 20)
    with pytest.raises(ValueError, match=r"odd\.bin: 20 bytes"):
        read_vertices(tmp_path / "odd.bin")


def test_read_vertices_of_the_scannet_scan(shared_set):
    path = shared_set("scannet_scene0448_01") / "points" / "scene0448_01.bin"
    xyz, rgb = read_vertices(path)
    assert xyz.shape == (path.stat().st_size // 24, 3) and rgb.shape == xyz.shape and rgb.dtype == np.uint8
    assert 0.5 < np.ptp(xyz[:, 2]) < 5.0  # a room, in metres


def test_scannet_export_labels_every_vertex(tmp_path, shared_set):
    vertices, _ = read_vertices(shared_set("scannet_scene0448_01") / "points" / "scene0448_01.bin")
    cell = np.floor(vertices[:, :2] / 0.8).astype(np.int64)  # objects = floor cells of a 0.8 m grid
    _, cell_ids = np.unique(cell, axis=0, return_inverse=True)
    imap = InstanceMap()
    for k in np.unique(cell_ids):
        if np.sum(cell_ids == k) > 50:
            imap.add(MapObject(int(k), vertices[cell_ids == k][::2], confidence=0.5 + 0.01 * int(k)))
    scene_file = export_scannet(imap, vertices, tmp_path / "pred", "scene0448_01", max_distance=0.05)
    lines = scene_file.read_text().splitlines()
    assert len(lines) == len(imap)
    for line in lines:
        mask_text = (scene_file.parent / line.split()[0]).read_text()
        assert mask_text.count("\n") == len(vertices)
    predictions = read_predictions(scene_file, len(vertices))
    labels = imap.label_points(vertices, 0.05)
    expected = [labels == i for i in imap.ids]
    np.testing.assert_array_equal(predictions.masks, expected)
    np.testing.assert_allclose(predictions.scores, [imap.get(i).confidence for i in imap.ids])


def test_summary_json_is_valid_and_complete(tmp_path):
    imap = blob_map(seed=3)
    imap.add_frame(0, np.eye(4))
    imap.record_remap({99: 10})
    path = write_summary_json(imap, tmp_path / "summary.json")
    data = json.loads(path.read_text())
    assert data == json.loads(json.dumps(summary(imap)))
    assert data["num_objects"] == len(imap) and data["num_frames"] == 1 and data["id_remap"] == {"99": 10}
    for entry, obj in zip(data["objects"], imap):
        assert entry["id"] == obj.id and entry["num_points"] == obj.num_points
        np.testing.assert_allclose(entry["centroid"], obj.centroid)
        np.testing.assert_allclose(entry["obb"]["rotation"], obj.obb_rotation)
        assert all(lo <= hi for lo, hi in zip(entry["aabb_min"], entry["aabb_max"]))
