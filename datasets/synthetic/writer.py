"""Write a synthetic scene in the project's on-disk layout (`docs/layout.md`, "scene-rgbd" version 1)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ..frame import Frame

LAYOUT_FORMAT, LAYOUT_VERSION = "scene-rgbd", 1
_UINT16_MAX = 65535


def write_scene(
    scene, out_dir: str | Path, depth_scale: float = 1000.0, frames=None, instances: bool = True, gt: bool = True
) -> Path:
    """Render every frame of ``scene`` (a SyntheticScene) and write the layout under ``out_dir``.

    Depth is stored as uint16 ``round(metres * depth_scale)``; poses are the reported camera-to-world
    poses (with drift, the true ones go to ``scene.json`` under ``generator.gt_poses``). ``frames``
    (optional) is an iterable of already rendered frames 0..n-1 to write instead. Returns ``out_dir``.
    """
    if not depth_scale > 0:
        raise ValueError(f"depth_scale must be > 0, got {depth_scale}")
    max_depth = _UINT16_MAX / depth_scale
    root = Path(out_dir)
    for sub in ("color", "depth", "pose") + (("instance",) if instances else ()):
        (root / sub).mkdir(parents=True, exist_ok=True)
    timestamps = []
    for k, frame in enumerate(frames if frames is not None else scene.frames()):
        if frame.index != k:
            raise ValueError(f"write_scene: frames must be numbered 0..n-1 in order, got index {frame.index} at {k}")
        write_frame(root, frame, depth_scale, max_depth, instances)
        timestamps.append(frame.timestamp)
    _write_scene_json(root, scene, timestamps, depth_scale)
    if gt:
        write_ground_truth(root, scene)
    return root


def write_frame(root: Path, frame: Frame, depth_scale: float, max_depth: float, instances: bool) -> None:
    name = f"{frame.index:06d}"
    _imwrite(root / "color" / f"{name}.png", cv2.cvtColor(frame.color, cv2.COLOR_RGB2BGR))
    if np.any(frame.depth > max_depth):
        raise ValueError(f"{frame.source}: depth beyond {max_depth:.1f} m does not fit uint16 at scale {depth_scale}")
    _imwrite(root / "depth" / f"{name}.png", np.round(frame.depth.astype(np.float64) * depth_scale).astype(np.uint16))
    np.savetxt(root / "pose" / f"{name}.txt", frame.pose, fmt="%.17g")
    if instances and frame.instance_ids is not None:
        if frame.instance_ids.max(initial=0) > _UINT16_MAX or frame.instance_ids.min(initial=0) < 0:
            raise ValueError(f"{frame.source}: instance ids must lie in 0..65535 for a uint16 PNG")
        _imwrite(root / "instance" / f"{name}.png", frame.instance_ids.astype(np.uint16))


def write_ground_truth(root: Path, scene, max_views: int = 30) -> None:
    """Write ``gt/points.npz`` and ``gt/objects.json``. Like a scanned mesh, the points are only those on
    surfaces some camera of the sequence sees (checked from up to ``max_views`` true poses): surfaces no
    frame shows (the ceiling behind the camera, undersides, floor under boxes) cannot be mapped and would
    only count against every method."""
    (root / "gt").mkdir(parents=True, exist_ok=True)
    xyz, ids, colors = scene.observed_gt_points(max_views)
    np.savez_compressed(root / "gt" / "points.npz", xyz=xyz.astype(np.float32), ids=ids.astype(np.int32),
                        colors=colors.astype(np.uint8))
    (root / "gt" / "objects.json").write_text(json.dumps([o.to_json() for o in scene.gt_objects()], indent=1))


def _write_scene_json(root: Path, scene, timestamps: list[float], depth_scale: float) -> None:
    meta = {
        "format": LAYOUT_FORMAT, "version": LAYOUT_VERSION, "num_frames": len(timestamps),
        "width": scene.width, "height": scene.height, "K": scene.K.tolist(), "depth_scale": depth_scale,
        "fps": scene.config.camera.fps, "timestamps": [float(t) for t in timestamps],
        "generator": scene.provenance(),
    }
    if not np.array_equal(scene.poses, scene.gt_poses):  # pose drift: keep the true poses as provenance
        meta["generator"]["gt_poses"] = scene.gt_poses[: len(timestamps)].tolist()
    (root / "scene.json").write_text(json.dumps(meta, indent=1))


def _imwrite(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: could not write image")
