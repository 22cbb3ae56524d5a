"""Microsoft 7-Scenes and 3DMatch: ``[seq-XX/]frame-NNNNNN.{color.png|color.jpg, depth.png, pose.txt}``.

Depth is millimetres with 0 and 65535 invalid; 7-Scenes depth is not registered to colour and is used as
is (K is the depth camera's). ``camera-intrinsics.txt`` (3x3) is read from the root (or its parent), else the 7-Scenes
default 585/585/320/240. Frame numbers may be sparse (3DMatch ships 0, 1, 2, 116, 422): ``index`` is the
number in the file name and ``timestamp = index / 30`` (Kinect v1 rate).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import FrameSource
from ..frame import DatasetError, Frame
from ..io import check_intrinsics, numbered_files, paired_numbers, read_intrinsics, read_matrix, read_rgbd

SEVEN_SCENES_K = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])


def sequence_dirs(root: Path) -> list[Path]:
    """Folders holding ``frame-*.pose.txt``: ``root`` itself if it has any, else its ``seq-*`` folders."""
    if any(root.glob("frame-*.pose.txt")):
        return [root]
    return sorted(p for p in root.glob("seq-*") if p.is_dir() and any(p.glob("frame-*.pose.txt")))


class SevenScenesSource(FrameSource):
    """Reader for 7-Scenes / 3DMatch scenes; several ``seq-XX`` folders are read one after another.

    Options: ``sequences`` (folder names to read, e.g. ["seq-01"]; None = all), ``K`` (3x3 override),
    ``depth_scale`` (1000), ``fps`` (30). ``Frame.meta["sequence"]`` names the frame's folder.
    """

    format_name = "7scenes"

    def __init__(self, root: str | Path, start: int = 0, stop: int | None = None, stride: int = 1, *,
                 sequences: list[str] | None = None, K: np.ndarray | None = None,
                 depth_scale: float = 1000.0, fps: float = 30.0):
        self.sequences = None if sequences is None else list(sequences)
        self.depth_scale, self.fps = float(depth_scale), float(fps)
        self._K_override = None if K is None else check_intrinsics(K, "K argument")
        super().__init__(root, start, stop, stride)
        self.K = self._K_override if self._K_override is not None else self._read_K()

    def _read_K(self) -> np.ndarray:
        """``camera-intrinsics.txt`` in the root (or its parent, when the root is a ``seq-XX`` folder)."""
        for path in (self.root / "camera-intrinsics.txt", self.root.parent / "camera-intrinsics.txt"):
            if path.is_file():
                self._K_source = str(path)
                return read_intrinsics(path)
        self._K_source = "the 7-Scenes default, no camera-intrinsics.txt"
        return SEVEN_SCENES_K.copy()

    def _intrinsics_name(self) -> str:
        return "K argument" if self._K_override is not None else self._K_source

    def _raw_pose_name(self, i: int) -> str:
        return str(self._pose_path(i))

    def _scan(self) -> None:
        folders = sequence_dirs(self.root)
        if self.sequences is not None:
            missing = sorted(set(self.sequences) - {p.name for p in folders})
            if missing:
                raise DatasetError(f"{self.root}: no sequence folder(s) {missing} with frames")
            folders = [p for p in folders if p.name in self.sequences]
        self._entries: list[tuple[Path, int]] = []
        self._color_of: dict[tuple[Path, int], Path] = {}
        self._depth_of: dict[tuple[Path, int], Path] = {}
        for folder in folders:
            color = numbered_files(folder, r"frame-(\d+)\.color\.(?:png|jpg)")
            depth = numbered_files(folder, r"frame-(\d+)\.depth\.png")
            numbers = paired_numbers("colour", color, "depth", depth, folder)
            self._entries += [(folder, n) for n in numbers]
            self._color_of.update({(folder, n): color[n] for n in numbers})
            self._depth_of.update({(folder, n): depth[n] for n in numbers})

    def _raw_count(self) -> int:
        self._scan()
        return len(self._entries)

    def _pose_path(self, i: int) -> Path:
        depth_path = self._depth_of[self._entries[i]]
        return depth_path.with_name(depth_path.name.replace(".depth.png", ".pose.txt"))

    def _raw_pose(self, i: int) -> np.ndarray:
        return read_matrix(self._pose_path(i), (4, 4))

    def _raw_frame(self, i: int, pose: np.ndarray) -> Frame:
        folder, n = self._entries[i]
        color_path, depth_path = self._color_of[(folder, n)], self._depth_of[(folder, n)]
        color, depth, _ = read_rgbd(color_path, depth_path, self.depth_scale, invalid_values=(65535,))
        return Frame(
            index=n,
            timestamp=n / self.fps,
            color=color,
            depth=depth,
            K=self.K.copy(),
            pose=pose,
            source=str(depth_path),
            meta={"color_path": str(color_path), "depth_path": str(depth_path), "sequence": folder.name},
        )
