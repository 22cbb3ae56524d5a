"""Posed colour images without depth (``datasets.readers.posed_rgb``): folders written from a synthetic
scene in each layout (nerfstudio / instant-ngp ``transforms.json``, a COLMAP text model, ScanNet's
``posed_images`` and 7-Scenes without depth files) read back to the same images, poses and intrinsics;
bad files named; ``scene run`` maps such a folder with stereo depth on its own."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from scene.datasets import DatasetError, detect_format, open_dataset

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def room():
    from scene.datasets.synthetic import make_scene

    return make_scene("room", seed=0, noisy=False, num_frames=24, width=320, height=240)


def _write_png(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(color, cv2.COLOR_RGB2BGR))


def write_transforms(room, root, angle=False):
    frames = []
    for i, frame in enumerate(room.frames()):
        _write_png(root / "images" / f"frame_{i:05d}.png", frame.color)
        frames.append({"file_path": f"images/frame_{i:05d}.png",
                       "transform_matrix": (frame.pose @ OPENGL_TO_OPENCV).tolist()})
    K = room.K
    camera = ({"camera_angle_x": 2 * math.atan(room.width / (2 * K[0, 0]))} if angle else
              {"fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2] + 0.5, "cy": K[1, 2] + 0.5,
               "w": room.width, "h": room.height})
    (root / "transforms.json").write_text(json.dumps({**camera, "frames": frames[::-1]}))  # any order on disk
    return root


def _quaternion(R):
    w = math.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    return np.array([w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)])


def write_colmap(room, root, model="PINHOLE"):
    K = room.K
    params = {"PINHOLE": f"{K[0, 0]} {K[1, 1]} {K[0, 2] + 0.5} {K[1, 2] + 0.5}",
              "SIMPLE_RADIAL": f"{K[0, 0]} {K[0, 2] + 0.5} {K[1, 2] + 0.5} 0.0"}[model]
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (sparse / "cameras.txt").write_text(f"# Camera list\n1 {model} {room.width} {room.height} {params}\n")
    lines = ["# Image list with two lines of data per image:"]
    for i, frame in enumerate(room.frames()):
        _write_png(root / "images" / f"{i:04d}.png", frame.color)
        world_to_camera = np.linalg.inv(frame.pose)
        q, t = _quaternion(world_to_camera[:3, :3]), world_to_camera[:3, 3]
        lines += [f"{i + 1} {' '.join(repr(float(v)) for v in q)} {' '.join(repr(float(v)) for v in t)} 1 {i:04d}.png", "1.0 2.0 -1"]
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    return root


def write_scannet_without_depth(room, root):
    folder = root / "posed_images"
    for i, frame in enumerate(room.frames()):
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), cv2.cvtColor(frame.color, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 98])
        np.savetxt(folder / f"{i:05d}.txt", frame.pose)
    K4 = np.eye(4)
    K4[:3, :3] = room.K
    np.savetxt(folder / "intrinsic.txt", K4)
    return root


def write_seven_scenes_without_depth(room, root):
    root.mkdir(parents=True)
    for i, frame in enumerate(room.frames()):
        _write_png(root / f"frame-{i:06d}.color.png", frame.color)
        np.savetxt(root / f"frame-{i:06d}.pose.txt", frame.pose)
    np.savetxt(root / "camera-intrinsics.txt", room.K)
    return root


WRITERS = {"transforms": write_transforms, "colmap": write_colmap, "scannet-posed": write_scannet_without_depth,
           "7scenes": write_seven_scenes_without_depth}


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_each_layout_reads_back_images_poses_and_intrinsics(room, tmp_path, layout):
    root = WRITERS[layout](room, tmp_path / layout)
    assert detect_format(root) == "posed-rgb"
    source = open_dataset(root)
    assert source.layout == layout and not source.has_depth and len(source) == len(room)
    for k in (0, 7, 23):
        frame, truth = source[k], room.frame(k)
        assert np.allclose(frame.pose, truth.pose, atol=1e-6), layout
        assert np.allclose(frame.K, room.K, atol=1e-6), layout
        assert frame.color.shape == truth.color.shape and not np.any(frame.depth)
        assert np.mean(np.abs(frame.color.astype(int) - truth.color)) < (3 if layout == "scannet-posed" else 0.01)


def test_instant_ngp_camera_angle_and_downscaled_images(room, tmp_path):
    root = write_transforms(room, tmp_path / "ngp", angle=True)
    source = open_dataset(root, max_width=160)
    frame = source[3]
    assert frame.color.shape == (120, 160, 3)
    # camera_angle_x gives the focal; the principal point is the image centre, both scaled to 160 wide
    assert np.isclose(frame.K[0, 0], room.K[0, 0] / 2, rtol=1e-6) and np.isclose(frame.K[0, 2], 79.5)
    assert np.allclose(frame.pose, room.frame(3).pose, atol=1e-6)


def test_scale_converts_pose_units_to_metres(room, tmp_path):
    root = write_colmap(room, tmp_path / "c")
    frame = open_dataset(root, scale=2.0)[5]
    assert np.allclose(frame.pose[:3, 3], 2.0 * room.frame(5).pose[:3, 3], atol=1e-6)
    assert np.allclose(frame.pose[:3, :3], room.frame(5).pose[:3, :3], atol=1e-6)


def test_distorted_colmap_camera_is_undistorted(room, tmp_path):
    root = write_colmap(room, tmp_path / "radial", model="SIMPLE_RADIAL")
    cameras = root / "sparse" / "0" / "cameras.txt"
    cameras.write_text(cameras.read_text().replace(" 0.0\n", " 0.05\n"))
    frame = open_dataset(root)[2]
    truth = room.frame(2).color
    # the centre is unmoved by radial distortion, the corners move
    centre = (slice(100, 140), slice(140, 180))
    assert np.mean(np.abs(frame.color[centre].astype(int) - truth[centre])) < 2
    assert not np.array_equal(frame.color, truth)


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "transforms.json").write_text("{not json"), "not readable JSON"),
    (lambda r: (r / "transforms.json").write_text(json.dumps({"frames": []})), "no 'frames' list"),
    (lambda r: (r / "transforms.json").write_text(json.dumps({"fl_x": 300, "w": 320, "h": 240, "frames": [
        {"file_path": "images/frame_00000.png", "transform_matrix": [[1, 0], [0, 1]]}]})), "must be 4x4"),
])
def test_bad_transforms_json_is_named(room, tmp_path, damage, message):
    root = write_transforms(room, tmp_path / "t")
    damage(root)
    with pytest.raises(DatasetError, match=message) as info:
        open_dataset(root)
    assert "transforms.json" in str(info.value)


def test_bad_colmap_files_are_named(room, tmp_path):
    root = write_colmap(room, tmp_path / "c")
    cameras = root / "sparse" / "0" / "cameras.txt"
    cameras.write_text("1 FISHEYE_X 320 240 1 2 3\n")
    with pytest.raises(DatasetError, match=r"cameras.txt line 1: camera model 'FISHEYE_X' is not supported"):
        open_dataset(root)
    cameras.write_text(f"2 PINHOLE 320 240 {room.K[0, 0]} {room.K[1, 1]} 160 120\n")
    with pytest.raises(DatasetError, match=r"images.txt line 2: camera 1 is not in"):
        open_dataset(root)


def test_missing_image_and_bad_pose_are_named(room, tmp_path):
    root = write_colmap(room, tmp_path / "c")
    images = root / "sparse" / "0" / "images.txt"
    lines = images.read_text().splitlines()
    lines[1] = "1 0 0 0 0 0 0 0 1 0000.png"  # a zero quaternion: not a pose
    images.write_text("\n".join(lines) + "\n")
    (root / "images" / "0005.png").unlink()
    with pytest.warns(UserWarning, match=r"skipped 1 of 24 frames .*images.txt line 2"):
        source = open_dataset(root)
    assert len(source) == 23
    with pytest.raises(DatasetError, match=r"0005.png: image file is missing \(listed by .*images.txt line"):
        source[4]


def test_cli_maps_posed_rgb_with_stereo_depth_on_its_own(room, tmp_path, capsys):
    from scene.app.cli import main
    from scene.storage import MapStore

    root = write_transforms(room, tmp_path / "video")
    out = tmp_path / "map.sqlite"
    assert main(["run", str(root), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "depth by two-view stereo" in err
    store = MapStore(out, read_only=True)
    try:
        imap = store.load()
    finally:
        store.close()
    assert imap.num_frames > 0 and len(imap) > 0
    assert main(["run", str(root), "--out", str(tmp_path / "m2.sqlite"), "--depth", "sensor"]) != 0
    assert "have no depth" in capsys.readouterr().err


def test_cli_labels_a_mesh_from_posed_rgb_with_depth_rendered_from_it(tmp_path):
    from scene.app.cli import main
    from scene.datasets.synthetic import make_scene
    from scene.datasets.synthetic.scan_mesh import scan_mesh
    from scene.export import read_ply_vertex_properties, write_mesh_ply

    tabletop = make_scene("tabletop", seed=0, noisy=False, num_frames=8, width=160, height=120)
    root = write_colmap(tabletop, tmp_path / "video")
    mesh = scan_mesh(tabletop.layout, max_edge=0.05)
    write_mesh_ply(tmp_path / "room.ply", mesh.vertices, mesh.triangles, mesh.colors)
    out = tmp_path / "map.sqlite"
    assert main(["run", str(root), "--scan", str(tmp_path / "room.ply"), "--out", str(out), "--quiet"]) == 0
    ids = read_ply_vertex_properties(tmp_path / "map_scan" / "room.ply")["instance"]
    assert len(ids) == len(mesh.vertices)
    # the labelled vertices' instances mostly coincide with the true ones (each predicted id mostly one GT id)
    labelled = ids >= 0
    assert labelled.mean() > 0.3
    purity = [np.bincount(mesh.instance_ids[ids == i]).max() / np.sum(ids == i) for i in np.unique(ids[labelled])]
    assert np.median(purity) > 0.8


def test_pose_scale_flag_is_checked(room, tmp_path, capsys):
    from pathlib import Path

    from scene.app.cli import main

    root = write_transforms(room, tmp_path / "video")
    assert main(["run", str(root), "--out", str(tmp_path / "a.sqlite"), "--pose-scale", "0"]) != 0
    assert "--pose-scale must be a positive number" in capsys.readouterr().err
    rgbd = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "3dmatch_studyroom"
    if rgbd.is_dir():
        assert main(["run", str(rgbd), "--out", str(tmp_path / "b.sqlite"), "--pose-scale", "2"]) != 0
        assert "only for posed RGB without depth" in capsys.readouterr().err
