"""OnlineTracker on exactly ray-cast scenes (a wall and boxes) with ground-truth masks.

Other tracking tests import ``Boxes``, ``frame_at`` and ``track`` from here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from lift3d.clean import CleanConfig
from lift3d.lift import LiftConfig, lift_frame
from scene.datasets import Frame
from segment2d.types import MaskSet
from tracking import AssociationConfig, OnlineTracker, TrackerConfig

WALL_Z = 3.0
WIDTH, HEIGHT, FOCAL = 160, 120, 150.0
LIFT = LiftConfig(stride=1, clean=CleanConfig(erode_px=1, drop_overlaps=False, min_points=20))


@dataclass
class Boxes:
    """Axis-aligned boxes (min corner, max corner; world metres) in front of the wall z = WALL_Z."""

    boxes: list

    @classmethod
    def row(cls, n: int, spacing: float = 0.6, size: float = 0.4, z: float = 2.2) -> "Boxes":
        """``n`` boxes side by side along x, gaps of spacing - size metres."""
        return cls([(np.array([i * spacing, -size / 2, z]), np.array([i * spacing + size, size / 2, z + size])) for i in range(n)])


def intrinsics() -> np.ndarray:
    return np.array([[FOCAL, 0, (WIDTH - 1) / 2], [0, FOCAL, (HEIGHT - 1) / 2], [0, 0, 1]], np.float64)


def camera_at(x: float, y: float = 0.0) -> np.ndarray:
    """Camera-to-world pose at (x, y, 0) looking along +z (OpenCV axes, no rotation)."""
    pose = np.eye(4)
    pose[:3, 3] = (x, y, 0.0)
    return pose


def render(scene: Boxes, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(planar depth H x W float32 metres, instance ids H x W int32: 0 wall, k box k)."""
    K = intrinsics()
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    dirs = rays @ pose[:3, :3].T
    origin = pose[:3, 3]
    t_best = (WALL_Z - origin[2]) / dirs[:, 2]
    ids = np.zeros(t_best.shape, np.int32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, (lo, hi) in enumerate(scene.boxes, start=1):
            t1, t2 = (lo - origin) / dirs, (hi - origin) / dirs
            near = np.nanmax(np.minimum(t1, t2), axis=1)
            far = np.nanmin(np.maximum(t1, t2), axis=1)
            hit = (near <= far) & (near > 0) & (near < t_best)
            t_best[hit], ids[hit] = near[hit], k
    return t_best.astype(np.float32).reshape(HEIGHT, WIDTH), ids.reshape(HEIGHT, WIDTH)


def frame_at(scene: Boxes, index: int, pose: np.ndarray) -> Frame:
    depth, ids = render(scene, pose)
    color = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    return Frame(index, index / 30.0, color, depth, intrinsics(), pose, instance_ids=ids)


def gt_masks(frame: Frame, split: dict | None = None, join: tuple = ()) -> tuple[MaskSet, np.ndarray]:
    """One mask per visible instance; ``split={id: 'rows'|'cols'}`` cuts that instance's mask in two
    halves; ``join=(a, b)`` unites two instances in one mask. Returns (masks, instance id per mask)."""
    ids = frame.instance_ids
    present = [i for i in np.unique(ids) if (ids == i).sum() >= 30]
    masks, owners = [], []
    for i in present:
        if join and i == join[1]:
            continue
        mask = (ids == i) | (np.isin(ids, join) if join and i == join[0] else False)
        how = (split or {}).get(int(i))
        if how:
            coords = np.nonzero(mask)[0 if how == "rows" else 1]
            middle = np.median(coords)
            first = mask.copy()
            (first[int(np.ceil(middle)):, :] if how == "rows" else first[:, int(np.ceil(middle)):])[...] = False
            masks += [first, mask & ~first]
            owners += [i, i]
        else:
            masks.append(mask)
            owners.append(i)
    return MaskSet.from_masks(np.stack(masks)), np.array(owners)


def track(tracker: OnlineTracker, frame: Frame, masks: MaskSet):
    """Lift and step; returns (StepResult, segments)."""
    segments = lift_frame(frame, masks, LIFT)
    return tracker.step(frame, segments), segments


def ids_by_instance(result, segments, owners) -> dict:
    out = {}
    for seg, obj in zip(segments, result.object_ids):
        out.setdefault(int(owners[seg.mask_index]), set()).add(int(obj))
    return out


def sweep(n: int, start: float = 0.0, step: float = 0.05) -> list[np.ndarray]:
    return [camera_at(start + i * step, 0.02 * np.sin(i)) for i in range(n)]


# -- tests --------------------------------------------------------------------------------------------
def test_static_objects_keep_one_id_each_over_many_frames():
    scene, tracker = Boxes.row(2), OnlineTracker()
    seen: dict = {}
    for i, pose in enumerate(sweep(8, start=0.2)):
        frame = frame_at(scene, i, pose)
        result, segments = track(tracker, frame, gt_masks(frame)[0])
        for inst, ids in ids_by_instance(result, segments, gt_masks(frame)[1]).items():
            seen.setdefault(inst, set()).update(ids)
    assert set(seen) == {0, 1, 2}
    assert all(len(ids) == 1 for ids in seen.values()), seen
    assert len({next(iter(ids)) for ids in seen.values()}) == 3  # wall and two boxes apart
    assert tracker.remap == {}
    assert len(tracker.objects.alive) == 3


def test_object_leaving_view_and_returning_keeps_its_id():
    scene, tracker = Boxes.row(1), OnlineTracker()
    xs = [0.2, 0.25, 0.3, 2.5, 2.6, 2.7, 0.3, 0.22]  # the box leaves the view at 2.5 m, returns at 0.3 m
    box_ids = []
    for i, x in enumerate(xs):
        frame = frame_at(scene, i, camera_at(x))
        masks, owners = gt_masks(frame)
        result, segments = track(tracker, frame, masks)
        ids = ids_by_instance(result, segments, owners)
        box_ids.append(ids.get(1))
    assert box_ids[3:6] == [None, None, None]  # out of view
    before, after = box_ids[:3] + box_ids[6:], set()
    for ids in before:
        after |= ids
    assert len(after) == 1


def test_two_objects_always_apart_never_merge():
    scene = Boxes.row(2, spacing=0.45, size=0.4)  # 5 cm gap
    tracker = OnlineTracker()
    box_ids = set()
    for i, pose in enumerate(sweep(10, start=0.0, step=0.03)):
        frame = frame_at(scene, i, pose)
        masks, owners = gt_masks(frame)
        result, segments = track(tracker, frame, masks)
        by = ids_by_instance(result, segments, owners)
        assert by[1] != by[2]
        box_ids |= by[1] | by[2]
    assert len(box_ids) == 2 and tracker.remap == {}


def test_object_split_in_one_frame_does_not_split_the_map_object():
    scene, tracker = Boxes.row(1, size=0.6), OnlineTracker()
    poses = sweep(5, start=0.1, step=0.03)
    ids = []
    for i, pose in enumerate(poses):
        frame = frame_at(scene, i, pose)
        masks, owners = gt_masks(frame, split={1: "cols"} if i == 3 else None)
        result, segments = track(tracker, frame, masks)
        ids.append(ids_by_instance(result, segments, owners)[1])
    assert len(ids[3]) == 1 and ids[3] == ids[0] == ids[4]


def test_merge_retires_the_younger_id_and_records_the_remap():
    scene = Boxes.row(1, size=0.6)
    tracker = OnlineTracker(TrackerConfig(association=AssociationConfig(merge_frames=2)))
    poses = sweep(6, start=0.1, step=0.03)
    halves = None
    merged = []
    for i, pose in enumerate(poses):
        frame = frame_at(scene, i, pose)
        masks, owners = gt_masks(frame, split={1: "rows"} if i < 2 else None)
        result, segments = track(tracker, frame, masks)
        if i == 1:
            halves = sorted(ids_by_instance(result, segments, owners)[1])
            assert len(halves) == 2
        if i == 2:
            assert result.merged == []  # one bridging frame is not enough
        merged += result.merged
    older, younger = halves
    assert merged == [(older, younger)]
    assert tracker.remap == {younger: older}
    assert tracker.resolve(np.array([younger, older])).tolist() == [older, older]
    assert younger not in tracker.objects.alive
    assert ids_by_instance(result, segments, owners)[1] == {older}


def test_one_undersegmenting_mask_does_not_merge_two_objects():
    scene, tracker = Boxes.row(2, spacing=0.45), OnlineTracker()
    poses = sweep(6, start=0.0, step=0.03)
    for i, pose in enumerate(poses):
        frame = frame_at(scene, i, pose)
        masks, owners = gt_masks(frame, join=(1, 2) if i == 4 else ())
        result, _ = track(tracker, frame, masks)
        assert result.merged == []
    assert tracker.remap == {}
    assert len(tracker.objects.alive) == 3


def test_per_frame_work_is_bounded_by_the_objects_in_view():
    scene = Boxes.row(12, spacing=0.7)
    tracker = OnlineTracker()
    visible = []
    for i in range(40):
        frame = frame_at(scene, i, camera_at(0.2 + 0.2 * i))
        result, _ = track(tracker, frame, gt_masks(frame)[0])
        in_view = np.unique(frame.instance_ids).size
        visible.append(result.visible)
        assert result.visible <= in_view + 1
    assert len(tracker.objects.alive) >= 13  # wall and 12 boxes: the map outgrew what any step touched
    assert 2 * max(visible) <= len(tracker.objects.alive)


def test_bad_input_is_rejected_with_clear_messages():
    scene, tracker = Boxes.row(1), OnlineTracker()
    frame = frame_at(scene, 0, camera_at(0.2))
    segments = lift_frame(frame, gt_masks(frame)[0], LiftConfig(voxel_size=0.05, stride=1))
    with pytest.raises(ValueError, match="voxel size"):
        tracker.step(frame, segments)
    with pytest.raises(TypeError, match="Frame"):
        tracker.step(frame.depth, [])
    with pytest.raises(ValueError, match="structure"):
        tracker.step(frame, lift_frame(frame, gt_masks(frame)[0], LIFT), structure=np.zeros(99, bool))


def test_object_statistics_follow_the_observations():
    scene, tracker = Boxes.row(1), OnlineTracker()
    for i, pose in enumerate(sweep(4, start=0.2)):
        frame = frame_at(scene, 10 + i, pose)
        result, segments = track(tracker, frame, gt_masks(frame)[0])
    box = int(result.object_ids[[s.mask_index for s in segments].index(1)])
    objects = tracker.objects
    assert objects.first_frame[box] == 10 and objects.last_frame[box] == 13 and objects.num_obs[box] == 4
    assert 10 <= objects.best_frame[box] <= 13
    x0, y0, x1, y1 = objects.best_box[box]
    assert 0 <= x0 < x1 <= WIDTH and 0 <= y0 < y1 <= HEIGHT
    assert len(tracker.segments) == sum(1 for _ in range(4)) * len(segments)
    assert np.all(tracker.resolve(tracker.segments.object.view) >= 0)
