"""Compact, append-only records of every segment and every frame's observed surface, for ``refine``.

Keys of all segments live in one growing int64 buffer with offsets (no per-segment Python objects),
likewise the frames' surface voxel keys. Appending costs O(keys appended); nothing is ever rescanned
online. Units: voxel keys of ``lift3d.voxels.pack_keys`` at the tracker's voxel size.
"""
from __future__ import annotations

import numpy as np


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

    @property
    def view(self) -> np.ndarray:
        return self._data[: self.size]

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
