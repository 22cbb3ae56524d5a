"""Sparse voxel keys and a vectorised open-addressing hash from int64 keys to dense rows.

A voxel is the integer cell ``floor(p / voxel_size)`` of a world point ``p`` (metres, world frame).
Its key packs the three signed cell coordinates into one non-negative int64, 21 bits per axis
(x highest, then y, then z), each offset by 2**20, so cells in [-2**20, 2**20) are representable
(+-21 km at 2 cm). Sorting keys sorts cells lexicographically by (x, y, z).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AXIS_BITS = 21
AXIS_OFFSET = 1 << (AXIS_BITS - 1)
AXIS_MASK = (1 << AXIS_BITS) - 1
EMPTY_KEY = np.int64(-1)

_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: odd 64-bit golden-ratio constant


def pack_keys(cells: np.ndarray) -> np.ndarray:
    """N x 3 integer cell coordinates -> N int64 keys. Raises ValueError for cells out of range."""
    cells = np.asarray(cells)
    if cells.ndim != 2 or cells.shape[1] != 3:
        raise ValueError(f"pack_keys: cells must be N x 3, got shape {cells.shape}")
    shifted = cells.astype(np.int64) + AXIS_OFFSET
    if shifted.size and (shifted.min() < 0 or shifted.max() > AXIS_MASK):
        raise ValueError(
            f"pack_keys: cell coordinates must lie in [{-AXIS_OFFSET}, {AXIS_OFFSET - 1}], "
            f"got [{cells.min()}, {cells.max()}]"
        )
    return (shifted[:, 0] << (2 * AXIS_BITS)) | (shifted[:, 1] << AXIS_BITS) | shifted[:, 2]


def unpack_keys(keys: np.ndarray) -> np.ndarray:
    """N int64 keys -> N x 3 int64 cell coordinates (inverse of ``pack_keys``)."""
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    cells = np.empty((keys.size, 3), np.int64)
    cells[:, 0] = (keys >> (2 * AXIS_BITS)) & AXIS_MASK
    cells[:, 1] = (keys >> AXIS_BITS) & AXIS_MASK
    cells[:, 2] = keys & AXIS_MASK
    return cells - AXIS_OFFSET


def cells_of_points(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """N x 3 points (metres) -> N x 3 int64 cells ``floor(p / voxel_size)``."""
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be > 0 metres, got {voxel_size}")
    return np.floor(np.asarray(points, dtype=np.float64) / voxel_size).astype(np.int64)


def keys_of_points(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """N x 3 world points (metres) -> N int64 voxel keys."""
    return pack_keys(cells_of_points(points, voxel_size))


def unique_cell_keys(cells: np.ndarray) -> np.ndarray:
    """Sorted distinct keys of N x 3 integer cells (``np.unique(pack_keys(cells))``, faster: neighbouring
    rows often repeat a cell, and codes relative to the cells' bounding box need fewer radix passes)."""
    cells = np.asarray(cells, dtype=np.int64)
    if cells.ndim != 2 or cells.shape[1] != 3:
        raise ValueError(f"unique_cell_keys: cells must be N x 3, got shape {cells.shape}")
    return _unique_column_keys([cells[:, a] for a in range(3)])


def unique_point_keys(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """``unique_cell_keys(cells_of_points(points, voxel_size))``, computed one coordinate column at a
    time (no N x 3 float64 and int64 temporaries)."""
    return _unique_column_keys(_point_columns(points, voxel_size))


@dataclass(frozen=True)
class PointCells:
    """Points voxelised once: the sorted distinct keys of their cells, and each point's row in them."""

    keys: np.ndarray  # D int64, sorted, distinct
    of_point: np.ndarray  # N int64 row in ``keys`` of each point


def point_cells(points: np.ndarray, voxel_size: float) -> PointCells:
    """The cells of N x 3 points (metres): ``PointCells`` with ``keys == unique_point_keys(points,
    voxel_size)`` and ``keys[of_point] == keys_of_points(points, voxel_size)``."""
    columns = _point_columns(points, voxel_size)
    if columns[0].size == 0:
        return PointCells(np.zeros(0, np.int64), np.zeros(0, np.int64))
    codes, low, spans = _local_codes(columns)
    distinct, of_point = group_runs(codes)
    return PointCells(_packed_codes(distinct, low, spans), of_point)


def _point_columns(points: np.ndarray, voxel_size: float) -> list[np.ndarray]:
    """The x, y, z int64 cell columns ``floor(p / voxel_size)`` (float64 division) of N x 3 points."""
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be > 0 metres, got {voxel_size}")
    points = np.asarray(points)
    columns = []
    for axis in range(3):
        column = points[:, axis].astype(np.float64)
        np.floor(np.divide(column, voxel_size, out=column), out=column)
        columns.append(column.astype(np.int64))
    return columns


def _unique_column_keys(columns: list[np.ndarray]) -> np.ndarray:
    """Sorted distinct keys of the cells (x, y, z columns): codes relative to the bounding box, runs
    of repeated codes dropped, one radix sort, duplicates dropped, then packed."""
    if columns[0].size == 0:
        return np.zeros(0, np.int64)
    codes, low, spans = _local_codes(columns)
    codes = _drop_repeats(codes)
    return _packed_codes(_drop_repeats(codes[stable_argsort(codes)]), low, spans)


def _local_codes(columns: list[np.ndarray]) -> tuple[np.ndarray, list[int], tuple[int, int]]:
    """(codes of the cells relative to their bounding box, ordered as their keys; the box's low corner;
    its y and z spans)."""
    low = [int(c.min()) for c in columns]
    high = [int(c.max()) for c in columns]
    if min(low) < -AXIS_OFFSET or max(high) > AXIS_OFFSET - 1:
        raise ValueError(f"pack_keys: cell coordinates must lie in [{-AXIS_OFFSET}, {AXIS_OFFSET - 1}], "
                         f"got [{min(low)}, {max(high)}]")
    span_y, span_z = high[1] - low[1] + 1, high[2] - low[2] + 1
    codes = columns[0] - low[0]
    codes *= span_y
    codes += columns[1]
    codes -= low[1]
    codes *= span_z
    codes += columns[2]
    codes -= low[2]
    return codes, low, (span_y, span_z)


def _packed_codes(codes: np.ndarray, low: list[int], spans: tuple[int, int]) -> np.ndarray:
    """Keys of ``_local_codes``' codes."""
    rest, z = np.divmod(codes, spans[1])
    x, y = np.divmod(rest, spans[0])
    x += low[0] + AXIS_OFFSET
    y += low[1] + AXIS_OFFSET
    z += low[2] + AXIS_OFFSET
    x <<= 2 * AXIS_BITS
    y <<= AXIS_BITS
    x |= y
    x |= z
    return x


def group_runs(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct codes, inverse) like ``group_int64``, grouping runs of equal neighbours first:
    neighbouring pixels in raster order often fall in one voxel, so about half as many values are sorted."""
    starts = np.empty(codes.size, bool)
    starts[:1] = True
    np.not_equal(codes[1:], codes[:-1], out=starts[1:])
    distinct, _, run_inverse, _ = group_int64(codes[starts])
    return distinct, run_inverse[np.cumsum(starts) - 1]


def _drop_repeats(values: np.ndarray) -> np.ndarray:
    """``values`` without the entries equal to their predecessor."""
    keep = np.empty(values.size, bool)
    keep[:1] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def voxel_centers(keys: np.ndarray, voxel_size: float) -> np.ndarray:
    """N int64 keys -> N x 3 float64 world coordinates (metres) of the voxel centres."""
    return (unpack_keys(keys).astype(np.float64) + 0.5) * voxel_size


def _hash_slots(keys: np.ndarray, log2_capacity: int) -> np.ndarray:
    """Home slot of each key: the top ``log2_capacity`` bits of key * golden-ratio constant (mod 2**64)."""
    product = keys.astype(np.int64, copy=False).view(np.uint64) * _HASH_MULTIPLIER
    product >>= np.uint64(64 - log2_capacity)
    return product.view(np.int64)


class VoxelIndex:
    """Maps int64 keys (any value except -1) to dense rows 0..n-1, in order of first insertion.

    Open addressing with linear probing in two flat numpy arrays; every probe round handles all
    pending keys of a call at once, so insert and lookup cost O(keys in the call) amortised, not
    O(keys stored). The table doubles when it is half full. Keys are never removed: a row, once
    given, stays valid (callers keep per-row data in arrays indexed by row).
    """

    def __init__(self, initial_capacity: int = 1 << 12):
        self._log2 = max(4, int(np.ceil(np.log2(max(initial_capacity, 16)))) + 1)
        self._slot_keys = np.full(1 << self._log2, EMPTY_KEY, np.int64)
        self._slot_rows = np.full(1 << self._log2, -1, np.int64)
        self._keys = np.empty(max(initial_capacity, 16), np.int64)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __getstate__(self) -> dict:
        """The stored keys and the capacities, not the slot tables (rebuilt on unpickling): a third of the bytes."""
        return {"keys": self._keys[: self._size], "capacity": self._keys.size, "log2": self._log2}

    def __setstate__(self, state: dict) -> None:
        keys = state["keys"]
        self._log2, self._size = state["log2"], keys.size
        self._keys = np.empty(state["capacity"], np.int64)
        self._keys[: keys.size] = keys
        self._slot_keys = np.full(1 << self._log2, EMPTY_KEY, np.int64)
        self._slot_rows = np.full(1 << self._log2, -1, np.int64)
        self._place(keys, np.arange(keys.size, dtype=np.int64))

    @property
    def keys(self) -> np.ndarray:
        """The stored keys, indexed by row (a read-only view)."""
        view = self._keys[: self._size]
        view.flags.writeable = False
        return view

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Rows of ``keys`` (int64 array of any shape), -1 where a key is absent."""
        keys = self._as_keys(keys, "lookup")
        flat = keys.reshape(-1)
        slots = _hash_slots(flat, self._log2)
        found_keys = self._slot_keys[slots]  # the first probe covers every key: no index arrays yet
        hit = found_keys == flat
        rows = np.where(hit, self._slot_rows[slots], -1)
        pending = np.flatnonzero(~hit & (found_keys != EMPTY_KEY))
        capacity_mask = (1 << self._log2) - 1
        slots = (slots[pending] + 1) & capacity_mask
        while pending.size:
            found_keys = self._slot_keys[slots]
            hit = found_keys == flat[pending]
            rows[pending[hit]] = self._slot_rows[slots[hit]]
            more = ~hit & (found_keys != EMPTY_KEY)
            pending, slots = pending[more], (slots[more] + 1) & capacity_mask
        return rows.reshape(keys.shape)

    def insert(self, keys: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Rows of ``keys``, adding the absent ones (duplicates in the call get one row). ``rows``: the
        caller's ``lookup(keys)`` from after the last insert, when it has one (saves the lookup)."""
        keys = self._as_keys(keys, "insert")
        flat = keys.reshape(-1)
        rows = self.lookup(flat) if rows is None else np.array(rows, np.int64).reshape(-1)
        missing = rows < 0
        if missing.any():
            new_keys, first, inverse, _ = group_int64(flat[missing])
            new_rows = np.empty(new_keys.size, np.int64)
            new_rows[np.argsort(first)] = np.arange(self._size, self._size + new_keys.size, dtype=np.int64)
            self._reserve(self._size + new_keys.size)
            self._keys[new_rows] = new_keys
            self._size += new_keys.size
            self._place(new_keys, new_rows)
            rows[missing] = new_rows[inverse]
        return rows.reshape(keys.shape)

    def _place(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Write distinct, absent keys into empty slots; colliding writers retry at the next slot."""
        capacity_mask = (1 << self._log2) - 1
        slots = _hash_slots(keys, self._log2)
        pending = np.arange(keys.size)
        while pending.size:
            free = self._slot_keys[slots] == EMPTY_KEY
            claim_slots, claim_idx = slots[free], pending[free]
            self._slot_keys[claim_slots] = keys[claim_idx]  # on a collision, one writer wins
            won = self._slot_keys[claim_slots] == keys[claim_idx]
            self._slot_rows[claim_slots[won]] = rows[claim_idx[won]]
            done = np.zeros(pending.size, bool)
            done[np.flatnonzero(free)[won]] = True
            pending, slots = pending[~done], (slots[~done] + 1) & capacity_mask

    def _reserve(self, size: int) -> None:
        if size > self._keys.size:
            grown = np.empty(max(size, 2 * self._keys.size), np.int64)
            grown[: self._size] = self._keys[: self._size]
            self._keys = grown
        if 2 * size > (1 << self._log2):
            while 2 * size > (1 << self._log2):
                self._log2 += 1
            self._slot_keys = np.full(1 << self._log2, EMPTY_KEY, np.int64)
            self._slot_rows = np.full(1 << self._log2, -1, np.int64)
            self._place(self._keys[: self._size], np.arange(self._size, dtype=np.int64))

    @staticmethod
    def _as_keys(keys: np.ndarray, what: str) -> np.ndarray:
        keys = np.asarray(keys)
        if keys.size and not np.issubdtype(keys.dtype, np.integer):
            raise TypeError(f"VoxelIndex.{what}: keys must be integers, got dtype {keys.dtype}")
        keys = keys.astype(np.int64, copy=False)
        if keys.size and (keys == EMPTY_KEY).any():
            raise ValueError(f"VoxelIndex.{what}: key -1 is reserved for empty slots")
        return keys


def group_int64(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(values, return_index, return_inverse, return_counts)`` for 1-D integers: (unique
    sorted values, index of each value's first occurrence, inverse, counts). 2-4x faster than
    np.unique here (a radix argsort, see ``stable_argsort``)."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    order = stable_argsort(values)
    ordered = values[order]
    is_start = np.empty(ordered.size, bool)
    is_start[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=is_start[1:])
    starts = np.flatnonzero(is_start)
    counts = np.diff(np.append(starts, values.size))
    inverse = np.empty(values.size, np.int64)
    inverse[order] = np.repeat(np.arange(starts.size), counts)  # faster than a cumsum of is_start
    return ordered[starts], order[starts], inverse, counts


def stable_argsort(values: np.ndarray) -> np.ndarray:
    """Stable argsort of 1-D int64 values: LSD radix over 16-bit digits (numpy's stable sort of uint16
    is a counting sort) while the value range needs at most three digits, else numpy's argsort."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    if values.size == 0:
        return np.zeros(0, np.int64)
    low = int(values.min())
    span = int(values.max()) - low
    if span >= 1 << 48:
        return np.argsort(values, kind="stable")
    shifted = values - low
    order = np.argsort((shifted & 0xFFFF).astype(np.uint16), kind="stable")
    for shift in range(16, 48, 16):
        if span >> shift == 0:
            break
        digit = ((shifted[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
    return order
