"""The project's own layout (`docs/layout.md`, "scene-rgbd" version 1), identified by ``scene.json``.

Frames ``000000..num_frames-1``: ``color/`` PNG or JPG, ``depth/`` uint16 PNG (``value / depth_scale``
metres), ``pose/`` 4x4 camera-to-world text, optional ``instance/`` uint16 PNG ids (0 = void). Optional
3D ground truth in ``gt/``: :meth:`ProjectSource.gt_points` and :meth:`ProjectSource.gt_objects`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..base import FrameSource
from ..frame import DatasetError, Frame
from ..gt import GTPoints
from ..io import check_intrinsics, numbered_files, read_matrix, read_rgbd

LAYOUT_FORMAT, LAYOUT_VERSION = "scene-rgbd", 1


@dataclass
class GTObject:
    """One ground-truth object: world-frame axis-aligned box in metres, RGB colour 0-255."""

    id: int
    kind: str
    is_structure: bool
    aabb_min: np.ndarray
    aabb_max: np.ndarray
    color: tuple[int, int, int]
    extra: dict = field(default_factory=dict)


@dataclass
class SceneInfo:
    """The parsed ``scene.json``."""

    num_frames: int
    width: int
    height: int
    K: np.ndarray
    depth_scale: float
    fps: float
    timestamps: np.ndarray | None
    raw: dict


def read_scene_json(path: Path) -> SceneInfo:
    """Parse and check ``scene.json``; DatasetError naming the file and the bad key."""
    if not path.is_file():
        raise DatasetError(f"{path}: scene.json is missing")
    try:
        raw = json.loads(path.read_text())
    except ValueError as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict) or raw.get("format") != LAYOUT_FORMAT:
        raise DatasetError(f"{path}: 'format' must be {LAYOUT_FORMAT!r}")
    if raw.get("version") != LAYOUT_VERSION:
        raise DatasetError(f"{path}: unsupported layout version {raw.get('version')!r} (reader knows {LAYOUT_VERSION})")
    try:
        info = SceneInfo(
            num_frames=int(raw["num_frames"]),
            width=int(raw["width"]),
            height=int(raw["height"]),
            K=check_intrinsics(np.asarray(raw["K"], dtype=np.float64), f"{path} 'K'"),
            depth_scale=float(raw["depth_scale"]),
            fps=float(raw.get("fps", 30.0)),
            timestamps=None if raw.get("timestamps") is None else np.asarray(raw["timestamps"], dtype=np.float64),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"{path}: missing or malformed key ({err!r})") from None
    if info.timestamps is not None and info.timestamps.shape != (info.num_frames,):
        raise DatasetError(f"{path}: 'timestamps' has {info.timestamps.size} values for {info.num_frames} frames")
    if info.depth_scale <= 0 or info.fps <= 0:
        raise DatasetError(f"{path}: 'depth_scale' and 'fps' must be positive")
    return info


class ProjectSource(FrameSource):
    """Reader for the project layout. Options: ``load_instances`` (True: fill ``Frame.instance_ids``
    from ``instance/`` when that folder exists). ``index`` is the frame number; ``timestamp`` comes
    from ``scene.json`` (``timestamps`` or ``index / fps``)."""

    format_name = "project"

    def __init__(self, root: str | Path, start: int = 0, stop: int | None = None, stride: int = 1, *,
                 load_instances: bool = True):
        self.load_instances = load_instances
        super().__init__(root, start, stop, stride)

    def _raw_count(self) -> int:
        self.info = read_scene_json(self.root / "scene.json")
        n = self.info.num_frames
        color = numbered_files(self.root / "color", r"(\d{6})\.(?:png|jpg)")
        depth = numbered_files(self.root / "depth", r"(\d{6})\.png")
        for kind, files in (("color", color), ("depth", depth)):
            if list(files) != list(range(n)):
                raise DatasetError(
                    f"{self.root / kind}: scene.json says {n} frames (000000..{n - 1:06d}), found {len(files)} files"
                    + (f", first missing {min(set(range(n)) - set(files)):06d}" if set(range(n)) - set(files) else "")
                )
        self._color, self._depth = color, depth
        self._has_instances = self.load_instances and (self.root / "instance").is_dir()
        return n

    def _intrinsics_name(self) -> str:
        return str(self.root / "scene.json")

    def _raw_pose_name(self, i: int) -> str:
        return str(self.root / "pose" / f"{i:06d}.txt")

    def _raw_pose(self, i: int) -> np.ndarray:
        return read_matrix(self.root / "pose" / f"{i:06d}.txt", (4, 4))

    def _raw_frame(self, i: int, pose: np.ndarray) -> Frame:
        color, depth, _ = read_rgbd(self._color[i], self._depth[i], self.info.depth_scale, invalid_values=())
        if depth.shape != (self.info.height, self.info.width):
            raise DatasetError(f"{self._depth[i]}: depth is {depth.shape[1]}x{depth.shape[0]}, "
                               f"scene.json says {self.info.width}x{self.info.height}")
        stamps = self.info.timestamps
        return Frame(
            index=i,
            timestamp=float(stamps[i]) if stamps is not None else i / self.info.fps,
            color=color,
            depth=depth,
            K=self.info.K.copy(),
            pose=pose,
            instance_ids=self._read_instances(i) if self._has_instances else None,
            source=str(self._depth[i]),
            meta={"color_path": str(self._color[i]), "depth_path": str(self._depth[i])},
        )

    def _read_instances(self, i: int) -> np.ndarray:
        path = self.root / "instance" / f"{i:06d}.png"
        if not path.is_file():
            raise DatasetError(f"{path}: instance image is missing")
        ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if ids is None or ids.ndim != 2 or ids.dtype not in (np.uint8, np.uint16):
            raise DatasetError(f"{path}: instance ids must be a single-channel 8/16-bit PNG")
        return ids.astype(np.int32)

    # -- ground truth ------------------------------------------------------------------------------------
    def gt_points(self) -> GTPoints | None:
        """``gt/points.npz`` as :class:`GTPoints`, or None when the file is absent."""
        path = self.root / "gt" / "points.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                xyz, ids, colors = data["xyz"], data["ids"], data["colors"]
        except (KeyError, ValueError, OSError) as err:
            raise DatasetError(f"{path}: needs arrays 'xyz', 'ids', 'colors' ({err!r})") from None
        n = len(xyz)
        if xyz.shape != (n, 3) or ids.shape != (n,) or colors.shape != (n, 3):
            raise DatasetError(f"{path}: shapes xyz {xyz.shape}, ids {ids.shape}, colors {colors.shape} disagree")
        return GTPoints(xyz.astype(np.float32), ids.astype(np.int32), colors.astype(np.uint8))

    def gt_objects(self) -> list[GTObject] | None:
        """``gt/objects.json`` as a list of :class:`GTObject`, or None when the file is absent."""
        path = self.root / "gt" / "objects.json"
        if not path.is_file():
            return None
        try:
            return [self._gt_object(entry) for entry in json.loads(path.read_text())]
        except (ValueError, KeyError, TypeError) as err:
            raise DatasetError(f"{path}: malformed object list ({err!r})") from None

    @staticmethod
    def _gt_object(entry: dict) -> GTObject:
        known = {"id", "kind", "is_structure", "aabb_min", "aabb_max", "color"}
        return GTObject(
            id=int(entry["id"]),
            kind=str(entry["kind"]),
            is_structure=bool(entry["is_structure"]),
            aabb_min=np.asarray(entry["aabb_min"], dtype=np.float64).reshape(3),
            aabb_max=np.asarray(entry["aabb_max"], dtype=np.float64).reshape(3),
            color=tuple(int(c) for c in entry["color"]),
            extra={k: v for k, v in entry.items() if k not in known},
        )
