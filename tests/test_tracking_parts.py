"""Small parts of tracking: exclusive mask partition, compact records, object table, object map."""
from __future__ import annotations

import numpy as np
import pytest

from lift3d.voxels import pack_keys
from segment2d.types import MaskSet
from tracking import ObjectMap, PartitionConfig, exclusive_masks
from tracking.objects import ObjectTable
from tracking.records import SurfaceRecords


def test_exclusive_masks_give_contested_pixels_to_the_preferred_level_then_the_smaller_mask():
    masks = np.zeros((3, 8, 8), bool)
    masks[0] = True  # level 0, whole image
    masks[1, :4] = True  # level 2, top half
    masks[2, :, :2] = True  # level 0, left strip
    ms = MaskSet.from_masks(masks, level=np.array([0, 2, 0]))
    smallest = exclusive_masks(ms, PartitionConfig(min_kept=0.0))
    assert smallest.masks.sum(0).max() == 1  # no pixel in two masks
    assert smallest.masks[2, :, :2].all()  # the strip (smallest) wins everywhere it is
    by_level = exclusive_masks(ms, PartitionConfig(levels=(0, 2), min_kept=0.0))
    assert by_level.masks[1, :4].all()  # level 2 wins its pixels over both level-0 masks
    assert by_level.extra["level"].tolist() == [0, 2, 0]
    only_zero = exclusive_masks(ms, PartitionConfig(levels=(0,), min_kept=0.5))
    assert only_zero.extra["level"].tolist() == [0, 0]
    np.testing.assert_array_equal(only_zero.boxes[1], [0, 0, 2, 8])


def test_colour_masks_cut_structure_planes_but_not_objects_when_asked():
    masks = np.zeros((4, 8, 8), bool)
    masks[0, :, :4] = True  # level 0, an object (left half)
    masks[1, :, 4:] = True  # level 0, a wall (right half)
    masks[2, :4, :4] = True  # level 1: a colour region on the object (its texture)
    masks[3, :4, 4:] = True  # level 1: a colour region on the wall (a door)
    ms = MaskSet.from_masks(masks, level=np.array([0, 0, 1, 1]), is_structure=np.array([False, True, False, False]))
    default = exclusive_masks(ms, PartitionConfig(min_kept=0.0))
    assert len(default) == 4  # colour regions win their pixels everywhere (smaller masks win)
    whole = exclusive_masks(ms, PartitionConfig(min_kept=0.0, colour_splits_objects=False))
    assert len(whole) == 3 and whole.masks[0, :, :4].all()  # the object stays whole
    assert whole.masks[2, :4, 4:].all() and not whole.masks[1, :4, 4:].any()  # the door still cuts its wall
    unlabelled = exclusive_masks(MaskSet.from_masks(masks), PartitionConfig(min_kept=0.0, colour_splits_objects=False))
    assert len(unlabelled) == 4  # without levels and structure flags nothing is dropped


def test_object_table_merges_statistics_and_resolves_chains():
    table = ObjectTable(capacity=2)
    ids = table.create(3)
    table.observe(np.array([0, 0, 1]), 5, np.array([0.5, 0.7, 0.9]), np.array([False, False, True]),
                  np.array([100, 300, 50]), np.arange(12, dtype=np.float32).reshape(3, 4))
    table.observe(np.array([2]), 6, np.array([1.0]), np.array([False]), np.array([500]), np.ones((1, 4), np.float32))
    assert ids.tolist() == [0, 1, 2] and table.num_obs.tolist() == [1, 1, 1]
    assert table.best_points[0] == 300 and table.best_box[0].tolist() == [4, 5, 6, 7]
    table.merge(1, 2)
    table.merge(0, 1)
    assert table.resolve(np.array([2, 1, 0, -1])).tolist() == [0, 0, 0, -1]
    assert table.remap_table() == {1: 0, 2: 0}
    assert table.alive.tolist() == [0]
    assert table.num_obs[0] == 3 and table.first_frame[0] == 5 and table.last_frame[0] == 6
    assert table.best_points[0] == 500 and table.best_frame[0] == 6


def test_surface_records_keep_each_frame_keys_in_one_buffer():
    records = SurfaceRecords()
    records.append(3, np.array([5, 7], np.int64))
    records.append(9, np.array([], np.int64))
    records.append(11, np.array([1, 2, 3], np.int64))
    rows, keys = records.all_keys()
    assert rows.tolist() == [0, 0, 2, 2, 2] and keys.tolist() == [5, 7, 1, 2, 3]
    assert records.frame.view.tolist() == [3, 9, 11]


def test_object_map_labels_points_by_voxel_then_nearest_neighbour_and_gives_boxes():
    cells = np.array([[0, 0, 0], [1, 0, 0], [10, 0, 0]])
    om = ObjectMap(np.sort(pack_keys(cells)), np.array([4, 4, 9]), np.array([4, 9]), np.array([0.9, 0.5]),
                   np.array([3, 1]), np.array([False, False]), 0.1)
    om.object = om.object[np.argsort(np.argsort(pack_keys(cells)))]  # align with the sorted keys
    points = np.array([[0.05, 0.05, 0.05], [0.25, 0.05, 0.05], [1.05, 0.0, 0.0], [5.0, 5.0, 5.0]])
    assert om.label_points(points).tolist() == [4, 4, 9, -1]
    assert om.label_points(points, search=False).tolist() == [4, -1, 9, -1]
    boxes = om.boxes()
    np.testing.assert_allclose(boxes[0], [0.05, 0.05, 0.05, 0.15, 0.05, 0.05])
    assert om.voxel_counts().tolist() == [2, 1]
    with pytest.raises(ValueError, match="N x 3"):
        om.label_points(np.zeros(3))
