"""Compact, append-only records of every segment and every frame's observed surface, for ``refine``.

Keys of all segments live in one growing int64 buffer with offsets (no per-segment Python objects),
likewise the frames' surface voxel keys. Appending costs O(keys appended); nothing is ever rescanned
online. Units: voxel keys of ``lift3d.voxels.pack_keys`` at the tracker's voxel size.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

_CHUNK = 1 << 20  # rows per step of the chunked passes over all recorded keys (bounded temporaries)


class GrowableArray:
    """A 1-D (or N x k) array that doubles its capacity on demand."""

    def __init__(self, dtype, width: int | None = None, capacity: int = 1024):
        shape = (capacity,) if width is None else (capacity, width)
        self._data = np.zeros(shape, dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=self._data.dtype)
        n = len(values)
        if self.size + n > len(self._data):
            grown = np.zeros((max(self.size + n, 2 * len(self._data)),) + self._data.shape[1:], self._data.dtype)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : self.size + n] = values
        self.size += n

    def __getstate__(self) -> dict:
        """The rows in use and the capacity, not the unused rows."""
        return {"rows": self._data[: self.size], "capacity": len(self._data)}

    def __setstate__(self, state: dict) -> None:
        rows = state["rows"]
        self._data = np.zeros((state["capacity"],) + rows.shape[1:], rows.dtype)
        self._data[: len(rows)] = rows
        self.size = len(rows)

    @property
    def view(self) -> np.ndarray:
        return self._data[: self.size]

    def compact(self, keep: np.ndarray) -> None:
        """Keep only the rows where ``keep`` (bool, one per row) holds, in order, moved to the front of
        the same buffer a chunk at a time: the capacity stays, nothing is reallocated."""
        keep = np.asarray(keep, bool)
        written = 0
        for start in range(0, self.size, _CHUNK):  # rows only move forward: never over a row still unread
            kept = self._data[start:min(start + _CHUNK, self.size)][keep[start:start + _CHUNK]]
            self._data[written:written + len(kept)] = kept
            written += len(kept)
        self.size = written

    def assign(self, values: np.ndarray) -> None:
        """Replace the contents by ``values`` (at most the capacity: no reallocation)."""
        values = np.asarray(values, self._data.dtype)
        self._data[: len(values)] = values
        self.size = len(values)

    def nbytes(self) -> int:
        return int(self._data.nbytes)


class SegmentRecords:
    """Per segment: frame index, mask index, part, online object id, score, is_structure vote, box, and
    its voxel keys and per-voxel point counts (``keys_of(i)`` / ``all_keys()``)."""

    def __init__(self):
        self.frame = GrowableArray(np.int64)
        self.mask = GrowableArray(np.int32)
        self.part = GrowableArray(np.int32)
        self.object = GrowableArray(np.int64)
        self.score = GrowableArray(np.float32)
        self.structure = GrowableArray(bool)
        self.box = GrowableArray(np.float32, 4)
        self.offsets = GrowableArray(np.int64)
        self.offsets.extend([0])
        self.keys = GrowableArray(np.int64)
        self.counts = GrowableArray(np.int32)

    def __len__(self) -> int:
        return self.frame.size

    def append(self, segments, object_ids: np.ndarray, structure: np.ndarray) -> None:
        """Add one frame's segments (``Segment3D``s) with their assigned object ids and structure votes."""
        if not segments:
            return
        self.frame.extend([s.frame_index for s in segments])
        self.mask.extend([s.mask_index for s in segments])
        self.part.extend([s.part for s in segments])
        self.object.extend(object_ids)
        self.score.extend([s.score for s in segments])
        self.structure.extend(structure)
        self.box.extend(np.stack([np.asarray(s.box, np.float32).reshape(4) for s in segments]))
        sizes = np.array([s.voxel_keys.size for s in segments], np.int64)
        self.offsets.extend(self.offsets.view[-1] + np.cumsum(sizes))
        self.keys.extend(np.concatenate([s.voxel_keys for s in segments]))
        self.counts.extend(np.concatenate([s.voxel_counts for s in segments]))

    def keys_of(self, i: int) -> np.ndarray:
        start, stop = self.offsets.view[i], self.offsets.view[i + 1]
        return self.keys.view[start:stop]

    def all_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """(segment index per key, keys): every (segment, voxel) row."""
        sizes = np.diff(self.offsets.view)
        return np.repeat(np.arange(len(self), dtype=np.int64), sizes), self.keys.view

    def nbytes(self) -> int:
        parts = (self.frame, self.mask, self.part, self.object, self.score, self.structure, self.box,
                 self.offsets, self.keys, self.counts)
        return sum(p.nbytes() for p in parts)

    def drop_frames(self, frames: np.ndarray) -> None:
        """Forget every segment of ``frames`` (frame indices), compacting the arrays in place."""
        keep = ~np.isin(self.frame.view, frames)
        _compact_ragged(keep, self.offsets, (self.frame, self.mask, self.part, self.object, self.score,
                                             self.structure, self.box), (self.keys, self.counts))


class SurfaceRecords:
    """Per frame: its index and the distinct voxel keys of its observed surface (valid depth)."""

    def __init__(self):
        self.frame = GrowableArray(np.int64)
        self.offsets = GrowableArray(np.int64)
        self.offsets.extend([0])
        self.keys = GrowableArray(np.int64)

    def __len__(self) -> int:
        return self.frame.size

    def append(self, frame_index: int, keys: np.ndarray) -> None:
        self.frame.extend([frame_index])
        self.offsets.extend([self.offsets.view[-1] + keys.size])
        self.keys.extend(keys)

    def all_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """(record row per key, keys)."""
        sizes = np.diff(self.offsets.view)
        return np.repeat(np.arange(len(self), dtype=np.int64), sizes), self.keys.view

    def nbytes(self) -> int:
        return self.frame.nbytes() + self.offsets.nbytes() + self.keys.nbytes()

    def drop_frames(self, frames: np.ndarray) -> None:
        """Forget the surfaces of ``frames`` (frame indices), compacting the arrays in place."""
        _compact_ragged(~np.isin(self.frame.view, frames), self.offsets, (self.frame,), (self.keys,))


def _compact_ragged(keep: np.ndarray, offsets: GrowableArray, per_row: tuple, per_key: tuple) -> None:
    """Keep the rows where ``keep`` holds in arrays of one entry per row (``per_row``) and in ragged arrays
    of one entry per key (``per_key``, row i's keys at ``offsets[i]:offsets[i + 1]``), in place."""
    sizes = np.diff(offsets.view)
    key_keep = np.repeat(keep, sizes)
    for array in per_row:
        array.compact(keep)
    for array in per_key:
        array.compact(key_keep)
    offsets.assign(np.r_[0, np.cumsum(sizes[keep])])


@dataclass
class Thinning:
    """What ``redundant_frames`` forgets: ``frames`` (indices, increasing) and, per distinct voxel key
    their surfaces held (``keys``, sorted), ``views``: how many of them held it."""

    frames: np.ndarray
    keys: np.ndarray
    views: np.ndarray


def redundant_frames(surfaces: SurfaceRecords, keep_keys: int) -> Thinning:
    """The recorded frames to forget so that the surfaces keep at most ``keep_keys`` keys, the views
    that add least going first.

    A voxel's k-th view is worth 1 / k^2 (its worth saturates: a voxel seen by many frames loses almost
    nothing with one of them, one seen by few loses much), and a frame costs its number of keys: frames
    go greedily by the worth they hold per key, the least first. Forgetting a frame only raises the
    others' worth, so each candidate's worth is recomputed when it comes up (a lazy greedy: a frame whose
    worth rose past the next one's goes back in the queue)."""
    offsets = surfaces.offsets.view
    sizes = np.diff(offsets)
    excess = int(sizes.sum()) - int(keep_keys)
    if excess <= 0 or len(surfaces) == 0:
        return Thinning(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    voxel, keys = distinct_index(surfaces.keys.view)
    recorded = sum(np.bincount(voxel[start:start + _CHUNK], minlength=keys.size)  # int64 copies a chunk at a time
                   for start in range(0, voxel.size, _CHUNK))
    views = recorded.astype(np.float64)  # per voxel: the kept frames holding it
    weight = 1.0 / np.square(views)
    worth = [float(weight[voxel[a:b]].sum()) / max(b - a, 1) for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    queue = list(zip(worth, range(len(surfaces))))
    heapq.heapify(queue)
    dropped = []
    while excess > 0 and queue:
        _, row = heapq.heappop(queue)
        mine = voxel[offsets[row]:offsets[row + 1]]
        now = float(np.sum(1.0 / np.square(views[mine]))) / max(mine.size, 1)
        if queue and now > queue[0][0] * (1.0 + 1e-9):  # risen past the next (not just summed in another order)
            heapq.heappush(queue, (now, row))
            continue
        views[mine] -= 1
        excess -= mine.size
        dropped.append(row)
    forgotten = recorded - views.astype(np.int64)
    held = forgotten > 0
    return Thinning(surfaces.frame.view[np.sort(np.array(dropped, np.int64))], keys[held], forgotten[held])


def distinct_index(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int32 index of each key among the sorted distinct keys, those keys). A chunk at a time (bounded
    temporaries, not a sorted copy of every key): each chunk's distinct keys merged into the others'
    (sorted runs, which a stable sort takes whole), then each key finds its place by binary search."""
    distinct = np.zeros(0, np.int64)
    for start in range(0, keys.size, _CHUNK):
        distinct = _sorted_distinct(np.concatenate([distinct, _sorted_distinct(keys[start:start + _CHUNK])]))
    index = np.empty(keys.size, np.int32)
    for start in range(0, keys.size, _CHUNK):
        index[start:start + _CHUNK] = np.searchsorted(distinct, keys[start:start + _CHUNK])
    return index, distinct


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    ordered = np.sort(values, kind="stable")
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if ordered.size else ordered
