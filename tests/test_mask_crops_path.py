"""Masks from the segmenter process kept as crops in the mapping process (no N x H x W stack): unpacked crops
equal the unpacked stack bit for bit, the exclusive partition and the tracker step are the same from crops
as from the stack, and a frame result made from crops shows the same MaskSet."""
from __future__ import annotations

import numpy as np
import pytest

from scene.config import MapperConfig
from scene.datasets.synthetic import make_scene
from scene.map import map_fingerprint
from scene.pipeline import Mapper
from segment2d.factory import make_generator
from segment2d.types import MaskCrops, MaskSet
from segment2d.worker import pack_crops, pack_masks, unpack_crops, unpack_masks
from tracking.pipeline import PartitionConfig, exclusive_partition


@pytest.fixture(scope="module")
def frames():
    return list(make_scene("room", seed=2, noisy=True, num_frames=8, width=320, height=240).source(stop=8))


@pytest.fixture(scope="module")
def generated(frames):
    generator = make_generator("geometric")
    return [generator.generate_crops(frame) for frame in frames]


def _same_masks(a: MaskSet, b: MaskSet) -> None:
    assert a.masks.shape == b.masks.shape and np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.boxes, b.boxes)
    assert a.extra.keys() == b.extra.keys()
    assert all(np.array_equal(a.extra[k], b.extra[k]) for k in a.extra)


def test_unpacked_crops_are_the_unpacked_stack_bit_for_bit(generated):
    for crops in generated:
        payload = pack_crops(crops)
        unpacked = unpack_crops(payload)
        assert isinstance(unpacked, MaskCrops) and len(unpacked) == len(crops)
        _same_masks(unpacked.to_maskset(), unpack_masks(payload))
        _same_masks(unpacked.to_maskset(), crops.to_maskset())


def test_an_empty_mask_and_no_masks_unpack_as_crops_too():
    masks = np.zeros((3, 20, 30), bool)
    masks[0, 2:5, 7:19] = True
    masks[2, 19, 29] = True  # mask 1 stays empty
    boxes = np.array([[7, 2, 19, 5], [0, 0, 0, 0], [29, 19, 30, 20]], np.float32)
    stack = MaskSet(masks, np.array([0.9, 0.5, 0.1], np.float32), boxes, {"level": np.array([0, 1, 2])})
    _same_masks(unpack_crops(pack_masks(stack)).to_maskset(), stack)
    none = MaskSet.empty(20, 30)
    assert len(unpack_crops(pack_masks(none))) == 0
    _same_masks(unpack_crops(pack_masks(none)).to_maskset(), none)


@pytest.mark.parametrize("config", [PartitionConfig(), PartitionConfig(colour_splits_objects=False),
                                    PartitionConfig(levels=(1, 0), min_kept=0.3)])
def test_the_exclusive_partition_is_the_same_from_crops(generated, config):
    for crops in generated:
        from_crops = unpack_crops(pack_crops(crops))
        expected = exclusive_partition(crops.to_maskset(), config)
        got = exclusive_partition(from_crops, config)
        for a, b in zip(expected, got):
            assert a.dtype == b.dtype and np.array_equal(a, b)


def test_a_crop_larger_or_smaller_than_its_box_region_gives_the_same_partition():
    """Crops cut to bytes reach past the box; a loose box reaches past the crop."""
    masks = np.zeros((2, 12, 40), bool)
    masks[0, 3:9, 10:13] = True
    masks[1, 1:11, 12:30] = True
    boxes = np.array([[10, 3, 13, 9], [5, 0, 35, 12]], np.float32)  # tight, loose
    stack = MaskSet(masks, np.ones(2, np.float32), boxes)
    for a, b in zip(exclusive_partition(stack), exclusive_partition(unpack_crops(pack_masks(stack)))):
        assert np.array_equal(a, b)


def test_integrating_crops_makes_the_same_map_and_results_as_the_stack(frames, generated):
    stacked, cropped = Mapper(MapperConfig()), Mapper(MapperConfig())
    for frame, crops in zip(frames, generated):
        a = stacked.integrate(frame, crops.to_maskset())
        b = cropped.integrate(frame, unpack_crops(pack_crops(crops)))
        assert np.array_equal(a.object_ids, b.object_ids) and np.array_equal(a.owner, b.owner)
        _same_masks(a.masks, b.masks)
        assert b.masks is b.masks and b.owner is b.owner  # made once, on first read
        # the owner image names the masks of the frame's MaskSet: each pixel lies in the mask it names
        held = a.owner >= 0
        assert held.any() and a.masks.masks[a.owner[held], *np.nonzero(held)].all()
    assert map_fingerprint(stacked.finalize()) == map_fingerprint(cropped.finalize())


def test_the_segmenter_process_lifts_crops_as_it_would_lift_the_stack(frames, generated):
    """A finish that ``takes_crops`` (the pipeline's ``FrameLifter``) gets the generator's crops, any other
    finish their MaskSet; the lift is the same either way."""
    from segment2d.worker import _finished
    from tracking.pipeline import FrameLifter, lift_frame_masks

    lifter = FrameLifter(MapperConfig().lift)
    got = _finished(lifter, frames[0], generated[0])
    expected = lift_frame_masks(frames[0], generated[0].to_maskset(), lifter.lift, lifter.partition)
    assert np.array_equal(got.owner, expected.owner) and np.array_equal(got.surface, expected.surface)
    assert np.array_equal(got.selected, expected.selected) and len(got.segments) == len(expected.segments)
    for a, b in zip(got.segments, expected.segments):
        assert np.array_equal(a.voxel_keys, b.voxel_keys) and np.array_equal(a.points, b.points)
    assert _finished(lambda frame, masks: type(masks), frames[0], generated[0]) is MaskSet


@pytest.mark.parametrize("count", [200, 300])  # the owner image painted in one byte, and in int32 past 254 masks
def test_the_partition_is_painted_smallest_last_whatever_the_mask_count(count):
    rng = np.random.default_rng(count)
    height, width = 60, 80
    masks = np.zeros((count, height, width), bool)
    for i in range(count):
        y, x, h, w = rng.integers(0, 50), rng.integers(0, 70), rng.integers(2, 20), rng.integers(2, 20)
        masks[i, y:y + h, x:x + w] = True
    boxes = np.array([[m.any(0).argmax(), m.any(1).argmax(), width - m.any(0)[::-1].argmax(),
                       height - m.any(1)[::-1].argmax()] for m in masks], np.float32)
    stack = MaskSet(masks, np.ones(count, np.float32), boxes)
    selected, got_boxes, owner = exclusive_partition(stack)
    areas = masks.sum((1, 2))
    expected = np.full((height, width), -1, np.int64)
    for i in np.argsort(-areas, kind="stable"):  # the largest first, so the smallest wins
        expected[masks[i]] = i
    kept = np.bincount(expected[expected >= 0], minlength=count)
    keep = np.flatnonzero(kept >= 0.5 * areas)
    row_of = np.full(count + 1, -1)
    row_of[keep + 1] = np.arange(keep.size)
    assert np.array_equal(selected, keep) and owner.dtype == np.int32
    assert np.array_equal(owner, row_of[expected + 1])
    for row in range(keep.size):
        rows, cols = np.nonzero(owner == row)
        assert got_boxes[row].tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
