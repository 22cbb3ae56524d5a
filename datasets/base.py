"""One interface for every frame source: length, iteration, random access, start/stop/stride.

A reader lists its raw frames and reads each frame's pose up front (poses are small), so frames whose
pose is non-finite or not rigid (real ScanNet has ``-inf`` poses) are skipped with one warning and a
count, and ``len()`` is exact. Images are read lazily in ``__getitem__``.
"""
from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator

import numpy as np

from .frame import DatasetError, Frame, is_valid_pose
from .io import check_intrinsics_fit


class FrameSource(ABC):
    """Base class of all readers. Subclasses implement the three ``_raw_*`` methods."""

    format_name: str = "?"

    def __init__(self, root: str | Path, start: int = 0, stop: int | None = None, stride: int = 1):
        self.root = Path(root)
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if start < 0 or (stop is not None and stop < start):
            raise ValueError(f"bad frame range start={start} stop={stop}")
        if not self.root.exists():
            raise DatasetError(f"{self.root}: no such file or directory")
        n_raw = self._raw_count()
        if n_raw == 0:
            raise DatasetError(f"{self.root}: no frames found for format '{self.format_name}'")
        chosen = range(start, n_raw if stop is None else min(stop, n_raw), stride)
        self._poses: dict[int, np.ndarray] = {}
        bad: list[int] = []
        for i in chosen:
            pose = self._raw_pose(i)
            if is_valid_pose(pose):
                self._poses[i] = np.asarray(pose, dtype=np.float64)
            else:
                bad.append(i)
        self._indices = [i for i in chosen if i in self._poses]
        self.skipped_invalid_pose = len(bad)
        if bad and not self._indices:
            raise DatasetError(f"{self.root}: all {len(chosen)} frames have a non-finite or non-rigid pose "
                               f"(first: {self._raw_pose_name(bad[0])}); no frame to map")
        if bad:
            warnings.warn(
                f"{self.root}: skipped {len(bad)} of {len(chosen)} frames with a non-finite or non-rigid pose "
                f"(first: {self._raw_pose_name(bad[0])})",
                stacklevel=2,
            )

    # -- to implement -------------------------------------------------------------------------------
    @abstractmethod
    def _raw_count(self) -> int:
        """Number of frames in the sequence before start/stop/stride and pose filtering."""

    @abstractmethod
    def _raw_pose(self, i: int) -> np.ndarray:
        """Camera-to-world 4x4 pose of raw frame ``i`` (may be invalid: it is then skipped)."""

    @abstractmethod
    def _raw_frame(self, i: int, pose: np.ndarray) -> Frame:
        """Read raw frame ``i``'s images; raise DatasetError naming the file on bad data."""

    def _raw_pose_name(self, i: int) -> str:
        """Where raw frame ``i``'s pose comes from (a file, or a line of one), for messages."""
        return f"raw frame {i}"

    def _intrinsics_name(self) -> str:
        """Where the intrinsics come from (a file, an argument or a default), for messages."""
        return "the intrinsics"

    # -- the interface --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, k: int) -> Frame:
        if not -len(self) <= k < len(self):
            raise IndexError(f"frame {k} out of range for {len(self)} frames")
        i = self._indices[k]
        frame = self._raw_frame(i, self._poses[i]).validate()
        check_intrinsics_fit(frame.K, frame.depth.shape, frame.source or f"frame {frame.index}", self._intrinsics_name())
        return frame

    def __iter__(self) -> Iterator[Frame]:
        for k in range(len(self)):
            yield self[k]

    @property
    def raw_indices(self) -> list[int]:
        return list(self._indices)

    @property
    def poses(self) -> np.ndarray:
        """All kept poses, N x 4 x 4, without reading images."""
        return np.stack([self._poses[i] for i in self._indices]) if self._indices else np.zeros((0, 4, 4))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, frames={len(self)})"
