"""Spatial connected components of labelled voxel cells: the cheap 3D split of a lifted mask.

Cells of the same group (mask) that are 26-neighbours on a coarse grid belong to one component;
the coarse grid's cell size sets the gap that separates parts (between 1 and 2 * sqrt(3) cells).
"""
from __future__ import annotations

import itertools

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from .voxels import group_int64

# The 13 neighbour offsets that are lexicographically positive: each undirected edge is found once.
_HALF_NEIGHBOURS = np.array(
    [d for d in itertools.product((-1, 0, 1), repeat=3) if d > (0, 0, 0)], dtype=np.int64
)


def grouped_cell_components(groups: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Component id (int64, 0..C-1) of each (group, integer cell) row; rows never connect across groups.

    ``groups``: N non-negative ints; ``cells``: N x 3 integer cell coordinates. Duplicate rows share a
    component. Cost: one sort of the N rows plus 13 binary searches over the distinct cells.
    """
    groups = np.asarray(groups, dtype=np.int64)
    cells = np.asarray(cells, dtype=np.int64)
    if groups.size == 0:
        return np.zeros(0, np.int64)
    low = np.array([cells[:, a].min() for a in range(3)])  # per column: axis-0 reductions are slow
    shifted = cells - (low - 1)  # a one-cell margin keeps neighbour codes from wrapping
    spans = np.array([shifted[:, a].max() for a in range(3)]) + 2
    if (int(groups.max()) + 1) * int(np.prod(spans, dtype=np.float64)) >= 2**62:
        raise ValueError(
            f"grouped_cell_components: {groups.max() + 1} groups over {spans.tolist()} cells overflow int64 codes"
        )
    nodes, _, inverse, _ = group_int64(encode_group_cells(groups, shifted, spans))
    # codes are linear in the cell, so a neighbour's code is the node's plus a constant
    deltas = (_HALF_NEIGHBOURS[:, 0] * spans[1] + _HALF_NEIGHBOURS[:, 1]) * spans[2] + _HALF_NEIGHBOURS[:, 2]
    neighbours = (nodes[:, None] + deltas[None, :]).reshape(-1)
    at = np.minimum(np.searchsorted(nodes, neighbours), nodes.size - 1)
    found = nodes[at] == neighbours
    # rows of ``found`` are the source nodes in order: the CSR row pointers are the per-node edge counts
    indptr = np.zeros(nodes.size + 1, np.int64)
    np.cumsum(np.count_nonzero(found.reshape(nodes.size, deltas.size), axis=1), out=indptr[1:])
    graph = csr_matrix((np.ones(int(indptr[-1]), np.int8), at[found], indptr), shape=(nodes.size, nodes.size))
    _, node_component = connected_components(graph, directed=False)
    return node_component[inverse].astype(np.int64)


def encode_group_cells(groups: np.ndarray, cells: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """One int64 per (group, cell) with 0 <= cells < spans; sorting codes sorts by group, then x, y, z."""
    return ((groups * spans[0] + cells[:, 0]) * spans[1] + cells[:, 1]) * spans[2] + cells[:, 2]


def decode_group_cells(codes: np.ndarray, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``encode_group_cells``: (groups N, cells N x 3)."""
    rest, z = np.divmod(codes, spans[2])
    rest, y = np.divmod(rest, spans[1])
    groups, x = np.divmod(rest, spans[0])
    return groups, np.stack([x, y, z], axis=1)
