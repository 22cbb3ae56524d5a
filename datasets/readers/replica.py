"""Replica in the NICE-SLAM layout: ``results/frameNNNNNN.jpg``, ``results/depthNNNNNN.png``, ``traj.txt``.

``traj.txt`` holds one row-major camera-to-world 4x4 per line, OpenCV axes, used as is (NICE-SLAM flips
y and z inside its own loader; the files do not need it). Line N is the pose of frame N. The sequence
is the frames whose colour AND depth images are present (NICE-SLAM's release ships 2000; trimmed copies
ship fewer than ``traj.txt`` lists): a colour image without depth, or the reverse, is an error rather
than a silent gap. Depth is ``value / 6553.5`` unless ``cam_params.json`` gives another ``scale``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..base import FrameSource
from ..frame import DatasetError, Frame
from ..io import check_intrinsics, numbered_files, paired_numbers, read_rgbd

REPLICA_DEFAULT_CAMERA = {"fx": 600.0, "fy": 600.0, "cx": 599.5, "cy": 339.5, "scale": 6553.5}


def find_replica_sequence(root: Path) -> Path | None:
    """The folder holding ``results/`` and ``traj.txt``: ``root`` itself or exactly one sub-folder."""
    if (root / "results").is_dir() and (root / "traj.txt").is_file():
        return root
    subs = sorted(p for p in root.iterdir() if (p / "results").is_dir() and (p / "traj.txt").is_file()) \
        if root.is_dir() else []
    return subs[0] if len(subs) == 1 else None


def read_cam_params(path: Path) -> dict[str, float]:
    """NICE-SLAM ``cam_params.json`` -> {fx, fy, cx, cy, scale}, defaults for absent keys."""
    try:
        camera = json.loads(path.read_text())["camera"]
        values = {key: float(camera.get(key, default)) for key, default in REPLICA_DEFAULT_CAMERA.items()}
        values.update({key: int(camera[key]) for key in ("w", "h") if key in camera})  # the image size, if given
        return values
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DatasetError(f"{path}: cannot read camera parameters ({err!r})") from None


def read_traj(path: Path) -> np.ndarray:
    """``traj.txt`` -> N x 4 x 4 float64 (one row-major matrix of 16 numbers per line)."""
    if not path.is_file():
        raise DatasetError(f"{path}: trajectory file is missing")
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise DatasetError(f"{path}: not a numeric trajectory ({err})") from None
    if values.shape[1] != 16:
        raise DatasetError(f"{path}: expected 16 numbers per line (row-major 4x4), got {values.shape[1]}")
    return values.reshape(-1, 4, 4)


class ReplicaSource(FrameSource):
    """Reader for a NICE-SLAM Replica sequence (``root`` = the sequence folder or its parent).

    Options: ``K`` (3x3 override), ``depth_scale`` (override of cam_params/6553.5), ``fps`` (nominal,
    timestamps are ``index / fps``). ``cam_params.json`` is looked up in the sequence folder, then its
    parent. ``index`` is the number in the file name.
    """

    format_name = "replica"

    def __init__(self, root: str | Path, start: int = 0, stop: int | None = None, stride: int = 1, *,
                 K: np.ndarray | None = None, depth_scale: float | None = None, fps: float = 30.0):
        self._K_override = None if K is None else check_intrinsics(K, "K argument")
        self._scale_override = depth_scale
        self.fps = float(fps)
        super().__init__(root, start, stop, stride)

    def _scan(self) -> None:
        seq = find_replica_sequence(self.root)
        if seq is None:
            raise DatasetError(f"{self.root}: no results/ folder with traj.txt here or in one sub-folder")
        self.sequence_dir = seq
        color = numbered_files(seq / "results", r"frame(\d+)\.(?:jpg|png)")
        depth = numbered_files(seq / "results", r"depth(\d+)\.png")
        self._numbers = paired_numbers("colour", color, "depth", depth, seq / "results")
        self._color, self._depth = color, depth
        self._traj = read_traj(seq / "traj.txt")
        if self._numbers and self._numbers[-1] >= len(self._traj):
            raise DatasetError(
                f"{seq / 'traj.txt'}: {len(self._traj)} poses but frame {self._numbers[-1]} has images"
            )
        self._camera = self._find_camera(seq)

    def _find_camera(self, seq: Path) -> dict[str, float]:
        for path in (seq / "cam_params.json", seq.parent / "cam_params.json"):
            if path.is_file():
                self._camera_source = str(path)
                return read_cam_params(path)
        self._camera_source = "the Replica default, no cam_params.json"
        return dict(REPLICA_DEFAULT_CAMERA)

    def _intrinsics_name(self) -> str:
        return "K argument" if self._K_override is not None else self._camera_source

    def _raw_pose_name(self, i: int) -> str:
        return f"{self.sequence_dir / 'traj.txt'} line {self._numbers[i] + 1}"

    @property
    def K(self) -> np.ndarray:
        if self._K_override is not None:
            return self._K_override.copy()
        c = self._camera
        return np.array([[c["fx"], 0.0, c["cx"]], [0.0, c["fy"], c["cy"]], [0.0, 0.0, 1.0]])

    @property
    def depth_scale(self) -> float:
        return float(self._scale_override or self._camera["scale"])

    def _raw_count(self) -> int:
        self._scan()
        return len(self._numbers)

    def _raw_pose(self, i: int) -> np.ndarray:
        return self._traj[self._numbers[i]]

    def _raw_frame(self, i: int, pose: np.ndarray) -> Frame:
        n = self._numbers[i]
        color, depth, _ = read_rgbd(self._color[n], self._depth[n], self.depth_scale)
        size = self._camera.get("h"), self._camera.get("w")
        if self._K_override is None and None not in size and depth.shape != size:
            raise DatasetError(f"{self._depth[n]}: depth is {depth.shape[1]}x{depth.shape[0]} but "
                               f"{self._camera_source} says {size[1]}x{size[0]}")
        return Frame(
            index=n,
            timestamp=n / self.fps,
            color=color,
            depth=depth,
            K=self.K,
            pose=pose,
            source=str(self._depth[n]),
            meta={"color_path": str(self._color[n]), "depth_path": str(self._depth[n])},
        )
