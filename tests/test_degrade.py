"""The seeded mask degrader: each error kind does what it says at its rate; rate 0 is the identity."""
from __future__ import annotations

import numpy as np
import pytest

from segment2d.degrade import (
    ISSUE14_RATES,
    DegradeConfig,
    DegradedMaskGenerator,
    adjacent_pairs,
    degrade_masks,
)
from segment2d.types import MaskSet

FRAMES = range(40)


def blocks(rows: int, cols: int, size: int, gap: int, pair_gap: int | None = None, margin: int = 0) -> MaskSet:
    """Square masks on a grid ``margin`` px from the image's top left; with ``pair_gap``, columns come in
    pairs ``pair_gap`` apart, pairs ``gap`` apart."""
    masks, x = [], margin
    xs = []
    for c in range(cols):
        xs.append(x)
        x += size + (pair_gap if pair_gap is not None and c % 2 == 0 else gap)
    height, width = margin + rows * (size + gap), x
    for r in range(rows):
        y0 = margin + r * (size + gap)
        for x0 in xs:
            mask = np.zeros((height, width), bool)
            mask[y0:y0 + size, x0:x0 + size] = True
            masks.append(mask)
    ids = np.arange(1, len(masks) + 1)
    return MaskSet.from_masks(np.stack(masks), scores=np.linspace(0.5, 1.0, len(masks)), instance_id=ids)


def same(a: MaskSet, b: MaskSet) -> bool:
    return (len(a) == len(b) and np.array_equal(a.masks, b.masks) and np.array_equal(a.scores, b.scores)
            and all(np.array_equal(a.extra[k], b.extra[k]) for k in a.extra))


def test_rate_zero_is_the_identity():
    masks = blocks(4, 6, 12, 0)
    assert DegradeConfig().is_identity
    assert same(degrade_masks(masks, DegradeConfig(), seed=3, frame_index=7), masks)
    # sizes set, rates 0: still the identity
    assert same(degrade_masks(masks, DegradeConfig(boundary_px=(2, 2), adjacency_px=1), 1, 2), masks)


@pytest.mark.parametrize("field,value", [("merge_rate", 1.5), ("split_rate", -0.1), ("drop_rate", float("nan")),
                                         ("boundary_rate", "0.2")])
def test_rates_outside_0_1_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        DegradeConfig(**{field: value})


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="boundary_px"):
        DegradeConfig(boundary_px=(0, 2))
    with pytest.raises(ValueError, match="boundary_px"):
        DegradeConfig(boundary_px=(3, 1))
    with pytest.raises(ValueError, match="adjacency_px"):
        DegradeConfig(adjacency_px=0)


def test_adjacency_is_touching_after_dilation():
    # 1 px gaps: side neighbours touch after a 2 px (disk) dilation; diagonal ones, 2.8 px apart, do not;
    # 4 px gaps never do
    assert len(adjacent_pairs(blocks(1, 4, 10, 4).masks, 2)) == 0
    pairs = adjacent_pairs(blocks(2, 2, 10, 1).masks, 2)
    assert {tuple(p) for p in pairs.tolist()} == {(0, 1), (0, 2), (1, 3), (2, 3)}
    # a 1 px gap is bridged at radius 2, not at radius 1; masks sharing a border touch at radius 1
    assert len(adjacent_pairs(blocks(1, 2, 10, 1).masks, 1)) == 0
    assert len(adjacent_pairs(blocks(1, 2, 10, 0).masks, 1)) == 1


def test_merge_joins_that_share_of_adjacent_pairs():
    # isolated pairs (touching inside a pair, 8 px between pairs): every merge removes exactly one mask
    masks = blocks(10, 10, 8, 8, pair_gap=0)
    assert len(adjacent_pairs(masks.masks, 2)) == 50
    config = DegradeConfig(merge_rate=0.2)
    merged = 0
    for frame in FRAMES:
        out = degrade_masks(masks, config, seed=0, frame_index=frame)
        merged += len(masks) - len(out)
        # every output mask is one input mask or the union of an adjacent pair; nothing is lost
        assert np.array_equal(out.masks.any(0), masks.masks.any(0))
        assert set(out.areas.tolist()) <= {64, 128}
    assert merged / (50 * len(FRAMES)) == pytest.approx(0.2, abs=0.03)


def test_merged_mask_keeps_its_largest_members_extras():
    masks = MaskSet.from_masks(np.stack([np.pad(np.ones((4, 4), bool), ((0, 0), (0, 6))),
                                         np.pad(np.ones((4, 6), bool), ((0, 0), (4, 0)))]),
                               scores=np.array([0.9, 0.3]), instance_id=np.array([5, 9]))
    out = degrade_masks(masks, DegradeConfig(merge_rate=1.0))
    assert len(out) == 1 and out.masks[0].all()
    assert out.extra["instance_id"].tolist() == [9] and out.scores.tolist() == pytest.approx([0.3])
    assert out.boxes.tolist() == [[0, 0, 10, 4]]


def test_split_cuts_that_share_of_masks_in_two():
    masks = blocks(6, 6, 15, 3)
    config = DegradeConfig(split_rate=0.1)
    splits = 0
    for frame in FRAMES:
        out = degrade_masks(masks, config, seed=1, frame_index=frame)
        splits += len(out) - len(masks)
        assert np.array_equal(out.masks.any(0), masks.masks.any(0))
        assert out.masks.sum() == masks.masks.sum()  # the pieces do not overlap
        for instance in np.unique(out.extra["instance_id"]):
            pieces = out.masks[out.extra["instance_id"] == instance]
            assert len(pieces) in (1, 2)
            if len(pieces) == 2:  # two real pieces, neither a sliver
                assert pieces.sum((1, 2)).min() >= 15
    assert splits / (len(masks) * len(FRAMES)) == pytest.approx(0.1, abs=0.02)


def test_drop_removes_that_share_of_masks():
    masks = blocks(6, 6, 10, 2)
    kept = 0
    for frame in FRAMES:
        out = degrade_masks(masks, DegradeConfig(drop_rate=0.15), seed=2, frame_index=frame)
        kept += len(out)
        originals = np.isin(masks.extra["instance_id"], out.extra["instance_id"])
        assert np.array_equal(out.masks, masks.masks[originals])
    assert 1 - kept / (len(masks) * len(FRAMES)) == pytest.approx(0.15, abs=0.02)


def test_boundaries_move_by_1_to_3_px_either_way():
    masks = blocks(5, 5, 16, 8, margin=8)  # nothing touches a border or a neighbour
    shifts = []
    for frame in range(8):
        out = degrade_masks(masks, DegradeConfig(boundary_rate=1.0, boundary_px=(1, 3)), seed=4, frame_index=frame)
        assert len(out) == len(masks)
        # a square eroded (dilated) by r keeps its centre and loses (gains) r px on every side
        shift = (out.boxes[:, 2] - out.boxes[:, 0] - 16) / 2
        np.testing.assert_array_equal(out.boxes[:, 1] - masks.boxes[:, 1], -shift)
        shifts.extend(shift.tolist())
    shifts = np.asarray(shifts)
    assert set(np.abs(shifts).tolist()) == {1, 2, 3}
    assert 0.4 < np.mean(shifts > 0) < 0.6


def test_boundary_rate_is_per_mask():
    masks = blocks(6, 6, 12, 8)
    changed = 0
    for frame in FRAMES:
        out = degrade_masks(masks, DegradeConfig(boundary_rate=0.3), seed=5, frame_index=frame)
        changed += int((out.masks != masks.masks).any((1, 2)).sum())
    assert changed / (len(masks) * len(FRAMES)) == pytest.approx(0.3, abs=0.03)


def test_draws_depend_on_seed_and_frame_only():
    masks = blocks(5, 5, 10, 1)
    a = degrade_masks(masks, ISSUE14_RATES, seed=0, frame_index=3)
    assert same(a, degrade_masks(masks, ISSUE14_RATES, seed=0, frame_index=3))
    assert not same(a, degrade_masks(masks, ISSUE14_RATES, seed=0, frame_index=4))
    assert not same(a, degrade_masks(masks, ISSUE14_RATES, seed=1, frame_index=3))


class _Fixed:
    name = "fixed"

    def __init__(self, masks: MaskSet):
        self.masks = masks

    def generate(self, frame_or_image) -> MaskSet:
        return self.masks


class _Frame:
    def __init__(self, index: int):
        self.index = index


def test_generator_wrapper_seeds_by_frame_index():
    masks = blocks(5, 5, 10, 1)
    wrapped = DegradedMaskGenerator(_Fixed(masks), ISSUE14_RATES, seed=7)
    assert wrapped.name == "fixed+degraded"
    first = wrapped.generate(_Frame(12))
    wrapped.generate(_Frame(3))
    assert same(first, wrapped.generate(_Frame(12)))  # order of calls does not matter
    assert same(first, degrade_masks(masks, ISSUE14_RATES, seed=7, frame_index=12))
    assert same(DegradedMaskGenerator(_Fixed(masks), drop_rate=0.0).generate(_Frame(1)), masks)
    with pytest.raises(ValueError, match="drop_rate"):
        DegradedMaskGenerator(_Fixed(masks), drop_rate=2.0)


def test_ground_truth_masks_of_a_synthetic_frame():
    from scene.datasets.synthetic import make_scene
    from segment2d.groundtruth import GroundTruthMaskGenerator

    scene = make_scene("room", seed=0, noisy=True, num_frames=2, width=160, height=120)
    frame = scene.frame(1)
    clean = GroundTruthMaskGenerator(min_area=1).generate(frame)
    merged = DegradedMaskGenerator(GroundTruthMaskGenerator(min_area=1), merge_rate=1.0).generate(frame)
    # every adjacent pair merged: the touching instances of the view become one mask each group
    assert 0 < len(merged) < len(clean)
    assert np.array_equal(merged.masks.any(0), clean.masks.any(0))


def test_the_wrapper_needs_instance_ids_where_its_generator_does():
    from segment2d.degrade import DegradedMaskGenerator
    from segment2d.geometric import GeometricMaskGenerator
    from segment2d.groundtruth import GroundTruthMaskGenerator

    assert DegradedMaskGenerator(GroundTruthMaskGenerator(), merge_rate=0.05).needs_instance_ids
    assert not DegradedMaskGenerator(GeometricMaskGenerator(), merge_rate=0.05).needs_instance_ids
