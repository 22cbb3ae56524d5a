"""3D connected components of grouped voxel cells against scipy.ndimage.label on dense grids."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from lift3d import grouped_cell_components


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the labelings a and b group the rows identically (label values may differ)."""
    pairs = np.unique(np.stack([a, b], 1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def test_components_match_dense_26_connected_labelling():
    rng = np.random.default_rng(0)
    cells = rng.integers(-6, 6, size=(700, 3))
    groups = rng.integers(0, 3, size=700)
    got = grouped_cell_components(groups, cells)
    expected = np.zeros(700, np.int64)
    for g in range(3):
        grid = np.zeros((12, 12, 12), bool)
        rows = groups == g
        grid[tuple((cells[rows] + 6).T)] = True
        labels, _ = ndimage.label(grid, structure=np.ones((3, 3, 3)))
        expected[rows] = labels[tuple((cells[rows] + 6).T)] + 1000 * g
    assert same_partition(got, expected)
    assert len(np.unique(got)) > 3  # sparse random cells form many components


def test_touching_cells_of_different_groups_stay_apart():
    cells = np.array([[0, 0, 0], [1, 1, 1], [5, 5, 5], [0, 0, 0], [-1, 0, 0]])
    groups = np.array([0, 0, 0, 1, 1])
    got = grouped_cell_components(groups, cells)
    assert got[0] == got[1] and got[2] != got[0]
    assert got[3] == got[4] and got[3] not in (got[0], got[2])
    assert grouped_cell_components(np.zeros(0), np.zeros((0, 3))).size == 0
