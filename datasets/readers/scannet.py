"""ScanNet exported frames: ``color/N.jpg``, ``depth/N.png`` (mm), ``pose/N.txt``, ``intrinsic/*.txt``.

This is the layout of ScanNet's ``SensReader`` export. Colour (1296x968) is resized to depth (640x480)
and ``K`` is the depth camera's: ``intrinsic/intrinsic_depth.txt`` when present, otherwise the colour
intrinsics scaled by the resolution ratio (the file is often missing in exports).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import FrameSource
from ..frame import DatasetError, Frame
from ..io import (
    check_intrinsics, numbered_files, paired_numbers, read_intrinsics, read_matrix, read_rgbd, scale_intrinsics,
)


class ScanNetSource(FrameSource):
    """Reader for ScanNet ``SensReader`` exports. ``index`` is the number in the file name.

    Options: ``depth_scale`` (stored units per metre, 1000), ``K`` (3x3 override of the depth
    intrinsics), ``fps`` (timestamps are ``index / fps`` seconds; ScanNet records at 30 Hz).
    Poses are camera-to-world, OpenCV axes; ``-inf`` poses are skipped by the base class.
    """

    format_name = "scannet"

    def __init__(
        self,
        root: str | Path,
        start: int = 0,
        stop: int | None = None,
        stride: int = 1,
        *,
        depth_scale: float = 1000.0,
        K: np.ndarray | None = None,
        fps: float = 30.0,
    ):
        self.depth_scale = float(depth_scale)
        self.fps = float(fps)
        self._K_override = None if K is None else check_intrinsics(K, "K argument")
        super().__init__(root, start, stop, stride)
        self._depth_K, self._color_K = self._find_intrinsics()

    # -- layout ----------------------------------------------------------------------------------------
    def _scan(self) -> None:
        """Fill ``_numbers`` and the colour/depth/pose file maps."""
        color = numbered_files(self.root / "color", r"(\d+)\.(?:jpg|jpeg|png)")
        depth = numbered_files(self.root / "depth", r"(\d+)\.png")
        self._numbers = paired_numbers("colour", color, "depth", depth, self.root)
        self._color, self._depth = color, depth
        self._pose_path = {n: self.root / "pose" / f"{n}.txt" for n in self._numbers}

    def _intrinsics_candidates(self) -> list[tuple[Path, str]]:
        """Intrinsics files to try in order, each tagged with its camera: "depth" or "color"."""
        folder = self.root / "intrinsic"
        return [(folder / "intrinsic_depth.txt", "depth"), (folder / "intrinsic_color.txt", "color")]

    def _find_intrinsics(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(depth K, colour K): exactly one is set; the colour K is scaled per frame."""
        if self._K_override is not None:
            return self._K_override, None
        candidates = self._intrinsics_candidates()
        for path, camera in candidates:
            if path.is_file():
                self._K_source = f"{path}" + (", scaled from the colour image" if camera == "color" else "")
                K = read_intrinsics(path)
                return (K, None) if camera == "depth" else (None, K)
        names = ", ".join(str(path) for path, _ in candidates)
        raise DatasetError(f"{self.root}: intrinsics file is missing (looked for {names})")

    # -- FrameSource ------------------------------------------------------------------------------------
    def _raw_count(self) -> int:
        self._scan()
        return len(self._numbers)

    def _intrinsics_name(self) -> str:
        return "K argument" if self._K_override is not None else self._K_source

    def _raw_pose_name(self, i: int) -> str:
        return str(self._pose_path[self._numbers[i]])

    def _raw_pose(self, i: int) -> np.ndarray:
        return read_matrix(self._pose_path[self._numbers[i]], (4, 4))

    def _raw_frame(self, i: int, pose: np.ndarray) -> Frame:
        n = self._numbers[i]
        color, depth, color_hw = read_rgbd(self._color[n], self._depth[n], self.depth_scale)
        return Frame(
            index=n,
            timestamp=n / self.fps,
            color=color,
            depth=depth,
            K=self.depth_intrinsics(color_hw, depth.shape),
            pose=pose,
            source=str(self._depth[n]),
            meta={"color_path": str(self._color[n]), "depth_path": str(self._depth[n])},
        )

    def depth_intrinsics(self, color_hw: tuple[int, int], depth_hw: tuple[int, int]) -> np.ndarray:
        """The depth image's K: the depth camera's own, else the colour K scaled to ``depth_hw``."""
        if self._depth_K is not None:
            return self._depth_K.copy()
        return scale_intrinsics(self._color_K, color_hw, depth_hw)
