"""Scan reading and checks (``lift3d.scan_io``): real ScanNet / Replica files, round trips, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from lift3d.scan_io import ScanError, ScanGeometry, check_scan, find_scan, read_scan
from scene.export import write_mesh_ply


def test_reads_scannet_points_bin_in_file_order(shared_set):
    root = shared_set("scannet_scene0448_01")
    path = find_scan(root)
    assert path is not None and path.name == "scene0448_01.bin"
    scan = read_scan(path)
    raw = np.fromfile(path, "<f4").reshape(-1, 6)
    assert scan.num_vertices == len(raw) and not scan.is_mesh
    np.testing.assert_array_equal(scan.vertices, raw[:, :3])
    np.testing.assert_array_equal(scan.colors, raw[:, 3:].astype(np.uint8))


def test_reads_binary_mesh_ply_like_open3d(shared_set):
    import open3d as o3d

    path = shared_set("replica_office0") / "office0_mesh.ply"
    with pytest.warns(UserWarning, match="office0_mesh.ply: 21 non-manifold edges"):  # the decimated mesh has some
        scan = read_scan(path)
    reference = o3d.io.read_triangle_mesh(str(path))
    assert scan.is_mesh
    np.testing.assert_allclose(scan.vertices, np.asarray(reference.vertices), atol=1e-6)
    np.testing.assert_array_equal(scan.triangles, np.asarray(reference.triangles))
    np.testing.assert_allclose(scan.colors / 255.0, np.asarray(reference.vertex_colors), atol=1 / 255)


def test_round_trip_through_our_mesh_ply(tmp_path):
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    triangles = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3]], np.int32)
    path = write_mesh_ply(tmp_path / "m.ply", vertices, triangles, instance_ids=np.array([0, 0, 1, 1]))
    scan = read_scan(path)
    np.testing.assert_array_equal(scan.vertices, vertices)
    np.testing.assert_array_equal(scan.triangles, triangles)


def test_ascii_ply_with_faces(tmp_path):
    text = ("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
            "element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    (tmp_path / "a.ply").write_text(text)
    scan = read_scan(tmp_path / "a.ply")
    assert scan.num_vertices == 3 and scan.triangles.tolist() == [[0, 1, 2]] and scan.colors is None


@pytest.mark.parametrize("content, message", [
    (b"", "not a PLY"),
    (b"garbage", "not a PLY"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\nproperty float y\n"
     b"property float z\nend_header\n\x00\x00", "truncated"),
    (b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\nend_header\n",
     "no vertices"),
    (b"ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\nelement face 1\n"
     b"property list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n", "triangle"),
    (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\nelement face 1\n"
     b"property list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n1 1 0\n3 0 1 7\n", "outside"),
    (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
     b"0 nan 0\n1 0 0\n", "non-finite"),
])
def test_bad_ply_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.ply"
    path.write_bytes(content)
    with pytest.raises(ScanError, match=message) as info:
        read_scan(path)
    assert str(path) in str(info.value)


def test_missing_wrong_suffix_and_ragged_bin(tmp_path):
    with pytest.raises(ScanError, match="no such file"):
        read_scan(tmp_path / "nothing.ply")
    (tmp_path / "scan.xyz").write_text("1 2 3")
    with pytest.raises(ScanError, match="unknown extension"):
        read_scan(tmp_path / "scan.xyz")
    (tmp_path / "s.bin").write_bytes(np.zeros(7, np.float32).tobytes())
    with pytest.raises(ScanError, match="not a whole number"):
        read_scan(tmp_path / "s.bin")


def test_huge_and_degenerate_scans_are_refused():
    cloud = ScanGeometry(np.random.default_rng(0).random((50, 3)).astype(np.float32), path="big.ply")
    with pytest.raises(ScanError, match="more than the 10 supported"):
        check_scan(cloud, max_vertices=10)
    with pytest.raises(ScanError, match="coincide"):
        check_scan(ScanGeometry(np.ones((5, 3), np.float32), path="p.ply"))
    with pytest.raises(ScanError, match="expected metres"):
        check_scan(ScanGeometry(np.array([[0, 0, 0], [1e5, 0, 0]], np.float32), path="mm.ply"))
    fan = ScanGeometry(np.random.default_rng(1).random((5, 3)).astype(np.float32), None,
                       np.array([[0, 1, 2], [0, 1, 3], [0, 1, 4]]), "fan.ply")
    with pytest.warns(UserWarning, match="fan.ply: 1 non-manifold edges"):
        assert len(check_scan(fan).triangles) == 3
    faces = ScanGeometry(np.eye(3, dtype=np.float32), None, np.array([[0, 0, 1], [0, 1, 2]]), "f.ply")
    assert check_scan(faces).triangles.tolist() == [[0, 1, 2]]  # the degenerate face is dropped
