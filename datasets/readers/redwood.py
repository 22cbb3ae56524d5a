"""Open3D / Redwood RGB-D: ``color/``, ``depth/`` (sorted), a ``.log`` trajectory and a camera json.

The ``.log`` format (redwood-data.org/indoor/fileformat.html) is groups of five lines: ``id id frame``
then a camera-to-world 4x4; ``frame`` is the 1-based position of the depth image. Depth images without a
pose get a NaN pose and are skipped by the base class. Colour/depth pairs come from ``rgbd.match`` when
present (``depth/X.png color/Y.jpg`` per line), else by sorted position. The camera json (Open3D
``PinholeCameraIntrinsic``) stores ``intrinsic_matrix`` column-major.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..base import FrameSource
from ..frame import DatasetError, Frame
from ..io import check_intrinsics, read_rgbd

CAMERA_FILES = ("camera_intrinsic.json", "camera_primesense.json", "intrinsic.json")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_log(path: Path) -> dict[int, np.ndarray]:
    """Redwood ``.log`` -> {0-based frame position: 4x4 float64 camera-to-world}."""
    if not path.is_file():
        raise DatasetError(f"{path}: trajectory file is missing")
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if len(lines) % 5 != 0:
        raise DatasetError(f"{path}: {len(lines)} non-empty lines, not groups of 5 (metadata + 4x4)")
    metadata, rows = lines[0::5], [lines[k + 1:k + 5] for k in range(0, len(lines), 5)]
    try:
        frames = np.array([int(meta[2]) for meta in metadata]) - 1
        matrices = np.array(rows, dtype=np.float64)
    except (ValueError, IndexError):
        raise DatasetError(f"{path}: malformed group (expected 'id id frame' and four rows of 4 numbers)") from None
    if matrices.ndim != 3 or matrices.shape[1:] != (4, 4):
        raise DatasetError(f"{path}: each pose must be 4 rows of 4 numbers")
    return dict(zip(frames.tolist(), matrices))


def read_camera_json(path: Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Open3D camera json -> (K 3x3 float64, (H, W) or None)."""
    try:
        data = json.loads(path.read_text())
        K = np.asarray(data["intrinsic_matrix"], dtype=np.float64).reshape(3, 3).T
        size = (int(data["height"]), int(data["width"])) if "height" in data and "width" in data else None
    except (ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"{path}: cannot read 'intrinsic_matrix' ({err!r})") from None
    return check_intrinsics(K, str(path)), size


def sorted_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


class RedwoodSource(FrameSource):
    """Reader for Open3D/Redwood-style folders (Redwood indoor, ICL-NUIM as Open3D ships it).

    Options: ``trajectory`` (log file name or path, default ``trajectory.log``, else the only ``*.log``),
    ``camera`` (json name or path; default the first of CAMERA_FILES present), ``K`` (3x3 override; no
    json is then needed), ``depth_scale`` (1000), ``fps`` (30, nominal: timestamps are ``index / fps``).
    ``index`` is the frame's 0-based position.
    """

    format_name = "redwood"

    def __init__(self, root: str | Path, start: int = 0, stop: int | None = None, stride: int = 1, *,
                 trajectory: str | Path | None = None, camera: str | Path | None = None,
                 K: np.ndarray | None = None, depth_scale: float = 1000.0, fps: float = 30.0):
        self._trajectory_arg, self._camera_arg = trajectory, camera
        self._K_override = None if K is None else check_intrinsics(K, "K argument")
        self.depth_scale, self.fps = float(depth_scale), float(fps)
        super().__init__(root, start, stop, stride)
        self.K, self._camera_size = self._find_camera()

    # -- layout ----------------------------------------------------------------------------------------
    def _trajectory_path(self) -> Path:
        if self._trajectory_arg is not None:
            return self.root / self._trajectory_arg
        default = self.root / "trajectory.log"
        logs = sorted(self.root.glob("*.log"))
        if default.is_file() or len(logs) != 1:
            return default
        return logs[0]

    def _find_camera(self) -> tuple[np.ndarray, tuple[int, int] | None]:
        if self._K_override is not None:
            return self._K_override, None
        names = [self._camera_arg] if self._camera_arg is not None else list(CAMERA_FILES)
        for name in names:
            if (self.root / name).is_file():
                self._K_source = str(self.root / name)
                return read_camera_json(self.root / name)
        raise DatasetError(f"{self.root}: intrinsics file is missing (looked for {', '.join(map(str, names))})")

    def _pairs(self) -> list[tuple[Path, Path]]:
        """(colour, depth) paths in frame order."""
        match = self.root / "rgbd.match"
        if match.is_file():
            return [self._match_line(match, n, line) for n, line in enumerate(match.read_text().splitlines(), 1)
                    if line.strip()]
        color, depth = sorted_images(self.root / "color"), sorted_images(self.root / "depth")
        if len(color) != len(depth):
            raise DatasetError(f"{self.root}: {len(color)} colour images in color/ but {len(depth)} in depth/")
        return list(zip(color, depth))

    def _match_line(self, path: Path, line_no: int, line: str) -> tuple[Path, Path]:
        fields = line.split()
        depth = [f for f in fields if f.startswith("depth")]
        color = [f for f in fields if not f.startswith("depth")]
        if len(fields) != 2 or len(depth) != 1:
            raise DatasetError(f"{path}:{line_no}: expected 'depth/X color/Y', got {line.strip()!r}")
        return self.root / color[0], self.root / depth[0]

    # -- FrameSource ------------------------------------------------------------------------------------
    def _raw_count(self) -> int:
        self._frames = self._pairs()
        self.trajectory_path = self._trajectory_path()
        self._log = read_log(self.trajectory_path)
        return len(self._frames)

    def _intrinsics_name(self) -> str:
        return "K argument" if self._K_override is not None else self._K_source

    def _raw_pose_name(self, i: int) -> str:
        return f"{self.trajectory_path} pose of {self._frames[i][1].name}"

    def _raw_pose(self, i: int) -> np.ndarray:
        return self._log.get(i, np.full((4, 4), np.nan))

    def _raw_frame(self, i: int, pose: np.ndarray) -> Frame:
        color_path, depth_path = self._frames[i]
        color, depth, _ = read_rgbd(color_path, depth_path, self.depth_scale)
        if self._camera_size is not None and depth.shape != self._camera_size:
            raise DatasetError(f"{depth_path}: depth is {depth.shape[::-1]} but the camera json says "
                               f"{self._camera_size[::-1]} (W, H)")
        return Frame(
            index=i,
            timestamp=i / self.fps,
            color=color,
            depth=depth,
            K=self.K.copy(),
            pose=pose,
            source=str(depth_path),
            meta={"color_path": str(color_path), "depth_path": str(depth_path)},
        )
