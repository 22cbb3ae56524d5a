"""Free-space carving on exactly ray-cast scenes: voxels other views see through are carved, true
surfaces (a thin pole seen with pose error, boxes, the wall) are not; the global pass leaves carved
voxels out of the objects."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lift3d.backproject import backproject_pixels, project
from lift3d.visibility import coarse_depth, coarse_intrinsics
from lift3d.voxels import keys_of_points
from test_tracking_online import WALL_Z, Boxes, frame_at, gt_masks, intrinsics, render, sweep, track
from tracking import OnlineTracker, TrackerConfig, refine
from tracking.freespace import DepthRecords, FreeSpaceConfig, FreeSpaceVotes, carved, free_space_counts

VOXEL = 0.02
DEPTH_RANGE = (0.1, 8.0)
BOX = (np.array([-0.1, -0.2, 2.0]), np.array([0.3, 0.2, 2.4]))
POLE = (np.array([0.9, -0.4, 2.2]), np.array([0.93, 0.4, 2.23]))  # 3 cm square, 80 cm tall


def _views(n: int = 9) -> list[np.ndarray]:
    return sweep(n, start=-0.3, step=0.1)


def _jittered(pose: np.ndarray, rng: np.random.Generator, metres: float) -> np.ndarray:
    out = pose.copy()
    out[:3, 3] += rng.uniform(-metres, metres, 3)
    return out


def _with_flying_pixels(depth: np.ndarray, ids: np.ndarray, box: int, band: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Depth where a ``band``-pixel strip just right of instance ``box`` reads halfway between the box
    and the wall (mixed pixels of a depth edge), and that strip's flat pixel indices. The views of
    ``_views`` lie further right: they see the wall through the strip's points."""
    columns = np.flatnonzero((ids == box).any(axis=0))
    rows = np.flatnonzero((ids == box).any(axis=1))
    strip = np.zeros_like(ids, bool)
    strip[rows[2]:rows[-2], columns[-1] + 1:columns[-1] + 1 + band] = True
    strip &= ids == 0
    mixed = depth.copy()
    mixed[strip] = 0.5 * (depth[ids == box].mean() + WALL_Z)
    return mixed, np.flatnonzero(strip)


def _surface_keys(scene: Boxes, pose: np.ndarray, instance: int) -> np.ndarray:
    depth, ids = render(scene, pose)
    pixels = np.flatnonzero(ids.reshape(-1) == instance)
    return np.unique(keys_of_points(backproject_pixels(depth, intrinsics(), pose, pixels), VOXEL))


# -- coarse depth --------------------------------------------------------------------------------------

def test_coarse_depth_keeps_the_nearest_valid_depth_around_each_tile():
    depth = np.full((8, 12), 3.0, np.float32)
    depth[1, 5] = 1.0  # a near reading in tile (0, 1)
    depth[4:8, 8:12] = 0.0  # tile (1, 2) has no depth at all
    depth[0, 0] = np.nan
    tiles = coarse_depth(depth, 4, margin=0, depth_range=DEPTH_RANGE)
    np.testing.assert_allclose(tiles.astype(np.float32), [[3.0, 1.0, 3.0], [3.0, 3.0, 0.0]])
    spread = coarse_depth(depth, 4, margin=1, depth_range=DEPTH_RANGE)
    np.testing.assert_allclose(spread.astype(np.float32), [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert spread.dtype == np.float16
    assert coarse_depth(np.zeros((5, 5), np.float32), 2).shape == (3, 3)  # partial tiles at the edges
    with pytest.raises(ValueError, match="block"):
        coarse_depth(depth, 0)


def test_coarse_intrinsics_project_into_the_tile_holding_the_pixel():
    rng = np.random.default_rng(3)
    K, pose = intrinsics(), sweep(2)[1]
    points = np.c_[rng.uniform(-1.5, 1.5, (500, 2)), rng.uniform(1.0, 3.0, 500)] + pose[:3, 3]
    uv, _ = project(points, K, pose)
    tile_uv, _ = project(points, coarse_intrinsics(K, 4), pose)
    pixel = np.floor(uv + 0.5).astype(int)
    inside = (pixel >= 0).all(1) & (pixel[:, 0] < 160) & (pixel[:, 1] < 120)
    np.testing.assert_array_equal(np.floor(tile_uv[inside] + 0.5).astype(int), pixel[inside] // 4)


# -- counts and carving --------------------------------------------------------------------------------

def test_flying_pixels_are_carved_while_a_thin_pole_seen_with_pose_error_is_not():
    scene = Boxes([BOX, POLE])
    rng = np.random.default_rng(0)
    records = DepthRecords(FreeSpaceConfig())
    views = _views()
    depth0, ids0 = render(scene, views[0])
    mixed, strip = _with_flying_pixels(depth0, ids0, box=1)
    stray = np.unique(keys_of_points(backproject_pixels(mixed, intrinsics(), views[0], strip), VOXEL))
    for i, pose in enumerate(views):
        depth = mixed if i == 0 else render(scene, pose)[0]
        records.append(i, depth, intrinsics(), _jittered(pose, rng, 0.01), DEPTH_RANGE)  # 1 cm pose error
    free, surface = free_space_counts(records, stray, VOXEL, DEPTH_RANGE)
    assert stray.size > 50 and carved(records, stray, VOXEL, DEPTH_RANGE).mean() > 0.9
    assert np.median(free) >= 4
    for instance, name in ((2, "pole"), (1, "box"), (0, "wall")):
        keys = np.unique(np.concatenate([_surface_keys(scene, pose, instance) for pose in views]))
        cut = carved(records, keys, VOXEL, DEPTH_RANGE)
        assert cut.mean() < 0.02, f"{name}: {cut.mean():.3f} of {keys.size} surface voxels carved"
        assert np.median(free_space_counts(records, keys, VOXEL, DEPTH_RANGE)[1]) >= 3  # and seen as surface


def test_a_surface_seen_in_one_misplaced_frame_is_carved_by_the_frames_that_see_through_it():
    scene = Boxes([BOX])
    records = DepthRecords(FreeSpaceConfig())
    views = _views()
    for i, pose in enumerate(views):
        records.append(i, render(scene, pose)[0], intrinsics(), pose, DEPTH_RANGE)
    shifted = views[4].copy()
    shifted[2, 3] -= 0.3  # the frame's pose is 30 cm off: its wall lands in mid-air
    depth, ids = render(scene, views[4])
    ghost = np.unique(keys_of_points(backproject_pixels(depth, intrinsics(), shifted, np.flatnonzero(ids.reshape(-1) == 0)), VOXEL))
    records.append(len(views), depth, intrinsics(), shifted, DEPTH_RANGE)
    cut = carved(records, ghost, VOXEL, DEPTH_RANGE)
    assert cut.mean() > 0.8  # the rest: behind the box or outside the other views, never seen through
    wall = _surface_keys(scene, views[4], 0)
    assert carved(records, wall, VOXEL, DEPTH_RANGE).mean() < 0.02  # the misplaced frame carves no true wall


def test_frames_without_depth_or_out_of_view_give_no_evidence():
    scene = Boxes([BOX])
    pose = _views()[4]
    keys = _surface_keys(scene, pose, 1)
    records = DepthRecords(FreeSpaceConfig())
    records.append(0, np.zeros((120, 160), np.float32), intrinsics(), pose, DEPTH_RANGE)  # no valid depth
    away = pose.copy()
    away[:3, :3] = np.diag([-1.0, 1.0, -1.0])  # looking away from the scene
    records.append(1, render(scene, pose)[0], intrinsics(), away, DEPTH_RANGE)
    free, surface = free_space_counts(records, keys, VOXEL, DEPTH_RANGE)
    assert keys.size > 100 and not free.any() and not surface.any()
    empty = free_space_counts(records, np.zeros(0, np.int64), VOXEL, DEPTH_RANGE)
    assert empty[0].shape == empty[1].shape == (0,)
    none = free_space_counts(DepthRecords(), keys, VOXEL, DEPTH_RANGE)
    assert not none[0].any() and not none[1].any()


def test_free_space_config_is_checked():
    for bad in (dict(block=0), dict(margin=-1), dict(cell_factor=0), dict(free_ratio=0.0), dict(surface_tol=0.0),
                dict(keyframe_distance=-0.1), dict(keyframe_angle=-1.0), dict(backfill_every=0)):
        with pytest.raises(ValueError, match="FreeSpaceConfig"):
            FreeSpaceConfig(**bad)


# -- in the tracker and the global pass ----------------------------------------------------------------

def _map_with_spill(free_space: FreeSpaceConfig) -> tuple[OnlineTracker, np.ndarray]:
    """Track a box and the wall over several views; in the first, the box's mask spills across its right
    depth edge onto mixed pixels. Returns the tracker and the flying pixels' voxel keys."""
    scene = Boxes([BOX])
    tracker = OnlineTracker(TrackerConfig(free_space=free_space))
    stray = None
    for i, pose in enumerate(_views()):
        frame = frame_at(scene, i, pose)
        if i == 0:
            mixed, strip = _with_flying_pixels(frame.depth, frame.instance_ids, box=1)
            ids = frame.instance_ids.copy()
            ids.reshape(-1)[strip] = 1  # the box's mask takes the strip
            frame = replace(frame, depth=mixed, instance_ids=ids)
            stray = np.unique(keys_of_points(backproject_pixels(mixed, intrinsics(), pose, strip), VOXEL))
        track(tracker, frame, gt_masks(frame)[0])
    return tracker, stray


def test_global_pass_leaves_voxels_seen_through_out_of_the_objects():
    kept, stray = _map_with_spill(FreeSpaceConfig(carve=False))
    assert len(kept.free_space) == 0
    unfiltered = refine(kept).object_map
    assert np.isin(stray, unfiltered.keys).sum() > 20  # without carving the spill stays in the map

    tracker, stray = _map_with_spill(FreeSpaceConfig())
    assert len(tracker.free_space) == len(_views())
    result = refine(tracker).object_map
    assert np.isin(stray, result.keys).sum() <= 2
    box_keys = _surface_keys(Boxes([BOX]), _views()[4], 1)
    assert np.isin(box_keys, result.keys).mean() > 0.9  # the box itself stays


def test_tracker_without_records_keeps_no_votes():
    tracker = OnlineTracker(TrackerConfig(keep_records=False))
    frame = frame_at(Boxes([BOX]), 0, _views()[0])
    track(tracker, frame, gt_masks(frame)[0])
    assert len(tracker.free_space) == 0 and len(tracker.free_space.cells) == 0


# -- votes accumulated per map cell (bounded by the map) ---------------------------------------------

def test_votes_equal_the_replay_of_every_frame_when_every_frame_is_a_keyframe():
    exact = FreeSpaceConfig(keyframe_distance=0.0, backfill_every=3)
    tracker, stray = _map_with_spill(exact)
    records = DepthRecords(exact)
    scene = Boxes([BOX])
    for i, pose in enumerate(_views()):  # the same frames as _map_with_spill, replayed at the end
        depth = frame_at(scene, i, pose).depth
        if i == 0:
            depth = _with_flying_pixels(depth, frame_at(scene, i, pose).instance_ids, box=1)[0]
        records.append(i, depth, intrinsics(), pose, DEPTH_RANGE)
    keys = np.array(tracker.labels.index.keys)
    votes = tracker.free_space.counts(keys)
    replay = free_space_counts(records, keys, VOXEL, DEPTH_RANGE)
    assert len(tracker.free_space.keyframes) == len(_views())
    assert votes[0].sum() > 100 and votes[1].sum() > 1000
    np.testing.assert_array_equal(votes[0], replay[0])
    np.testing.assert_array_equal(votes[1], replay[1])


def test_a_surface_entering_the_map_last_gets_the_earlier_frames_votes_through_keyframes():
    scene = Boxes([BOX])
    votes = FreeSpaceVotes(FreeSpaceConfig(), VOXEL, DEPTH_RANGE)
    views = _views()
    for i, pose in enumerate(views):
        depth = render(scene, pose)[0]
        votes.observe(i, depth, intrinsics(), pose)
        votes.add_voxels(np.unique(keys_of_points(backproject_pixels(depth, intrinsics(), pose, np.flatnonzero(depth > 0)), VOXEL)))
    assert len(votes.keyframes) < len(views)  # 10 cm steps: some frames stand for their neighbours
    shifted = views[4].copy()
    shifted[2, 3] -= 0.3  # the last frame's pose is 30 cm off: its wall lands in mid-air, seen through before
    depth, ids = render(scene, views[4])
    ghost = np.unique(keys_of_points(backproject_pixels(depth, intrinsics(), shifted, np.flatnonzero(ids.reshape(-1) == 0)), VOXEL))
    votes.observe(len(views), depth, intrinsics(), shifted)
    votes.add_voxels(ghost)
    assert votes.carved(ghost).mean() > 0.8
    assert np.median(votes.counts(ghost)[0]) >= 4  # the earlier frames' votes, through their keyframes
    assert votes.carved(_surface_keys(scene, views[4], 0)).mean() < 0.02


def test_votes_do_not_grow_when_a_static_scene_is_observed_again_and_again():
    scene = Boxes([BOX, POLE])
    tracker = OnlineTracker(TrackerConfig())
    sizes, surface = [], []
    for lap in range(4):
        for i, pose in enumerate(_views()):
            frame = frame_at(scene, lap * 100 + i, pose)
            track(tracker, frame, gt_masks(frame)[0])
        sizes.append((tracker.free_space.nbytes(), len(tracker.free_space.keyframes), len(tracker.free_space.cells)))
        surface.append(np.median(tracker.free_space.counts(_surface_keys(scene, _views()[4], 1))[1]))
    assert sizes[1] == sizes[2] == sizes[3]  # the frames of laps 2-4 are all represented by lap 1's keyframes
    assert surface[3] > surface[1] > surface[0] > 0  # while every frame still votes


def test_reading_the_votes_midway_leaves_the_final_votes_as_they_were():
    scene = Boxes([BOX, POLE])
    quiet, read = OnlineTracker(TrackerConfig()), OnlineTracker(TrackerConfig())
    midway = []
    for i, pose in enumerate(_views()):
        frame = frame_at(scene, i, pose)
        for tracker in (quiet, read):
            track(tracker, frame, gt_masks(frame)[0])
        midway.append(read.free_space.counts(np.array(read.labels.index.keys))[1].sum())  # a global pass each frame
    keys = np.array(quiet.labels.index.keys)
    assert midway[-1] > midway[0] > 0 and read.free_space.live < len(read.free_space.cells)  # some cells still wait
    for a, b in zip(quiet.free_space.counts(keys), read.free_space.counts(keys)):
        np.testing.assert_array_equal(a, b)
