"""The `Frame`: one posed RGB-D observation, the type every later stage consumes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class DatasetError(Exception):
    """Bad input data: the message names the file and the problem."""


@dataclass
class Frame:
    """One posed RGB-D frame.

    Units and conventions (the same everywhere in the project):
      - ``color``: H x W x 3 uint8 RGB, resized to the depth image's size.
      - ``depth``: H x W float32 metres, 0 marks invalid pixels.
      - ``K``: 3 x 3 float64 pinhole intrinsics of the depth image (pixels).
      - ``pose``: 4 x 4 float64 camera-to-world, OpenCV camera axes (x right, y down, z forward).
      - ``instance_ids``: optional H x W int32 ground-truth instance ids; 0 = no instance / void.
      - ``index``: the frame's number in its sequence (before stride), ``timestamp`` in seconds.
    """

    index: int
    timestamp: float
    color: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    pose: np.ndarray
    instance_ids: np.ndarray | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.depth.shape[0])

    @property
    def width(self) -> int:
        return int(self.depth.shape[1])

    def validate(self) -> "Frame":
        """Check shapes, dtypes and finiteness; raise DatasetError naming ``source``."""
        where = self.source or f"frame {self.index}"
        if self.depth.ndim != 2 or self.depth.dtype != np.float32:
            raise DatasetError(f"{where}: depth must be HxW float32, got {self.depth.dtype} {self.depth.shape}")
        h, w = self.depth.shape
        if self.color.shape != (h, w, 3) or self.color.dtype != np.uint8:
            raise DatasetError(
                f"{where}: colour must be {h}x{w}x3 uint8 to match depth, got {self.color.dtype} {self.color.shape}"
            )
        if self.K.shape != (3, 3) or not np.all(np.isfinite(self.K)):
            raise DatasetError(f"{where}: intrinsics must be a finite 3x3 matrix, got {self.K}")
        if not is_valid_pose(self.pose):
            raise DatasetError(f"{where}: pose is not a finite rigid 4x4 transform")
        if self.instance_ids is not None and self.instance_ids.shape != (h, w):
            raise DatasetError(f"{where}: instance ids must be {h}x{w}, got {self.instance_ids.shape}")
        return self


def is_valid_pose(pose: np.ndarray, tol: float = 1e-3) -> bool:
    """True for a finite 4x4 rigid transform (orthonormal rotation with det +1, last row 0 0 0 1)."""
    pose = np.asarray(pose)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        return False
    R = pose[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=tol) or abs(np.linalg.det(R) - 1.0) > tol:
        return False
    return bool(np.allclose(pose[3], [0.0, 0.0, 0.0, 1.0], atol=tol))
