"""Tests of the synthetic scene generator (scene.datasets.synthetic) on small generated scenes."""
from __future__ import annotations

import json
from itertools import combinations

import cv2
import numpy as np
import pytest
from scipy.spatial import cKDTree

from scene.datasets.synthetic import (
    PRESET_NAMES, SensorConfig, SyntheticScene, make_scene, preset, render_contact_sheet, write_scene,
)
from scene.datasets.synthetic.sensor import depth_edges, sigma_at

W, H = 160, 120


def _frames_equal(a, b) -> bool:
    return (
        np.array_equal(a.color, b.color) and np.array_equal(a.depth, b.depth)
        and np.array_equal(a.instance_ids, b.instance_ids) and np.array_equal(a.pose, b.pose)
        and np.array_equal(a.meta["gt_pose"], b.meta["gt_pose"])
    )


def _backproject_world(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v, u = np.nonzero(frame.depth > 0)
    z = frame.depth[v, u].astype(np.float64)
    K = frame.K
    cam = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], axis=1)
    return cam @ frame.pose[:3, :3].T + frame.pose[:3, 3], v, u


@pytest.fixture(scope="module")
def room():
    return make_scene("room", seed=0, num_frames=100, width=W, height=H)


@pytest.fixture(scope="module")
def noisy_room():
    return make_scene("room", seed=0, num_frames=100, width=W, height=H, noisy=True)


# -- determinism -------------------------------------------------------------------------------------
def test_same_seed_gives_bit_identical_frames_and_gt():
    a = make_scene("cluttered", seed=5, num_frames=8, width=80, height=60, noisy=True)
    b = make_scene("cluttered", seed=5, num_frames=8, width=80, height=60, noisy=True)
    for i in (0, 3, 7):
        assert _frames_equal(a.frame(i), b.frame(i))
    for x, y in zip(a.gt_points(), b.gt_points()):
        assert np.array_equal(x, y)
    assert [o.to_json() for o in a.gt_objects()] == [o.to_json() for o in b.gt_objects()]


def test_different_seed_gives_different_scene():
    a = make_scene("room", seed=1, num_frames=4, width=80, height=60)
    b = make_scene("room", seed=2, num_frames=4, width=80, height=60)
    assert a.layout.room_size != b.layout.room_size
    assert [o.to_json() for o in a.gt_objects()] != [o.to_json() for o in b.gt_objects()]
    assert not np.array_equal(a.frame(0).color, b.frame(0).color)


def test_room_does_not_depend_on_frame_count_or_resolution(room):
    other = make_scene("room", seed=0, num_frames=10, width=64, height=48)
    assert [o.to_json() for o in other.gt_objects()] == [o.to_json() for o in room.gt_objects()]


# -- streaming ---------------------------------------------------------------------------------------
def test_source_random_access_slicing_and_iteration(room):
    src = room.source(start=3, stop=12, stride=4)
    assert src.raw_indices == [3, 7, 11] and len(src) == 3
    frames = list(src)
    assert [f.index for f in frames] == [3, 7, 11]
    assert _frames_equal(frames[1], room.frame(7)) and _frames_equal(src[-1], room.frame(11))
    assert frames[0].instance_ids.shape == (H, W) and frames[0].instance_ids.dtype == np.int32
    assert np.allclose(src.poses, room.poses[[3, 7, 11]])
    with pytest.raises(IndexError):
        src[3]


def test_frames_follow_the_frame_conventions(room):
    frame = room.frame(10)
    assert frame.depth.dtype == np.float32 and frame.color.dtype == np.uint8 and frame.color.shape == (H, W, 3)
    assert frame.K[0, 0] == pytest.approx(525.0 * W / 640)
    # camera height 1.2-1.6 m above the floor (world z up) and looking slightly down (+z cam has -z world)
    eyes = room.gt_poses[:, :3, 3] - np.asarray(room.layout.origin)  # in the room: its corner at 0
    assert np.all((eyes[:, 2] > 1.19) & (eyes[:, 2] < 1.61))
    assert np.all(room.gt_poses[:, 2, 2] < 0) and np.all(room.gt_poses[:, 2, 2] > -0.7)
    # the camera stays inside the room
    sx, sy, _ = room.layout.room_size
    assert np.all((eyes[:, 0] > 0.3) & (eyes[:, 0] < sx - 0.3))
    assert np.all((eyes[:, 1] > 0.3) & (eyes[:, 1] < sy - 0.3))


def test_the_room_sits_off_the_voxel_grid_planes_and_moving_it_changes_nothing_else():
    """The room's floor and walls x = 0, y = 0 would lie on the cell boundaries of every voxel grid (exact depth
    then fills two layers by rounding): the corner is moved by a seeded offset; images, ids and colours stay."""
    moved = make_scene("room", seed=2, num_frames=4, width=W, height=H)
    config = preset("room-clean")
    config.num_frames, config.camera, config.world_offset = 4, config.camera.resized(W, H), 0.0
    fixed = SyntheticScene(config, seed=2)
    origin = np.asarray(moved.layout.origin)
    assert fixed.layout.origin == (0.0, 0.0, 0.0) and np.all((origin > 0) & (origin < 0.1))
    assert make_scene("room", seed=2, num_frames=4, width=W, height=H).layout.origin == moved.layout.origin
    assert make_scene("room", seed=3, num_frames=4, width=W, height=H).layout.origin != moved.layout.origin
    floor = next(o for o in moved.gt_objects() if o.kind == "floor")
    assert floor.aabb_min[2] == pytest.approx(origin[2]) and floor.aabb_min[0] == pytest.approx(origin[0])
    assert np.allclose(moved.gt_poses[:, :3, 3] - fixed.gt_poses[:, :3, 3], origin)
    a, b = moved.frame(1), fixed.frame(1)
    assert np.mean(a.instance_ids != b.instance_ids) < 1e-3
    assert np.mean(np.any(a.color != b.color, axis=-1)) < 1e-3  # textures move with the room
    assert np.median(np.abs(a.depth - b.depth)) < 1e-5
    ga, gb = moved.gt_points(), fixed.gt_points()
    assert np.allclose(ga.xyz - gb.xyz, origin, atol=1e-5) and np.array_equal(ga.colors, gb.colors)


# -- ground truth ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["room", "tabletop", "cluttered"])
def test_gt_points_agree_with_depth_and_ids(name):
    scene = make_scene(name, seed=3, num_frames=12, width=W, height=H)
    xyz, ids, colors = scene.gt_points(density=10000.0)
    assert xyz.dtype == np.float32 and ids.dtype == np.int32 and colors.dtype == np.uint8
    tree = cKDTree(xyz)
    for i in (0, 5, 11):
        frame = scene.frame(i)
        points, v, u = _backproject_world(frame)
        assert len(points) == W * H  # closed room, clean sensor: every pixel has depth
        dist, nearest = tree.query(points)
        assert np.mean(dist < 0.02) > 0.999
        assert np.mean(ids[nearest] == frame.instance_ids[v, u]) > 0.99


def test_gt_points_density_and_objects(room):
    xyz, ids, colors = room.gt_points()
    objects = room.gt_objects()
    assert 150_000 < len(xyz) < 600_000
    assert set(np.unique(ids)) == {o.id for o in objects}
    for o in objects:
        inside = xyz[ids == o.id]
        assert np.all(inside >= np.array(o.aabb_min) - 1e-4) and np.all(inside <= np.array(o.aabb_max) + 1e-4)
    kinds = {o.kind for o in objects if o.is_structure}
    assert kinds == {"floor", "wall", "ceiling"}


@pytest.mark.parametrize("name", ["room", "tabletop", "cluttered"])
def test_object_counts_within_preset_range(name):
    lo, hi = preset(name).layout.num_objects
    assert 10 <= lo and hi <= 40
    for seed in (0, 1):
        scene = make_scene(name, seed=seed, num_frames=2, width=32, height=24)
        count = sum(not o.is_structure for o in scene.gt_objects())
        assert lo <= count <= hi, (name, seed, count)
        assert [o.id for o in scene.gt_objects()] == list(range(1, len(scene.gt_objects()) + 1))


def test_every_object_is_seen_and_image_ids_exist(room):
    objects = {o.id: o for o in room.gt_objects()}
    seen = set()
    for i in range(len(room)):
        seen |= set(np.unique(room.render_clean(i).instance_ids).tolist())
    assert seen <= set(objects)  # no void in a closed room, and no unknown ids
    assert {k for k, o in objects.items() if not o.is_structure} <= seen


def test_floor_footprints_do_not_overlap_and_some_touch():
    scene = make_scene("cluttered", seed=2, num_frames=2, width=32, height=24)
    objects = [o for o in scene.gt_objects() if not o.is_structure]
    floor_z = scene.layout.origin[2]
    floor = [o for o in objects if o.aabb_min[2] < floor_z + 1e-6]
    raised = [o for o in objects if o.aabb_min[2] >= floor_z + 1e-6]
    touching = 0
    for a, b in combinations(floor, 2):
        gap = np.maximum(np.array(a.aabb_min[:2]) - b.aabb_max[:2], np.array(b.aabb_min[:2]) - a.aabb_max[:2])
        assert gap.max() > -1e-4, (a.kind, b.kind)
        touching += gap.max() < 1e-3
    assert touching >= 1
    for a, b in combinations(raised, 2):
        overlap = np.minimum(a.aabb_max, b.aabb_max) - np.maximum(a.aabb_min, b.aabb_min)
        assert overlap.min() < 1e-4, (a.kind, b.kind)


# -- sensor effects ----------------------------------------------------------------------------------
def test_depth_noise_grows_with_distance_as_configured():
    sensor = SensorConfig(noise_a=0.002, noise_b=0.004)
    scene = make_scene("room", seed=4, num_frames=20, width=W, height=H, sensor=sensor)
    clean, noisy = [], []
    for i in range(0, 20, 4):
        clean.append(scene.render_clean(i).depth.ravel())
        noisy.append(scene.frame(i).depth.ravel())
    clean, noisy = np.concatenate(clean), np.concatenate(noisy)
    residual = noisy.astype(np.float64) - clean
    stds = []
    for lo, hi in ((1.0, 1.8), (3.2, 4.5)):
        sel = (clean > lo) & (clean < hi)
        assert sel.sum() > 2000
        expected = np.sqrt(np.mean(sigma_at(sensor, clean[sel]) ** 2))
        stds.append(residual[sel].std())
        assert stds[-1] == pytest.approx(expected, rel=0.1)
    assert stds[1] > 2 * stds[0]


def test_dropout_happens_at_depth_edges_and_on_dark_surfaces():
    scene = make_scene("room", seed=0, num_frames=20, width=W, height=H, sensor=SensorConfig(edge_dropout=1.0))
    for i in (0, 10):
        clean = scene.render_clean(i).depth
        dropped = scene.frame(i).depth == 0
        edges = depth_edges(clean, 0.04, 1)
        assert edges.sum() > 50
        assert np.array_equal(dropped, edges)
    dark = make_scene("room", seed=0, num_frames=20, width=W, height=H, sensor=SensorConfig(dark_dropout=1.0))
    is_dark = dark.render_clean(17).luminance < SensorConfig().dark_threshold
    assert 100 < is_dark.sum() < is_dark.size // 2
    assert np.array_equal(dark.frame(17).depth == 0, is_dark)
    noisy = make_scene("room", seed=0, num_frames=20, width=W, height=H, noisy=True)
    clean = noisy.render_clean(3).depth
    dropped = noisy.frame(3).depth == 0
    edges = depth_edges(clean, 0.04, 1)
    assert dropped[edges].mean() > 10 * dropped[~edges].mean()


def test_disparity_quantization_gives_discrete_depths():
    sensor = SensorConfig(quantization="disparity", subpixel=8.0, baseline=0.075)
    scene = make_scene("room", seed=0, num_frames=3, width=W, height=H, sensor=sensor)
    depth = scene.frame(1).depth
    fb = scene.K[0, 0] * 0.075
    steps = fb / depth[depth > 0].astype(np.float64) * 8.0
    assert np.allclose(steps, np.round(steps), atol=1e-3)
    assert np.abs(depth - scene.render_clean(1).depth).max() > 0.001


def test_pose_drift_changes_reported_pose_only(room, noisy_room):
    errors = []
    for i in (0, 30, 99):
        frame = noisy_room.frame(i)
        assert np.array_equal(frame.meta["gt_pose"], room.frame(i).pose)  # same room and path as clean
        errors.append(np.linalg.norm(frame.pose[:3, 3] - frame.meta["gt_pose"][:3, 3]))
    assert errors[0] == 0.0 and errors[2] > 0.001
    clean = room.frame(30)
    assert np.array_equal(clean.pose, clean.meta["gt_pose"])


# -- writing -----------------------------------------------------------------------------------------
def test_written_files_follow_the_layout_spec(tmp_path):
    scene = make_scene("tabletop", seed=1, num_frames=3, width=80, height=60, noisy=True)
    root = write_scene(scene, tmp_path / "scene", depth_scale=1000.0)
    meta = json.loads((root / "scene.json").read_text())
    assert meta["format"] == "scene-rgbd" and meta["version"] == 1 and meta["num_frames"] == 3
    assert (meta["width"], meta["height"]) == (80, 60) and np.allclose(meta["K"], scene.K)
    frame = scene.frame(2)
    depth = cv2.imread(str(root / "depth" / "000002.png"), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and depth.shape == (60, 80)
    assert np.abs(depth / 1000.0 - frame.depth).max() <= 0.0005 + 1e-6
    ids = cv2.imread(str(root / "instance" / "000002.png"), cv2.IMREAD_UNCHANGED)
    assert ids.dtype == np.uint16 and np.array_equal(ids, frame.instance_ids)
    color = cv2.cvtColor(cv2.imread(str(root / "color" / "000002.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(color, frame.color)
    assert np.array_equal(np.loadtxt(root / "pose" / "000002.txt"), frame.pose)
    with np.load(root / "gt" / "points.npz") as gt:
        assert gt["xyz"].dtype == np.float32 and gt["ids"].dtype == np.int32 and gt["colors"].dtype == np.uint8
        points = scene.gt_points()
        observed = scene.gt_observed(points)
        assert 0 < observed.sum() < len(points)  # unseen surfaces (undersides, behind the camera) are left out
        assert np.array_equal(gt["ids"], points.ids[observed]) and np.array_equal(gt["xyz"], points.xyz[observed])
    assert np.array_equal(np.array(meta["generator"]["gt_poses"])[2], frame.meta["gt_pose"])
    objects = json.loads((root / "gt" / "objects.json").read_text())
    assert objects == [o.to_json() for o in scene.gt_objects()]


def test_write_then_read_with_project_source(tmp_path):
    datasets = pytest.importorskip("scene.datasets")
    if not hasattr(datasets, "ProjectSource"):
        pytest.skip("ProjectSource not available yet")
    scene = make_scene("room", seed=2, num_frames=4, width=80, height=60, noisy=True)
    write_scene(scene, tmp_path / "s")
    read = datasets.ProjectSource(tmp_path / "s")
    assert len(read) == 4
    for a, b in zip(read, scene.source()):
        assert np.abs(a.depth - b.depth).max() <= 0.0005 + 1e-6
        assert np.array_equal(a.color, b.color) and np.array_equal(a.instance_ids, b.instance_ids)
        assert np.array_equal(a.pose, b.pose) and np.allclose(a.K, b.K) and a.timestamp == pytest.approx(b.timestamp)
    gt, points = read.gt_points(), scene.gt_points()
    observed = scene.gt_observed(points)
    assert np.array_equal(gt.xyz, points.xyz[observed]) and np.array_equal(gt.ids, points.ids[observed])
    assert [o.id for o in read.gt_objects()] == [o.id for o in scene.gt_objects()]


def test_contact_sheet_png(tmp_path, room):
    path = render_contact_sheet([room.frame(0), room.frame(50)], tmp_path / "sheet.png")
    image = cv2.imread(str(path))
    assert image.shape == (2 * H, 3 * W, 3)
    assert image[:, :W].std() > 5 and image[:, 2 * W:].std() > 5


# -- bad input ---------------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic preset 'kitchen'"):
        make_scene("kitchen")
    with pytest.raises(ValueError, match="quantization"):
        SensorConfig(quantization="cm")
    with pytest.raises(ValueError, match="noise_b"):
        SensorConfig(noise_b=-1.0)
    with pytest.raises(ValueError, match="num_frames"):
        make_scene("room", num_frames=0, width=32, height=24)
    scene = make_scene("room", seed=0, num_frames=2, width=32, height=24)
    with pytest.raises(ValueError, match="depth_scale"):
        write_scene(scene, tmp_path / "x", depth_scale=0)
    with pytest.raises(IndexError):
        scene.frame(2)
    assert len(PRESET_NAMES) == 6 and all(preset(n).name == n for n in PRESET_NAMES)


def test_gt_observed_marks_visible_points_and_not_hidden_ones():
    scene = make_scene("room", seed=6, num_frames=24, width=W, height=H)
    points = scene.gt_points()
    observed = scene.gt_observed(stride=1)
    # floor points under solid boxes and cabinets standing on the floor are never visible
    floor_id = next(o.id for o in scene.gt_objects() if o.kind == "floor")
    floor_z = scene.layout.origin[2]
    solid = [o for o in scene.gt_objects() if o.kind in ("box", "cabinet") and o.aabb_min[2] < floor_z + 1e-6]
    xy = points.xyz[:, :2].astype(np.float64)
    under = np.zeros(len(xy), dtype=bool)
    for o in solid:
        under |= np.all((xy > np.array(o.aabb_min[:2]) + 0.03) & (xy < np.array(o.aabb_max[:2]) - 0.03), axis=1)
    hidden = under & (points.ids == floor_id)
    assert hidden.sum() > 100 and observed[hidden].mean() < 0.01
    assert observed[points.ids == floor_id].mean() > 0.3
    # the GT points nearest to the pixels of a rendered frame are observed
    tree = cKDTree(points.xyz)
    frame = scene.frame(12)
    world, _, _ = _backproject_world(frame)
    _, nearest = tree.query(world[::7])
    assert observed[nearest].mean() > 0.97
