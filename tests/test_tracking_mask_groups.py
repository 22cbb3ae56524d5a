"""``tracking.mask_groups``: which kept masks of a partition a coarser mask of the same frame holds together."""
from __future__ import annotations

import numpy as np

from segment2d.types import MaskCrops, MaskSet
from tracking import AssociationConfig
from tracking.mask_groups import coarse_together, held_together, mask_groups
from tracking.pipeline import exclusive_partition


def _masks(structure_whole: bool = False) -> MaskSet:
    """A 10 x 20 image: left part (cols 0-5), right part (cols 5-10), a mask holding both (cols 0-10, a
    coarser level), a far region (cols 14-20) and, last, a structure plane holding everything."""
    masks = np.zeros((5, 10, 20), bool)
    masks[0, :, 0:5] = masks[1, :, 5:10] = masks[2, :, 0:10] = masks[3, :, 14:20] = True
    masks[4] = True
    structure = np.array([False, False, structure_whole, False, True])
    return MaskSet.from_masks(masks, is_structure=structure)


def test_a_coarser_mask_holds_the_parts_inside_it_and_structure_holds_nothing():
    masks = _masks()
    selected, _, owner = exclusive_partition(masks)
    assert sorted(selected.tolist()) == [0, 1, 3]  # the coarse mask and the plane lost their pixels to the parts
    row, holder = mask_groups(masks, selected, owner, 0.8)
    rows_of = {int(m): r for r, m in enumerate(selected)}
    assert sorted(zip(row.tolist(), holder.tolist())) == sorted([(rows_of[0], 2), (rows_of[1], 2)])
    together = held_together(np.array([rows_of[0], rows_of[1], rows_of[3]]), (row, holder))
    assert together.tolist() == [[True, True, False], [True, True, False], [False, False, True]]


def test_a_structure_mask_is_no_coarser_view_of_an_object():
    masks = _masks(structure_whole=True)
    selected, _, owner = exclusive_partition(masks)
    row, holder = mask_groups(masks, selected, owner, 0.8)
    assert row.size == 0 and holder.size == 0


def test_a_mask_holding_too_little_of_a_part_does_not_hold_it():
    masks = _masks()
    masks.masks[2, :, 3:5] = False  # the coarse mask now holds 60% of the left part
    selected, _, owner = exclusive_partition(masks)
    row, holder = mask_groups(masks, selected, owner, 0.8)
    assert holder.tolist() == [2] and selected[row[0]] == 1


def test_only_grow_by_vote_asks_for_it():
    masks = _masks()
    selected, _, owner = exclusive_partition(masks)

    class Part:  # a lifted segment only needs its partition row here
        def __init__(self, row):
            self.mask_index = row

    parts = [Part(r) for r in range(selected.size)]
    assert coarse_together(AssociationConfig(), masks, selected, owner, parts) is None
    assert coarse_together(AssociationConfig(grow_by_vote=True, coarse_masks_hold=False), masks, selected, owner,
                           parts) is None
    together = coarse_together(AssociationConfig(grow_by_vote=True), masks, selected, owner, parts)
    assert together.shape == (3, 3) and together.sum() == 3 + 2


def test_masks_as_crops_give_the_same_groups():
    masks = _masks()
    selected, _, owner = exclusive_partition(masks)
    crops = [(int(x0), int(y0), masks.masks[i, int(y0):int(y1), int(x0):int(x1)])
             for i, (x0, y0, x1, y1) in enumerate(masks.boxes.astype(int).tolist())]
    as_crops = MaskCrops(crops, masks.image_size, masks.scores, masks.boxes, masks.extra)
    expected = mask_groups(masks, selected, owner, 0.8)
    found = mask_groups(as_crops, selected, owner, 0.8)
    assert expected[0].size > 0
    assert all(np.array_equal(a, b) for a, b in zip(expected, found))
