"""Readers and format detection: real shared sets, generated layouts (TUM, ScanNet export, project),
bad input, and the start/stop/stride / indexing interface."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from scene.datasets import (
    DatasetError, ProjectSource, TUMSource, detect_format, open_dataset,
)
from scene.datasets.io import depth_to_metres, read_matrix, resize_color_to, scale_intrinsics

# name -> (detected format, frames, (H, W), (fx, fy, cx, cy)) as documented in ../shared/data/README.md
SHARED_SETS = {
    "scannet_scene0448_01": ("scannet-posed", 296, (480, 640), (1170.187988 * 640 / 1296, 1170.187988 * 480 / 968,
                                                                (647.75 + 0.5) * 640 / 1296 - 0.5,
                                                                (483.75 + 0.5) * 480 / 968 - 0.5)),
    "7scenes_redkitchen": ("7scenes", 200, (480, 640), (585.0, 585.0, 320.0, 240.0)),
    "3dmatch_studyroom": ("7scenes", 5, (480, 640), (570.342205, 570.342205, 320.0, 240.0)),
    "replica_office0": ("replica", 4, (680, 1200), (600.0, 600.0, 599.5, 339.5)),
    "iclnuim_livingroom": ("redwood", 5, (480, 640), (525.0, 525.0, 319.5, 239.5)),
}


def quiet_open(path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_dataset(path, **options)


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), image)


def write_matrix(path: Path, matrix: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, matrix, fmt="%.17g")


def link_tree(src: Path, dst: Path) -> Path:
    """A copy of ``src`` whose files are symlinks (cheap, and /work/shared is never written)."""
    shutil.copytree(src, dst, copy_function=lambda s, d: Path(d).symlink_to(Path(s).resolve()))
    return dst


def replace_with_copy(path: Path) -> None:
    """Turn a symlinked file into a real copy so a test may modify it."""
    target = path.resolve()
    path.unlink()
    shutil.copyfile(target, path)


# -- real data ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SHARED_SETS))
def test_shared_set_loads_with_detected_format(shared_set, name):
    fmt, count, hw, (fx, fy, cx, cy) = SHARED_SETS[name]
    source = quiet_open(shared_set(name))
    assert source.format_name == fmt and detect_format(shared_set(name)) == fmt
    assert len(source) == count
    frame = source[len(source) // 2]
    assert frame.depth.shape == hw and frame.color.shape == (*hw, 3)
    assert frame.color.dtype == np.uint8 and frame.color.std() > 10
    np.testing.assert_allclose(frame.K, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], atol=1e-4)
    valid = frame.depth[frame.depth > 0]
    assert valid.size > 0.5 * frame.depth.size
    assert 0.2 < np.percentile(valid, 1) and np.percentile(valid, 99) < 10.0


def test_colour_is_rgb_not_bgr(shared_set):
    """Replica colour is lossless-ish JPG: compare with PIL's decoder, which returns RGB."""
    from PIL import Image

    source = quiet_open(shared_set("replica_office0"))
    frame = source[0]
    pil = np.asarray(Image.open(frame.meta["color_path"]).convert("RGB"))
    assert np.mean(np.abs(frame.color.astype(np.int16) - pil.astype(np.int16))) < 2.0


def test_scannet_inf_poses_skipped_with_one_warning(shared_set):
    with pytest.warns(UserWarning, match="skipped 4 of 300") as record:
        source = open_dataset(shared_set("scannet_scene0448_01"))
    assert len(record) == 1 and source.skipped_invalid_pose == 4
    assert {105, 234, 298, 299}.isdisjoint(source[k].index for k in (104, 105, 231, -1))
    assert source[-1].index == 297


def test_scannet_depth_intrinsics_option(shared_set):
    source = quiet_open(shared_set("scannet_scene0448_01"), intrinsics="depth", stop=2)
    expected = read_matrix(shared_set("scannet_scene0448_01") / "intrinsic_depth.txt", (4, 4))[:3, :3]
    np.testing.assert_allclose(source[0].K, expected)


def test_sparse_frame_numbers_give_index_and_timestamp(shared_set):
    source = open_dataset(shared_set("3dmatch_studyroom"), format="3dmatch")
    assert [source[k].index for k in range(len(source))] == [0, 1, 2, 116, 422]
    assert source[3].timestamp == pytest.approx(116 / 30)
    assert source[0].meta["sequence"] == "seq-01"


def test_seven_scenes_invalid_depth_is_zero(shared_set):
    frame = quiet_open(shared_set("7scenes_redkitchen"))[0]
    raw = cv2.imread(frame.meta["depth_path"], cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(frame.depth == 0, (raw == 0) | (raw == 65535))
    np.testing.assert_allclose(frame.depth[raw == 1000], 1.0)


def test_start_stop_stride_and_random_access(shared_set):
    root = shared_set("7scenes_redkitchen")
    full = quiet_open(root)
    part = quiet_open(root, start=2, stop=20, stride=3)
    assert part.raw_indices == list(range(2, 20, 3)) and len(part) == 6
    assert [f.index for f in part] == [5 * i for i in range(2, 20, 3)]  # every 5th frame is on disk
    np.testing.assert_array_equal(part[-1].depth, full[17].depth)
    np.testing.assert_array_equal(part[-6].pose, full[2].pose)
    np.testing.assert_array_equal(part.poses[1], full[5].pose)
    for bad in (6, -7, 100):
        with pytest.raises(IndexError):
            part[bad]
    assert len(quiet_open(root, start=195, stop=10_000)) == 5


def test_sequence_folder_itself_opens(shared_set):
    """Replica's ``office0/`` (cam_params.json one level up) and ScanNet's ``posed_images/`` open directly."""
    whole, seq = quiet_open(shared_set("replica_office0")), quiet_open(shared_set("replica_office0") / "office0")
    assert seq.format_name == "replica" and len(seq) == len(whole)
    np.testing.assert_array_equal(seq[3].depth, whole[3].depth)
    posed = quiet_open(shared_set("scannet_scene0448_01") / "posed_images", stop=2)
    assert posed.format_name == "scannet-posed" and len(posed) == 2


def test_redwood_alternative_trajectory(shared_set):
    source = open_dataset(shared_set("iclnuim_livingroom"), trajectory="odometry.log")
    np.testing.assert_allclose(source[0].pose[:3, 3], [2.0, 2.0, -0.3])
    assert source.trajectory_path.name == "odometry.log"


# -- io helpers -----------------------------------------------------------------------------------------
def test_depth_to_metres_zeroes_invalid_values():
    raw = np.array([[0, 1000, 65535], [2500, 1, 0]], dtype=np.uint16)
    np.testing.assert_allclose(depth_to_metres(raw, 1000.0), [[0, 1, 0], [2.5, 0.001, 0]], rtol=1e-6)
    floats = np.array([np.nan, np.inf, -1.0, 3.0], dtype=np.float32)
    np.testing.assert_array_equal(depth_to_metres(floats, 1.0, ()), [0, 0, 0, 3.0])
    assert depth_to_metres(raw, 1000.0).dtype == np.float32


def test_scaled_intrinsics_follow_cv2_resize():
    """A bright dot projected with K, shrunk by cv2, lands where the scaled K projects it."""
    K = np.array([[1170.0, 0, 647.75], [0, 1170.0, 483.75], [0, 0, 1]])
    point = np.array([0.31, -0.17, 2.0])
    u, v = (K @ point)[:2] / point[2]
    ys, xs = np.mgrid[0:968, 0:1296]
    blob = np.exp(-((xs - u) ** 2 + (ys - v) ** 2) / (2 * 6.0**2))
    image = np.repeat((blob * 255).astype(np.uint8)[..., None], 3, axis=2)
    small = resize_color_to(image, (480, 640))[..., 0].astype(np.float64)
    K2 = scale_intrinsics(K, (968, 1296), (480, 640))
    u2, v2 = (K2 @ point)[:2] / point[2]
    ys2, xs2 = np.mgrid[0:480, 0:640]
    centroid = np.array([(small * xs2).sum(), (small * ys2).sum()]) / small.sum()
    np.testing.assert_allclose(centroid, [u2, v2], atol=0.05)


def test_read_matrix_errors_name_the_file(tmp_path):
    path = tmp_path / "pose.txt"
    path.write_text("1 0 0\n0 1 0\n")
    with pytest.raises(DatasetError, match=r"pose\.txt.*4x4"):
        read_matrix(path, (4, 4))
    path.write_text("1 0 x 0\n" * 4)
    with pytest.raises(DatasetError, match=r"pose\.txt.*not a numeric"):
        read_matrix(path, (4, 4))
    with pytest.raises(DatasetError, match=r"missing\.txt.*missing"):
        read_matrix(tmp_path / "missing.txt", (4, 4))


# -- bad input on a tmp copy (Redwood layout: small 640x480 images) --------------------------------------
@pytest.fixture
def icl_copy(shared_set, tmp_path) -> Path:
    return link_tree(shared_set("iclnuim_livingroom"), tmp_path / "icl")


def test_missing_image_is_named(icl_copy):
    (icl_copy / "color" / "00002.jpg").unlink()
    source = open_dataset(icl_copy)  # rgbd.match still lists it: the error comes on access
    source[1]
    with pytest.raises(DatasetError, match=r"00002\.jpg: image file is missing"):
        source[2]


def test_undecodable_image_is_named(icl_copy):
    (icl_copy / "depth" / "00001.png").unlink()
    (icl_copy / "depth" / "00001.png").write_bytes(b"\x89PNG garbage" * 100)
    with pytest.raises(DatasetError, match=r"00001\.png: cannot decode"):
        open_dataset(icl_copy)[1]


def test_colour_depth_count_mismatch(icl_copy):
    (icl_copy / "rgbd.match").unlink()
    (icl_copy / "color" / "00004.jpg").unlink()
    with pytest.raises(DatasetError, match="4 colour images in color/ but 5 in depth/"):
        open_dataset(icl_copy)


def test_depth_must_be_single_channel_16_bit(icl_copy):
    three_channel = np.zeros((480, 640, 3), dtype=np.uint16)
    (icl_copy / "depth" / "00000.png").unlink()
    write_png(icl_copy / "depth" / "00000.png", three_channel)
    (icl_copy / "depth" / "00001.png").unlink()
    write_png(icl_copy / "depth" / "00001.png", np.zeros((480, 640), dtype=np.uint8))
    source = open_dataset(icl_copy)
    with pytest.raises(DatasetError, match=r"00000\.png: depth must be a single-channel"):
        source[0]
    with pytest.raises(DatasetError, match=r"00001\.png: depth must be 16-bit"):
        source[1]


def test_colour_with_wrong_aspect_is_rejected(icl_copy):
    (icl_copy / "color" / "00000.jpg").unlink()
    write_png(icl_copy / "color" / "00000.jpg", np.full((200, 640, 3), 128, dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"00000\.jpg: colour is 640x200 but depth is 640x480"):
        open_dataset(icl_copy)[0]


def test_missing_intrinsics_file_is_named(icl_copy):
    (icl_copy / "camera_primesense.json").unlink()
    with pytest.raises(DatasetError, match=r"intrinsics file is missing.*camera_primesense\.json"):
        open_dataset(icl_copy)
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    np.testing.assert_array_equal(open_dataset(icl_copy, K=K)[0].K, K)


def test_non_rigid_pose_skips_frame_with_one_warning(icl_copy):
    log = icl_copy / "trajectory.log"
    replace_with_copy(log)
    lines = log.read_text().splitlines()
    lines[5 * 2 + 1] = " ".join(str(2.0 * float(x)) for x in lines[5 * 2 + 1].split())  # scale a rotation row
    lines[5 * 3 + 2] = "nan nan nan nan"
    log.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="skipped 2 of 5") as record:
        source = open_dataset(icl_copy)
    assert len(record) == 1
    assert [f.index for f in source] == [0, 1, 4]


def test_truncated_trajectory_is_rejected(icl_copy):
    log = icl_copy / "trajectory.log"
    replace_with_copy(log)
    log.write_text("\n".join(log.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(DatasetError, match=r"trajectory\.log.*groups of 5"):
        open_dataset(icl_copy)


def test_replica_colour_without_depth_and_garbage_jpg(shared_set, tmp_path):
    root = link_tree(shared_set("replica_office0"), tmp_path / "replica")
    results = root / "office0" / "results"
    (results / "frame000001.jpg").unlink()
    (results / "frame000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"frame000001\.jpg: cannot decode"):
        open_dataset(root)[1]
    (results / "depth000003.png").unlink()
    with pytest.raises(DatasetError, match=r"frame000003\.jpg \(colour\) has no depth partner"):
        open_dataset(root)


def test_unknown_layout_lists_the_formats_checked(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DatasetError) as err:
        open_dataset(tmp_path)
    for name in ("project", "scannet-posed", "scannet", "tum", "replica", "7scenes", "redwood"):
        assert f"{name}:" in str(err.value)
    with pytest.raises(DatasetError, match="not a directory"):
        open_dataset(tmp_path / "absent")
    with pytest.raises(ValueError, match="unknown format"):
        open_dataset(tmp_path, format="kitti")


# -- ScanNet SensReader export, built from the posed_images frames --------------------------------------
@pytest.fixture
def scannet_export(shared_set, tmp_path) -> Path:
    posed = shared_set("scannet_scene0448_01") / "posed_images"
    root = tmp_path / "scene0448_01"
    for sub in ("color", "depth", "pose", "intrinsic"):
        (root / sub).mkdir(parents=True)
    for n in range(3):
        for sub, ext in (("color", "jpg"), ("depth", "png"), ("pose", "txt")):
            (root / sub / f"{n}.{ext}").symlink_to(posed / f"{n:05d}.{ext}")
    shutil.copyfile(posed / "intrinsic.txt", root / "intrinsic" / "intrinsic_color.txt")
    return root


def test_scannet_export_derives_depth_intrinsics_from_colour(shared_set, scannet_export):
    source = open_dataset(scannet_export)
    assert source.format_name == "scannet" and len(source) == 3
    posed = quiet_open(shared_set("scannet_scene0448_01"), stop=3)
    for mine, ref in zip(source, posed):
        np.testing.assert_allclose(mine.K, ref.K)
        np.testing.assert_array_equal(mine.depth, ref.depth)
        np.testing.assert_array_equal(mine.pose, ref.pose)
    shutil.copyfile(shared_set("scannet_scene0448_01") / "intrinsic_depth.txt",
                    scannet_export / "intrinsic" / "intrinsic_depth.txt")
    np.testing.assert_allclose(open_dataset(scannet_export)[0].K[1, 2], 242.683609)


def test_scannet_export_without_intrinsics(scannet_export):
    (scannet_export / "intrinsic" / "intrinsic_color.txt").unlink()
    with pytest.raises(DatasetError, match=r"intrinsics file is missing.*intrinsic_depth\.txt"):
        open_dataset(scannet_export)


def test_scannet_export_missing_pose_file(scannet_export):
    (scannet_export / "pose" / "1.txt").unlink()
    with pytest.raises(DatasetError, match=r"pose/1\.txt: matrix file is missing"):
        open_dataset(scannet_export)


# -- TUM, written from three ICL-NUIM frames -----------------------------------------------------------
def tum_line(t: float, pose: np.ndarray) -> str:
    q = Rotation.from_matrix(pose[:3, :3]).as_quat()  # x y z w, TUM's order
    return f"{t:.6f} " + " ".join(f"{x:.17g}" for x in (*pose[:3, 3], *q))


def write_tum(root: Path, frames, times: np.ndarray) -> None:
    """TUM layout: depth at ``times``, rgb 5 ms later plus one stray rgb; ground truth exact for frames
    0 and 2, interpolated for frame 1."""
    rgb_lines, depth_lines = ["# color images", "# timestamp filename"], ["# depth maps"]
    for frame, t in zip(frames, times):
        write_png(root / "rgb" / f"{t:.6f}.png", frame.color)
        write_png(root / "depth" / f"{t:.6f}.png", np.round(frame.depth * 5000).astype(np.uint16))
        rgb_lines.append(f"{t + 0.005:.6f} rgb/{t:.6f}.png")
        depth_lines.append(f"{t:.6f} depth/{t:.6f}.png")
    rgb_lines.append(f"{times[-1] + 0.5:.6f} rgb/missing.png")
    # Frame 1's samples sit 15 ms before and 45 ms after it (weight 0.25), moved by -1 and +3 steps of
    # one motion: only a correct interpolation lands on the true pose (the nearest sample is 15 ms off).
    step = Rotation.from_rotvec([0.0, 0.01, 0.0025]).as_matrix()
    before, after = frames[1].pose.copy(), frames[1].pose.copy()
    before[:3, :3], after[:3, :3] = before[:3, :3] @ step.T, after[:3, :3] @ np.linalg.matrix_power(step, 3)
    before[:3, 3] -= [0.01, 0.0, 0.005]
    after[:3, 3] += [0.03, 0.0, 0.015]
    gt = [tum_line(times[0], frames[0].pose), tum_line(times[1] - 0.015, before),
          tum_line(times[1] + 0.045, after), tum_line(times[2], frames[2].pose)]
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    (root / "groundtruth.txt").write_text("# timestamp tx ty tz qx qy qz qw\n" + "\n".join(gt) + "\n")


def test_tum_reproduces_the_frames(shared_set, tmp_path):
    frames = list(open_dataset(shared_set("iclnuim_livingroom"), stop=3))
    times = 1305031102.0 + np.array([0.0, 0.1, 0.2])
    root = tmp_path / "rgbd_dataset_freiburg2_icl"
    write_tum(root, frames, times)
    source = open_dataset(root, K=frames[0].K)
    assert source.format_name == "tum" and len(source) == 3
    for mine, ref, t in zip(source, frames, times):
        np.testing.assert_array_equal(mine.color, ref.color)
        np.testing.assert_allclose(mine.depth, ref.depth, atol=1e-4)
        # 1e-6: float64 timestamps near 1.3e9 s carry ~2e-7 s, which shifts the interpolation weight
        np.testing.assert_allclose(mine.pose, ref.pose, atol=1e-6)
        assert mine.timestamp == pytest.approx(t)
    np.testing.assert_array_equal(source[0].K, frames[0].K)
    assert open_dataset(root).K[0, 0] == 520.9  # freiburg2 from the folder name


def test_tum_frame_without_ground_truth_is_skipped(shared_set, tmp_path):
    frames = list(open_dataset(shared_set("iclnuim_livingroom"), stop=3))
    root = tmp_path / "tum"
    write_tum(root, frames, np.array([10.0, 10.1, 10.2]))
    gt = root / "groundtruth.txt"
    gt.write_text("\n".join(gt.read_text().splitlines()[:2]) + "\n")  # header + frame 0 only
    with pytest.warns(UserWarning, match="skipped 2 of 3"):
        source = TUMSource(root)
    assert len(source) == 1 and source[0].K[0, 0] == 525.0


# -- the project layout -------------------------------------------------------------------------------
def write_project(root: Path, n: int = 3) -> dict:
    """A tiny scene in the docs/layout.md format; returns what was written."""
    rng = np.random.default_rng(7)
    K = [[40.0, 0.0, 15.5], [0.0, 40.0, 11.5], [0.0, 0.0, 1.0]]
    written = {"color": [], "depth": [], "pose": [], "instance": []}
    for i in range(n):
        color = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        depth = rng.integers(0, 4000, (24, 32), dtype=np.uint16)
        pose = np.eye(4)
        pose[:3, :3] = Rotation.from_rotvec([0.0, 0.1 * i, 0.0]).as_matrix()
        pose[:3, 3] = [0.1 * i, 0.0, 1.0]
        ids = rng.integers(0, 5, (24, 32), dtype=np.uint16)
        write_png(root / "color" / f"{i:06d}.png", color)
        write_png(root / "depth" / f"{i:06d}.png", depth)
        write_matrix(root / "pose" / f"{i:06d}.txt", pose)
        write_png(root / "instance" / f"{i:06d}.png", ids)
        for key, value in zip(written, (color, depth, pose, ids)):
            written[key].append(value)
    meta = {"format": "scene-rgbd", "version": 1, "num_frames": n, "width": 32, "height": 24, "K": K,
            "depth_scale": 1000.0, "fps": 10.0}
    (root / "scene.json").write_text(json.dumps(meta))
    return written


def test_project_layout_round_trip(tmp_path):
    written = write_project(tmp_path)
    source = open_dataset(tmp_path)
    assert isinstance(source, ProjectSource) and len(source) == 3
    for i, frame in enumerate(source):
        np.testing.assert_array_equal(frame.color, written["color"][i])
        np.testing.assert_allclose(frame.depth, written["depth"][i] / 1000.0, rtol=1e-6)
        np.testing.assert_allclose(frame.pose, written["pose"][i], atol=1e-12)
        assert frame.instance_ids.dtype == np.int32
        np.testing.assert_array_equal(frame.instance_ids, written["instance"][i])
        assert frame.timestamp == pytest.approx(i / 10.0)
    assert source.gt_points() is None and source.gt_objects() is None
    assert ProjectSource(tmp_path, load_instances=False)[0].instance_ids is None


def test_project_ground_truth(tmp_path):
    write_project(tmp_path)
    xyz = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    ids = np.arange(50, dtype=np.int32) % 4
    (tmp_path / "gt").mkdir()
    np.savez(tmp_path / "gt" / "points.npz", xyz=xyz, ids=ids, colors=np.zeros((50, 3), np.uint8))
    objects = [{"id": 1, "kind": "box", "is_structure": False, "aabb_min": [0, 0, 0], "aabb_max": [1, 1, 1],
                "color": [255, 0, 0], "note": "extra"}]
    (tmp_path / "gt" / "objects.json").write_text(json.dumps(objects))
    source = ProjectSource(tmp_path)
    points = source.gt_points()
    np.testing.assert_array_equal(points.xyz, xyz)
    np.testing.assert_array_equal(points.ids, ids)
    (obj,) = source.gt_objects()
    assert obj.id == 1 and obj.kind == "box" and not obj.is_structure and obj.extra == {"note": "extra"}
    np.testing.assert_array_equal(obj.aabb_max, [1, 1, 1])
    np.savez(tmp_path / "gt" / "points.npz", xyz=xyz, ids=ids[:10], colors=np.zeros((50, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"points\.npz: shapes"):
        source.gt_points()


def test_project_bad_input(tmp_path):
    write_project(tmp_path)
    (tmp_path / "color" / "000001.png").unlink()
    with pytest.raises(DatasetError, match=r"color: scene.json says 3 frames.*first missing 000001"):
        open_dataset(tmp_path)
    write_project(tmp_path)
    meta = json.loads((tmp_path / "scene.json").read_text())
    (tmp_path / "scene.json").write_text(json.dumps({**meta, "version": 2}))
    with pytest.raises(DatasetError, match="unsupported layout version"):
        open_dataset(tmp_path)
    (tmp_path / "scene.json").write_text(json.dumps({**meta, "width": 64}))
    with pytest.raises(DatasetError, match=r"000000\.png: depth is 32x24, scene.json says 64x24"):
        open_dataset(tmp_path)[0]


@pytest.mark.slow
def test_project_reader_reads_the_synthetic_writer(tmp_path):
    """Integration with scene.datasets.synthetic: what write_scene writes reads back frame for frame."""
    synthetic = pytest.importorskip("scene.datasets.synthetic")
    scene = synthetic.make_scene("room", seed=0, noisy=True, num_frames=2)
    write_scene_dir = synthetic.write_scene(scene, tmp_path / "room")
    source = open_dataset(write_scene_dir)
    assert source.format_name == "project"
    for mine, ref in zip(source, scene.frames()):
        np.testing.assert_array_equal(mine.color, ref.color)
        np.testing.assert_allclose(mine.depth, ref.depth, atol=0.5 / 1000 + 1e-6)  # mm quantisation
        np.testing.assert_array_equal(mine.pose, ref.pose)
        np.testing.assert_array_equal(mine.K, ref.K)
        np.testing.assert_array_equal(mine.instance_ids, ref.instance_ids)
    xyz, ids, _ = source.gt_points()
    points = scene.gt_points()
    observed = scene.gt_observed(points)  # the writer keeps the surfaces some frame sees
    ref_xyz, ref_ids = points.xyz[observed], points.ids[observed]
    np.testing.assert_array_equal(xyz, ref_xyz)
    assert {o.id for o in source.gt_objects()} >= set(np.unique(ref_ids[ref_ids > 0]).tolist())
