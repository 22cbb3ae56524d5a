"""Visibility: drop objects the camera path never sees; mark ground-truth points some frame observes."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .layout import Layout
from .render import Renderer


def visible_pixel_counts(layout: Layout, poses: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixels per instance id summed over all ``poses`` (index = id, length = number of objects + 1)."""
    renderer = Renderer(layout)
    counts = np.zeros(len(layout.objects) + 1, dtype=np.int64)
    for pose in poses:
        counts += np.bincount(renderer.instance_ids(pose, K, width, height).ravel(), minlength=len(counts))
    return counts


def remove_objects(layout: Layout, drop_ids: set[int]) -> Layout:
    """A copy of ``layout`` without the objects ``drop_ids``; remaining ids renumbered 1..n in order."""
    keep = [o for o in layout.objects if o.id not in drop_ids]
    new_id = {o.id: k + 1 for k, o in enumerate(keep)}
    parts = [replace(p, instance_id=new_id[p.instance_id]) for p in layout.parts if p.instance_id in new_id]
    objects = [replace(o, id=new_id[o.id]) for o in keep]
    return replace(layout, parts=parts, objects=objects)


def prune_unseen(layout: Layout, poses: np.ndarray, K: np.ndarray, width: int, height: int, min_pixels: int) -> Layout:
    """Remove non-structure objects covering fewer than ``min_pixels`` pixels over all views."""
    counts = visible_pixel_counts(layout, poses, K, width, height)
    unseen = {o.id for o in layout.objects if not o.is_structure and counts[o.id] < min_pixels}
    return remove_objects(layout, unseen) if unseen else layout


def observed_points(
    renderer: Renderer, xyz: np.ndarray, poses: np.ndarray, K: np.ndarray, width: int, height: int,
    tolerance: float = 0.01,
) -> np.ndarray:
    """Bool per world point ``xyz`` (N x 3, m): inside the image of some view in ``poses`` (camera-to-world)
    with nothing between the camera and the point (the ray towards it first hits the scene no more than
    ``tolerance`` metres before it). Exact: one ray per point and view, no pixel rounding."""
    seen = np.zeros(len(xyz), dtype=bool)
    for pose in poses:
        todo = np.flatnonzero(~seen)
        if len(todo) == 0:
            break
        todo = todo[_in_view(xyz[todo], pose, K, width, height)]
        offsets = xyz[todo] - pose[:3, 3].astype(np.float32)
        distance = np.linalg.norm(offsets, axis=1)
        t_hit = renderer.first_hit(np.broadcast_to(pose[:3, 3].astype(np.float32), offsets.shape), offsets)
        seen[todo] = t_hit > 1.0 - tolerance / np.maximum(distance, 1e-6)
    return seen


def _in_view(points: np.ndarray, pose: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
    cam = (points - pose[:3, 3].astype(np.float32)) @ pose[:3, :3].astype(np.float32)
    z = np.maximum(cam[:, 2], 1e-6)
    u = K[0, 0] * cam[:, 0] / z + K[0, 2]
    v = K[1, 1] * cam[:, 1] / z + K[1, 2]
    return (cam[:, 2] > 1e-3) & (u > -0.5) & (u < width - 0.5) & (v > -0.5) & (v < height - 0.5)
