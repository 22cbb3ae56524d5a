"""Faults a new user hit, guarded in the lower layers (issue 15), so the Python API is protected and not
only the CLI: an empty map, mis-shaped images for every reader, all poses invalid, two writers on one
map, a map resumed with another sequence, ``Mapper`` over an existing file, viewer ports, packaging."""
from __future__ import annotations

import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

from broken_data import copy_7scenes, copy_redwood, copy_replica, copy_scannet, resize_depth, write_pose
from scene.config import MapperConfig
from scene.datasets import DatasetError, open_dataset
from scene.datasets.synthetic import make_scene
from scene.pipeline import Mapper, SequenceMismatchError, run
from scene.storage import MapStorageError, MapStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene():
    return make_scene("room", seed=0, noisy=True, num_frames=100, width=160, height=120)


@pytest.fixture(scope="module")
def other_scene():
    return make_scene("room", seed=1, noisy=True, num_frames=100, width=160, height=120)


def _frames(scene, n=3):
    return list(scene.source(stop=n))


# ---- 1. an empty map is a valid result --------------------------------------------------------------


def test_frames_without_depth_give_an_empty_saved_map(scene, tmp_path):
    path = tmp_path / "empty.sqlite"
    mapper = Mapper(MapperConfig(), path)
    for frame in _frames(scene):
        frame.depth[:] = 0
        mapper.integrate(frame)
    imap = mapper.finalize()
    mapper.close()
    assert len(imap) == 0 and imap.num_frames == 3 and imap.metadata.extra["refined"] is True
    with MapStore(path, read_only=True) as store:
        saved = store.load()
    assert len(saved) == 0 and saved.num_frames == 3


def test_run_refuses_a_source_without_frames():
    with pytest.raises(ValueError, match="no frame to map"):
        run([], MapperConfig())


# ---- 3, 4: readers ------------------------------------------------------------------------------------


def _half_size_7scenes(shared_set, tmp_path, name):
    root = copy_7scenes(shared_set(name), tmp_path / name, frames=2)
    for depth in root.glob("*.depth.png"):
        resize_depth(depth)
    return root, next(iter(sorted(root.glob("*.depth.png")))).name


@pytest.mark.parametrize("name", ["7scenes_redkitchen", "3dmatch_studyroom"])
def test_7scenes_half_size_depth_is_refused(shared_set, tmp_path, name):
    # 320x240 depth with 640x480 colour: the colour would be shrunk and the 640x480 intrinsics kept.
    root, first = _half_size_7scenes(shared_set, tmp_path, name)
    source = open_dataset(root)
    with pytest.raises(DatasetError, match=rf"{first}: the intrinsics \(.*camera-intrinsics.txt.*320x240"):
        source[0]


def test_7scenes_half_size_depth_with_fitting_intrinsics_is_read(shared_set, tmp_path):
    root, _ = _half_size_7scenes(shared_set, tmp_path, "7scenes_redkitchen")
    K = np.array([[292.5, 0, 159.75], [0, 292.5, 119.75], [0, 0, 1]])
    frame = open_dataset(root, K=K)[0]
    assert frame.depth.shape == (240, 320) and frame.color.shape == (240, 320, 3)


def test_scannet_depth_intrinsics_of_another_size_are_refused(shared_set, tmp_path):
    root = copy_scannet(shared_set("scannet_scene0448_01"), tmp_path / "scannet", frames=2)
    for depth in (root / "posed_images").glob("*.png"):
        resize_depth(depth)
    frame = open_dataset(root)[0]  # colour intrinsics, scaled to the depth image: consistent
    assert frame.depth.shape == (240, 320) and abs(frame.K[0, 2] - 160) < 2
    with pytest.raises(DatasetError, match=r"00000.png: the intrinsics \(.*intrinsic_depth.txt"):
        open_dataset(root, intrinsics="depth")[0]


def test_replica_depth_of_another_size_than_cam_params_is_refused(shared_set, tmp_path):
    root = copy_replica(shared_set("replica_office0"), tmp_path / "replica", frames=1)
    resize_depth(root / "office0" / "results" / "depth000000.png")
    with pytest.raises(DatasetError, match=r"depth000000.png: depth is 600x340 but .*cam_params.json says 1200x680"):
        open_dataset(root)[0]


def test_redwood_depth_of_another_size_is_refused(shared_set, tmp_path):
    root = copy_redwood(shared_set("iclnuim_livingroom"), tmp_path / "icl")
    resize_depth(root / "depth" / "00000.png")
    with pytest.raises(DatasetError, match=r"00000.png: depth is \(320, 240\) but the camera json says"):
        open_dataset(root)[0]


def test_tum_intrinsics_of_another_size_are_refused(shared_set, tmp_path):
    from test_readers import write_tum

    frames = list(open_dataset(shared_set("iclnuim_livingroom"), stop=3))
    for frame in frames:  # half-size images; the reader's TUM intrinsics are for 640x480
        frame.color, frame.depth = frame.color[::2, ::2].copy(), frame.depth[::2, ::2].copy()
    root = tmp_path / "rgbd_dataset_freiburg1_x"
    write_tum(root, frames, 1305031102.0 + np.array([0.0, 0.1, 0.2]))
    with pytest.raises(DatasetError, match=r"\.png: the intrinsics \(the TUM intrinsics"):
        open_dataset(root)[0]


def test_all_poses_invalid_is_an_error_naming_a_pose_file(shared_set, tmp_path):
    root = copy_7scenes(shared_set("7scenes_redkitchen"), tmp_path / "kitchen", frames=3)
    for pose in root.glob("*.pose.txt"):
        write_pose(pose, np.nan)
    with pytest.raises(DatasetError, match=r"all 3 frames have a non-finite .*frame-000000.pose.txt"):
        open_dataset(root)


def test_skipped_pose_warning_names_the_file(shared_set, tmp_path):
    root = copy_7scenes(shared_set("7scenes_redkitchen"), tmp_path / "kitchen", frames=3)
    write_pose(root / "frame-000005.pose.txt", np.inf)
    with pytest.warns(UserWarning, match=r"skipped 1 of 3 .*first: .*frame-000005.pose.txt"):
        source = open_dataset(root)
    assert len(source) == 2


# ---- 5, 8: one writer per map, no silent overwrite ---------------------------------------------------


def _saved_map(scene, path, frames=2):
    mapper = Mapper(MapperConfig(), path)
    for frame in _frames(scene, frames):
        mapper.integrate(frame)
    mapper.finalize()
    mapper.close()
    return path.read_bytes()


def test_mapper_refuses_an_existing_map_unless_told(scene, tmp_path):
    path = tmp_path / "map.sqlite"
    before = _saved_map(scene, path)
    with pytest.raises(MapStorageError, match=r"map.sqlite: a map file is already there; pass overwrite=True"):
        Mapper(MapperConfig(), path)
    assert path.read_bytes() == before
    # overwrite=True: the old contents stay until the first save (a run failing before it loses nothing)
    Mapper(MapperConfig(), path, overwrite=True).close()
    with MapStore(path, read_only=True) as store:
        assert store.load().num_frames == 2
    mapper = Mapper(MapperConfig(), path, overwrite=True)
    mapper.integrate(_frames(scene, 1)[0])
    mapper.finalize()
    mapper.close()
    with MapStore(path, read_only=True) as store:
        assert store.load().num_frames == 1


def test_a_new_mapper_that_never_saved_leaves_no_file(tmp_path):
    path = tmp_path / "never.sqlite"
    Mapper(MapperConfig(), path).close()
    assert not path.exists() and not Path(f"{path}.lock").exists()


def test_second_writer_in_this_process_is_refused(tmp_path):
    path = tmp_path / "map.sqlite"
    mapper = Mapper(MapperConfig(), path)
    try:
        with pytest.raises(MapStorageError, match=rf"map.sqlite: another writer holds this map \(process {_pid()}"):
            Mapper(MapperConfig(), path, overwrite=True)
        with pytest.raises(MapStorageError, match="another writer"):
            MapStore(path)
        with MapStore(path, read_only=True):  # readers are never locked out
            pass
    finally:
        mapper.close()
    MapStore(path).close()  # released


def _pid():
    import os

    return os.getpid()


def test_second_writer_in_another_process_is_refused_until_it_dies(tmp_path):
    path = tmp_path / "map.sqlite"
    code = ("import sys, time; from scene.storage import MapStore; s = MapStore(sys.argv[1]); "
            "print('ready', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(MapStorageError, match=rf"another writer holds this map \(process {child.pid},"):
            MapStore(path)
    finally:
        child.kill()  # SIGKILL: the kernel drops the lock with the process
        child.wait()
    MapStore(path).close()


# ---- 6: a map remembers its sequence -------------------------------------------------------------------


def test_resume_refuses_another_sequence(scene, other_scene, tmp_path):
    path = tmp_path / "map.sqlite"
    run(scene.source(stop=3), MapperConfig(), out=path)
    with MapStore(path, read_only=True) as store:
        before = store.load()
    recorded = before.metadata.extra["sequence"]["first_frames"]
    assert len(recorded) == 3 and all(len(digest) == 40 for _, digest in recorded)
    with pytest.raises(SequenceMismatchError, match="map.sqlite was made from .* differs"):
        run(other_scene.source(stop=5), MapperConfig(), mapper=Mapper.resume(path))
    with MapStore(path, read_only=True) as store:
        after = store.load()
    assert len(after) == len(before) and after.num_frames == 3  # untouched
    resumed = run(scene.source(stop=5), MapperConfig(), mapper=Mapper.resume(path))  # the same sequence goes on
    assert resumed.num_frames == 5


# ---- 2: viewer ports -----------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [99999, -1, 0, 65536, 8080.5, "8080"])
def test_viewer_refuses_a_bad_port_before_starting(port):
    pytest.importorskip("viser")
    from viz.viewer import ViewerHandle, check_port

    with pytest.raises(ValueError, match="port must be a whole number from 1 to 65535"):
        check_port(port)
    with pytest.raises(ValueError, match="port must be"):
        ViewerHandle(port=port)


# ---- packaging ------------------------------------------------------------------------------------------


def test_pyproject_license_is_an_spdx_string_setuptools_accepts_silently():
    from setuptools.config.pyprojecttoml import read_configuration

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = read_configuration(ROOT / "pyproject.toml")
    assert config["project"]["license"] == "Apache-2.0"
    assert not [w for w in caught if "license" in str(w.message).lower()]


# ---- images: truncated and corrupt files --------------------------------------------------------------


@pytest.mark.parametrize("name, kind", [("frame-000000.depth.png", "PNG"), ("frame-000000.color.jpg", "JPEG")])
def test_truncated_image_is_named(shared_set, tmp_path, name, kind):
    from broken_data import truncate

    root = copy_7scenes(shared_set("7scenes_redkitchen"), tmp_path / "kitchen", frames=2)
    truncate(root / name)
    source = open_dataset(root)
    with pytest.raises(DatasetError, match=rf"{name}: truncated {kind}"):
        source[0]
    assert source[1].depth.shape == (480, 640)


def test_corrupt_png_leaves_no_libpng_line_on_stderr(shared_set, tmp_path, capfd):
    from scene.datasets.io import read_depth

    path = tmp_path / "corrupt.png"
    data = bytearray((shared_set("3dmatch_studyroom") / "seq-01" / "frame-000000.depth.png").read_bytes())
    data[5000:5100] = b"x" * 100  # a damaged chunk in the middle: libpng reports a CRC error itself
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="corrupt.png: cannot decode"):
        read_depth(path, 1000.0)
    assert capfd.readouterr().err == ""
