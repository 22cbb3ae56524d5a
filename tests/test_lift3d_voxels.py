"""Voxel key packing, the vectorised hash index, and the int64 grouping helper."""
from __future__ import annotations

import numpy as np
import pytest

from lift3d.voxels import (
    AXIS_OFFSET,
    VoxelIndex,
    cells_of_points,
    group_int64,
    keys_of_points,
    pack_keys,
    stable_argsort,
    unpack_keys,
    voxel_centers,
)


def test_pack_unpack_round_trip_including_negative_and_extreme_cells():
    rng = np.random.default_rng(0)
    cells = rng.integers(-AXIS_OFFSET, AXIS_OFFSET, size=(5000, 3))
    cells[:4] = [[-AXIS_OFFSET] * 3, [AXIS_OFFSET - 1] * 3, [0, 0, 0], [-1, -1, -1]]
    keys = pack_keys(cells)
    assert keys.dtype == np.int64 and np.all(keys >= 0)
    np.testing.assert_array_equal(unpack_keys(keys), cells)
    assert np.unique(keys).size == np.unique(cells, axis=0).shape[0]


def test_key_order_is_lexicographic_cell_order():
    rng = np.random.default_rng(1)
    cells = rng.integers(-50, 50, size=(2000, 3))
    by_key = cells[np.argsort(pack_keys(cells), kind="stable")]
    by_cell = cells[np.lexsort((cells[:, 2], cells[:, 1], cells[:, 0]))]
    np.testing.assert_array_equal(by_key, by_cell)


def test_out_of_range_cells_are_rejected():
    with pytest.raises(ValueError, match="must lie in"):
        pack_keys(np.array([[AXIS_OFFSET, 0, 0]]))
    with pytest.raises(ValueError, match="N x 3"):
        pack_keys(np.zeros((3, 2), np.int64))


def test_points_floor_into_cells_and_centres_come_back():
    points = np.array([[-0.001, 0.0, 0.019], [0.02, -0.02, -0.021]])
    np.testing.assert_array_equal(cells_of_points(points, 0.02), [[-1, 0, 0], [1, -1, -2]])
    centres = voxel_centers(keys_of_points(points, 0.02), 0.02)
    assert np.all(np.abs(centres - points) <= 0.01 + 1e-12)


def test_voxel_index_matches_a_dict_reference_across_growth():
    rng = np.random.default_rng(2)
    index, reference = VoxelIndex(initial_capacity=16), {}
    for _ in range(12):
        batch = pack_keys(rng.integers(-300, 300, size=(rng.integers(1, 3000), 3)))
        batch = np.concatenate([batch, batch[: batch.size // 3]])  # duplicates inside a call
        rows = index.insert(batch)
        for key, row in zip(batch.tolist(), rows.tolist()):
            assert reference.setdefault(key, len(reference)) == row
    assert len(index) == len(reference)
    queries = np.concatenate([np.array(list(reference), np.int64), pack_keys(rng.integers(400, 500, size=(500, 3)))])
    expected = np.array([reference.get(k, -1) for k in queries.tolist()])
    np.testing.assert_array_equal(index.lookup(queries), expected)
    np.testing.assert_array_equal(index.keys[expected[expected >= 0]], queries[expected >= 0])


def test_voxel_index_rejects_bad_keys():
    index = VoxelIndex()
    with pytest.raises(ValueError, match="reserved"):
        index.insert(np.array([-1]))
    with pytest.raises(TypeError, match="integers"):
        index.lookup(np.array([0.5]))


@pytest.mark.parametrize("high", [1000, 1 << 40, 1 << 62])
def test_group_int64_agrees_with_numpy_unique(high):
    values = np.random.default_rng(4).integers(-high, high, 20000)
    values[::7] = values[0]
    unique, first, inverse, counts = group_int64(values)
    ref_unique, ref_first, ref_inverse, ref_counts = np.unique(
        values, return_index=True, return_inverse=True, return_counts=True
    )
    np.testing.assert_array_equal(unique, ref_unique)
    np.testing.assert_array_equal(first, ref_first)
    np.testing.assert_array_equal(inverse, ref_inverse.reshape(-1))
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_array_equal(stable_argsort(values), np.argsort(values, kind="stable"))
