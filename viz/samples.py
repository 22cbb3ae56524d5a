"""Ground-truth instance maps for pictures, tests and demos, without running the pipeline.

``synthetic_map``: one ``MapObject`` per ground-truth id of a generated scene, with the scene's poses as
trajectory. ``scannet_points_map``: a ScanNet scan's mesh vertices cut into objects by its ground-truth
boxes. Metres, world frame (z up); poses camera-to-world, OpenCV axes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scene.datasets.frame import is_valid_pose
from scene.map import InstanceMap, MapMetadata, MapObject


def synthetic_map(
    scene, max_points_per_object: int | None = 20000, seed: int = 0, source_path: str | Path = "",
) -> InstanceMap:
    """An ``InstanceMap`` of a ``scene.datasets.synthetic`` scene's ground truth: per GT id, its surface
    points (randomly thinned to ``max_points_per_object``), albedo colours, kind and structure flag;
    best view and its box from ``best_view`` (the
    camera seeing most of the object). ``source_path``: where the scene was written (``write_scene``),
    for image crops."""
    xyz, ids, colors = scene.gt_points()
    rng = np.random.default_rng(seed)
    poses = np.asarray(scene.gt_poses, np.float64)
    metadata = MapMetadata(voxel_size=0.025, source_path=str(source_path), K=np.asarray(scene.K, np.float64),
                           image_size=(scene.height, scene.width), up=np.array([0.0, 0.0, 1.0]))
    instance_map = InstanceMap(metadata)
    order = np.argsort(ids, kind="stable")
    starts = np.searchsorted(ids[order], [o.id for o in scene.gt_objects()])
    ends = np.searchsorted(ids[order], [o.id for o in scene.gt_objects()], side="right")
    for obj, start, end in zip(scene.gt_objects(), starts, ends):
        rows = order[start:end]
        if len(rows) == 0:
            continue
        if max_points_per_object is not None and len(rows) > max_points_per_object:
            rows = rng.choice(rows, max_points_per_object, replace=False)
        nearest, box = best_view(xyz[rows], poses, scene.K, scene.width, scene.height)
        instance_map.add(MapObject.from_points(
            int(obj.id), xyz[rows], colors[rows], up=metadata.up, num_observations=len(poses),
            first_frame=0, last_frame=len(poses) - 1, is_structure=bool(obj.is_structure),
            best_view_frame=nearest, best_view_box=box,
            attributes={"kind": obj.kind},
        ))
    for i, pose in enumerate(poses):
        instance_map.add_frame(i, pose)
    return instance_map


def best_view(points: np.ndarray, poses: np.ndarray, K: np.ndarray, width: int, height: int,
              samples: int = 400) -> tuple[int, np.ndarray]:
    """(row into ``poses``, x0 y0 x1 y1 pixel box) of the camera that sees most of the object's points
    inside its image at 0.3-6 m (no occlusion test); box of the points seen there."""
    rng = np.random.default_rng(0)
    p = np.asarray(points, np.float64)
    p = p[rng.choice(len(p), min(samples, len(p)), replace=False)]
    rotations, centres = poses[:, :3, :3], poses[:, :3, 3]
    camera = np.einsum("nj,fjk->fnk", p, rotations) - np.einsum("fj,fjk->fk", centres, rotations)[:, None]
    z = camera[..., 2]
    safe = np.where(z > 1e-6, z, 1.0)
    u = camera[..., 0] / safe * K[0, 0] + K[0, 2]
    v = camera[..., 1] / safe * K[1, 1] + K[1, 2]
    seen = (z > 0.3) & (z < 6.0) & (u >= 0) & (u <= width - 1) & (v >= 0) & (v <= height - 1)
    best = int(np.argmax(seen.sum(axis=1)))
    if not seen[best].any():
        return best, np.zeros(4, np.float32)
    us, vs = u[best][seen[best]], v[best][seen[best]]
    return best, np.array([us.min(), vs.min(), us.max(), vs.max()], np.float32)


def scannet_points_map(scene_dir: str | Path, max_points: int = 60000, seed: int = 0) -> InstanceMap:
    """An ``InstanceMap`` from a ScanNet folder in the mmdetection3d layout (``points/*.bin`` float32
    N x 6 xyz rgb, ``gt_boxes.json`` boxes in the aligned frame with ``axis_align_matrix``): one object
    per GT box (points inside it, first box wins), the rest as one structure object; trajectory from
    ``posed_images/*.txt``. Points are thinned at random to ``max_points``."""
    root = Path(scene_dir)
    bins = sorted((root / "points").glob("*.bin"))
    if not bins or not (root / "gt_boxes.json").is_file():
        raise FileNotFoundError(f"{root}: need points/*.bin and gt_boxes.json (ScanNet mmdetection3d layout)")
    raw = np.fromfile(bins[0], dtype=np.float32)
    if raw.size % 6:
        raise ValueError(f"{bins[0]}: size {raw.size} floats is not a multiple of 6 (x y z r g b)")
    raw = raw.reshape(-1, 6)
    rng = np.random.default_rng(seed)
    raw = raw[rng.choice(len(raw), min(max_points, len(raw)), replace=False)]
    boxes = json.loads((root / "gt_boxes.json").read_text())
    if "boxes" not in boxes or "axis_align_matrix" not in boxes:
        raise ValueError(f"{root / 'gt_boxes.json'}: need 'boxes' and 'axis_align_matrix'")
    xyz, rgb = raw[:, :3].astype(np.float64), np.clip(raw[:, 3:], 0, 255).astype(np.uint8)
    owner = _box_owner(xyz, boxes)
    instance_map = InstanceMap(MapMetadata(voxel_size=0.02, source_path=str(root), source_format="scannet-posed",
                                           up=np.array([0.0, 0.0, 1.0])))
    labels = _box_labels(boxes)
    frames, poses = _scannet_poses(root / "posed_images")
    K = np.loadtxt(root / "intrinsic_depth.txt")[:3, :3] if (root / "intrinsic_depth.txt").is_file() else None
    for k in np.unique(owner):
        rows = np.flatnonzero(owner == k)
        structure = k < 0
        if len(rows) < 3:
            continue
        view = {}
        if K is not None and len(poses) and not structure:
            nearest, box = best_view(xyz[rows], poses, K, 640, 480)
            view = {"best_view_frame": int(frames[nearest]), "best_view_box": box}
        instance_map.add(MapObject(int(k + 1), xyz[rows], rgb[rows], is_structure=bool(structure),
                                   attributes={"label": "room" if structure else labels[int(k)]}, **view))
    for i, pose in zip(frames, poses):
        instance_map.add_frame(int(i), pose)
    return instance_map


def _box_owner(xyz: np.ndarray, boxes: dict) -> np.ndarray:
    """Index of the first GT box containing each point (aligned frame), -1 for none."""
    align = np.asarray(boxes["axis_align_matrix"], np.float64).reshape(4, 4)
    aligned = xyz @ align[:3, :3].T + align[:3, 3]
    owner = np.full(len(xyz), -1, np.int64)
    for k, box in reversed(list(enumerate(boxes["boxes"]))):
        centre, size = np.asarray(box["center_aligned"], np.float64), np.asarray(box["size"], np.float64)
        inside = np.all(np.abs(aligned - centre) <= size / 2.0, axis=1)
        owner[inside] = k
    return owner


def _box_labels(boxes: dict) -> list[str]:
    return [str(b.get("label", "object")) for b in boxes["boxes"]]


def _scannet_poses(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(raw frame indices F, poses F x 4 x 4) of the valid poses, in file order (the reader's raw index)."""
    files = sorted(p for p in folder.glob("*.txt") if p.stem.isdigit())
    poses = [np.loadtxt(p).reshape(4, 4) for p in files]
    good = [i for i, p in enumerate(poses) if is_valid_pose(p)]
    return np.array(good, np.int64), (np.stack([poses[i] for i in good]) if good else np.zeros((0, 4, 4)))
