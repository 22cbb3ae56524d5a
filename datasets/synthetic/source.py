"""`SyntheticSource`: a FrameSource over a SyntheticScene; frames are rendered on demand."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import FrameSource
from ..frame import Frame
from .gt import GTPoints
from .layout import SceneObject


class SyntheticSource(FrameSource):
    """Random access, iteration and start/stop/stride like every reader, plus the scene's ground truth.

    ``root`` is a label (``synthetic/<preset>/seed<k>``), not a directory: nothing is read from disk.
    """

    format_name = "synthetic"

    def __init__(self, scene, start: int = 0, stop: int | None = None, stride: int = 1):
        # FrameSource.__init__ insists on an existing root directory, so set its state directly.
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if start < 0 or (stop is not None and stop < start):
            raise ValueError(f"bad frame range start={start} stop={stop}")
        self.scene = scene
        self.root = Path("synthetic") / scene.name / f"seed{scene.seed}"
        chosen = range(start, len(scene) if stop is None else min(stop, len(scene)), stride)
        self._indices = list(chosen)
        self._poses = {i: scene.poses[i] for i in self._indices}
        self.skipped_invalid_pose = 0

    def _raw_count(self) -> int:
        return len(self.scene)

    def _raw_pose(self, i: int) -> np.ndarray:
        return self.scene.poses[i]

    def _raw_frame(self, i: int, pose: np.ndarray) -> Frame:
        return self.scene.frame(i)

    def gt_points(self) -> GTPoints:
        return self.scene.gt_points()

    def gt_objects(self) -> list[SceneObject]:
        return self.scene.gt_objects()
