"""Mask cleaning and lifting to Segment3D on the analytic box scene."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from lift3d import CleanConfig, backproject, LiftConfig, clean_mask_pixels, depth_discontinuities, lift_masks
from lift3d.voxels import keys_of_points
from segment2d.types import MaskSet
from test_lift3d_scene import DEFAULT_POSE, BoxScene, intrinsics, render

NO_CLEANING = CleanConfig(erode_px=0, discontinuity_radius=0, drop_overlaps=False, split=False, min_points=0)


@pytest.fixture(scope="module")
def view():
    K, scene = intrinsics(), BoxScene()
    depth, ids, color = render(scene, K, DEFAULT_POSE)
    return scene, K, depth, ids, color


def rectangle(shape, y0, y1, x0, x1):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def pixel_set(mask):
    return set(np.flatnonzero(mask).tolist())


@pytest.mark.parametrize("drop_overlaps", [True, False])
def test_erosion_removes_a_band_but_not_at_the_image_border(view, drop_overlaps):
    _, _, depth, _, _ = view
    flat = np.full(depth.shape, 2.0, np.float32)
    masks = np.stack([rectangle(depth.shape, 10, 40, 20, 70), rectangle(depth.shape, 0, 30, 100, 160)])
    config = CleanConfig(erode_px=3, discontinuity_radius=0, drop_overlaps=drop_overlaps)
    ids, pixels = clean_mask_pixels(flat, masks, MaskSet.from_masks(masks).boxes, config)
    assert set(pixels[ids == 0].tolist()) == pixel_set(rectangle(depth.shape, 13, 37, 23, 67))
    # the second mask touches the top and right image borders: only its inner sides erode
    assert set(pixels[ids == 1].tolist()) == pixel_set(rectangle(depth.shape, 0, 27, 103, 160))


def test_pixels_on_depth_discontinuities_are_dropped(view):
    scene, K, depth, ids, _ = view
    edges = depth_discontinuities(depth, max_jump=0.05, radius=1)
    box_rim = (ids == 1) & ~np.pad(ids == 1, 1)[2:, 1:-1]  # box pixels whose lower neighbour is not box
    assert edges[box_rim].mean() > 0.5
    points, _ = backproject(depth, K, DEFAULT_POSE, depth_range=(0.0, 10.0))
    front_face = (ids == 1) & (np.abs(points[:, 2].reshape(depth.shape) - scene.boxes[0][0][2]) < 1e-4)
    interior = cv2.erode(front_face.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert interior.sum() > 200 and not edges[interior].any()
    masks = (ids == 1)[None]
    kept_ids, pixels = clean_mask_pixels(depth, masks, MaskSet.from_masks(masks).boxes, CleanConfig(erode_px=0))
    assert pixels.size and not edges.reshape(-1)[pixels].any()


def test_scattered_holes_are_no_discontinuities_but_isolated_readings_are():
    depth = np.full((20, 20), 1.5, np.float32)
    depth[10, 10] = 0  # one dropped pixel on a flat surface: its neighbours stay
    assert not depth_discontinuities(depth, 0.05, 1).any()
    depth[2:8, 2:8] = 0
    depth[4, 4] = 1.5  # a lone reading inside a hole is dropped
    depth[15, 5:15] = 3.0  # a real step: both sides of it are dropped
    edges = depth_discontinuities(depth, 0.05, 1)
    assert edges[4, 4] and edges[14:17, 6:14].all()
    assert not edges[18:, :].any() and not edges[10, 10]


def test_overlapping_pixels_are_dropped_only_when_asked(view):
    _, _, depth, _, _ = view
    flat = np.full(depth.shape, 2.0, np.float32)
    masks = np.stack([rectangle(depth.shape, 10, 50, 10, 60), rectangle(depth.shape, 30, 70, 40, 90)])
    shared = pixel_set(masks[0] & masks[1])
    boxes = MaskSet.from_masks(masks).boxes
    base = dict(erode_px=0, discontinuity_radius=0)
    ids, pixels = clean_mask_pixels(flat, masks, boxes, CleanConfig(drop_overlaps=True, **base))
    assert not set(pixels.tolist()) & shared and set(pixels[ids == 0].tolist()) == pixel_set(masks[0]) - shared
    ids, pixels = clean_mask_pixels(flat, masks, boxes, CleanConfig(drop_overlaps=False, **base))
    assert shared <= set(pixels[ids == 0].tolist()) and shared <= set(pixels[ids == 1].tolist())


def test_a_mask_over_two_separate_boxes_splits_in_two(view):
    scene, K, depth, ids, color = view
    masks = MaskSet.from_masks(np.stack([(ids == 1) | (ids == 2), ids == 0]), scores=np.array([0.9, 0.5]))
    segments = lift_masks(depth, K, DEFAULT_POSE, masks, color, frame_index=7, config=LiftConfig(stride=1))
    parts = [s for s in segments if s.mask_index == 0]
    assert len(parts) == 2 and [p.part for p in parts] == [0, 1]
    assert len([s for s in segments if s.mask_index == 1]) == 1  # the wall around the boxes stays whole
    assert parts[0].num_points >= parts[1].num_points
    for part in parts:
        inside = [np.all((part.aabb_min >= lo - 1e-4) & (part.aabb_max <= hi + 1e-4)) for lo, hi in scene.boxes]
        assert sum(inside) == 1
        assert part.score == pytest.approx(0.9) and part.frame_index == 7
    no_split = LiftConfig(stride=1, clean=CleanConfig(split=False))
    unsplit = lift_masks(depth, K, DEFAULT_POSE, masks, color, config=no_split)
    assert len([s for s in unsplit if s.mask_index == 0]) == 1


def test_segment_fields_agree_with_the_lifted_points(view):
    scene, K, depth, ids, color = view
    masks = MaskSet.from_masks(np.stack([ids == 1, ids == 0]))
    config = LiftConfig(stride=1, voxel_size=0.047, clean=NO_CLEANING)  # no face on a cell boundary
    segments = lift_masks(depth, K, DEFAULT_POSE, masks, color, config=config)
    assert [s.mask_index for s in segments] == [0, 1]
    for segment, mask in zip(segments, masks.masks):
        v, u = np.nonzero(mask & (depth > 0))
        z = depth[v, u].astype(np.float64)
        cam = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], 1)
        world = cam @ DEFAULT_POSE[:3, :3].T + DEFAULT_POSE[:3, 3]
        assert segment.num_points == len(world) == segment.voxel_counts.sum()
        keys, counts = np.unique(keys_of_points(world, 0.047), return_counts=True)
        np.testing.assert_array_equal(segment.voxel_keys, keys)
        np.testing.assert_array_equal(segment.voxel_counts, counts)
        np.testing.assert_allclose(segment.centroid, world.mean(0), atol=1e-5)
        np.testing.assert_allclose(segment.aabb_min, world.min(0), atol=1e-5)
        np.testing.assert_allclose(segment.aabb_max, world.max(0), atol=1e-5)
        assert segment.points.shape == (segment.num_voxels, 3)
        np.testing.assert_array_equal(keys_of_points(segment.points, 0.047), segment.voxel_keys)
        assert np.all(segment.colors == color[mask][0])
        np.testing.assert_array_equal(segment.box, masks.boxes[segment.mask_index])


def test_small_segments_are_dropped(view):
    _, K, depth, ids, color = view
    tiny = rectangle(depth.shape, 50, 53, 50, 53) & (ids == 1)
    masks = MaskSet.from_masks(np.stack([ids == 1, tiny]))
    config = LiftConfig(stride=1, clean=CleanConfig(erode_px=0, drop_overlaps=False, min_points=20))
    assert [s.mask_index for s in lift_masks(depth, K, DEFAULT_POSE, masks, color, config=config)] == [0]


def test_lift_rejects_mismatched_inputs(view):
    _, K, depth, ids, color = view
    masks = MaskSet.from_masks((ids == 1)[None])
    with pytest.raises(ValueError, match="masks are"):
        lift_masks(depth[:50], K, DEFAULT_POSE, masks)
    with pytest.raises(TypeError, match="MaskSet"):
        lift_masks(depth, K, DEFAULT_POSE, masks.masks)
    with pytest.raises(ValueError, match="colour"):
        lift_masks(depth, K, DEFAULT_POSE, masks, color[:10])


def test_empty_inputs_give_no_segments(view):
    _, K, depth, ids, color = view
    assert lift_masks(depth, K, DEFAULT_POSE, MaskSet.empty(*depth.shape), color) == []
    no_depth = np.zeros_like(depth)
    assert lift_masks(no_depth, K, DEFAULT_POSE, MaskSet.from_masks((ids == 1)[None]), color) == []


def test_masks_of_different_overlap_groups_may_nest(view):
    _, _, depth, _, _ = view
    flat = np.full(depth.shape, 2.0, np.float32)
    outer, inner = rectangle(depth.shape, 10, 80, 10, 120), rectangle(depth.shape, 30, 60, 40, 90)
    masks = np.stack([outer, inner])
    boxes = MaskSet.from_masks(masks).boxes
    config = CleanConfig(erode_px=0, discontinuity_radius=0, drop_overlaps=True)
    ids, pixels = clean_mask_pixels(flat, masks, boxes, config, groups=np.array([0, 1]))
    assert set(pixels[ids == 0].tolist()) == pixel_set(outer) and set(pixels[ids == 1].tolist()) == pixel_set(inner)
    ids, pixels = clean_mask_pixels(flat, masks, boxes, config, groups=np.array([0, 0]))
    assert set(pixels[ids == 0].tolist()) == pixel_set(outer & ~inner) and not (ids == 1).any()
    levels = MaskSet(masks, np.ones(2), boxes, {"level": np.array([0, 1])})
    K = np.array([[100.0, 0, 80], [0, 100.0, 60], [0, 0, 1]])
    segments = lift_masks(flat, K, np.eye(4), levels, config=LiftConfig(stride=1, clean=config))
    assert [s.mask_index for s in segments] == [0, 1]
    assert segments[0].num_points == outer.sum() and segments[1].num_points == inner.sum()
