"""lift3d on real 7-Scenes frames: poses, back-projection and visibility agree across views."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lift3d import (
    OUT_OF_VIEW,
    SURFACE,
    LabelStore,
    LiftConfig,
    backproject,
    classify_points,
    keys_of_points,
    lift_masks,
    stack_voxel_keys,
)
from segment2d.types import MaskSet

KITCHEN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "7scenes_redkitchen"
K = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])


def read_frame(i: int):
    if not KITCHEN.is_dir():
        pytest.skip(f"shared data {KITCHEN} is absent")
    raw = cv2.imread(str(KITCHEN / f"frame-{i:06d}.depth.png"), cv2.IMREAD_UNCHANGED)
    depth = np.where(raw == 65535, 0, raw).astype(np.float32) / 1000.0
    color = cv2.cvtColor(cv2.imread(str(KITCHEN / f"frame-{i:06d}.color.jpg")), cv2.COLOR_BGR2RGB)
    return depth, color, np.loadtxt(KITCHEN / f"frame-{i:06d}.pose.txt")


def depth_band_masks(depth: np.ndarray, band: float = 0.25, count: int = 30) -> MaskSet:
    """A stand-in mask generator: the largest connected regions of depth quantised in ``band`` metres."""
    level = np.where(depth > 0, (depth / band).astype(np.int32), -1)
    steps = np.zeros(depth.shape, bool)
    steps[:, 1:] |= level[:, 1:] != level[:, :-1]
    steps[1:] |= level[1:] != level[:-1]
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~steps & (level >= 0)).astype(np.uint8), connectivity=4)
    largest = np.argsort(-stats[1:, cv2.CC_STAT_AREA])[:count] + 1
    return MaskSet.from_masks(labels[None] == largest[:, None, None])


def test_neighbouring_frames_see_the_same_voxels():
    depth_a, _, pose_a = read_frame(0)
    depth_b, _, pose_b = read_frame(5)
    keys_a = np.unique(keys_of_points(backproject(depth_a, K, pose_a, stride=4)[0], 0.05))
    keys_b = np.unique(keys_of_points(backproject(depth_b, K, pose_b, stride=4)[0], 0.05))
    assert np.isin(keys_b, keys_a).mean() > 0.6
    wrong_pose = pose_b.copy()
    wrong_pose[:3, 3] += [0.6, 0.0, 0.0]
    keys_wrong = np.unique(keys_of_points(backproject(depth_b, K, wrong_pose, stride=4)[0], 0.05))
    assert np.isin(keys_wrong, keys_a).mean() < 0.35  # measured 0.87 right, 0.18 shifted


def test_points_of_one_frame_are_on_the_surface_seen_by_the_next():
    depth_a, _, pose_a = read_frame(0)
    depth_b, _, pose_b = read_frame(5)
    points, _ = backproject(depth_a, K, pose_a, stride=4)
    classes = classify_points(points, depth_b, K, pose_b).classes
    in_view = classes != OUT_OF_VIEW
    assert in_view.mean() > 0.7 and np.mean(classes[in_view] == SURFACE) > 0.85


def test_lifted_segments_of_consecutive_frames_overlap_in_the_label_store():
    store = LabelStore()
    segments_per_frame = []
    for i in (0, 5):
        depth, color, pose = read_frame(i)
        segments = lift_masks(depth, K, pose, depth_band_masks(depth), color, i, LiftConfig())
        assert len(segments) >= 10
        for s in segments:
            assert np.all(np.diff(s.voxel_keys) > 0) and s.num_points >= 40
            assert np.all(s.aabb_min <= s.centroid) and np.all(s.centroid <= s.aabb_max)
        segments_per_frame.append(segments)
    keys, groups = stack_voxel_keys(segments_per_frame[0])
    store.add(keys, groups)  # label = the segment's position in the first frame
    biggest = max(segments_per_frame[1], key=lambda s: s.num_voxels)
    labels, counts = store.overlap(biggest.voxel_keys)
    assert counts.max() > 0.3 * biggest.num_voxels  # the same surface, lifted from the previous frame
