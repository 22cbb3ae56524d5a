"""Small rigid-geometry helpers shared by every layer: up vectors and look-at camera poses.

Units and frames: metres, world frame; poses are 4 x 4 camera-to-world float64 with OpenCV camera axes
(x right, y down, z forward).
"""
from __future__ import annotations

import numpy as np

DEFAULT_UP = np.array([0.0, 0.0, 1.0])


def unit_up(up: np.ndarray | None) -> np.ndarray:
    """The world's up direction as a unit float64 3-vector (+z when ``up`` is None)."""
    if up is None:
        return DEFAULT_UP.copy()
    v = np.asarray(up, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(v)) if v.shape == (3,) else 0.0
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError(f"up must be a finite non-zero 3-vector, got {up!r}")
    return v / norm


def ground_axes(up: np.ndarray | None) -> np.ndarray:
    """3 x 3 float64 rows (e1, e2, up): an orthonormal right-handed frame with ``up`` as third axis;
    for +z up, e1 = +x and e2 = +y, so a floor plan keeps the world's x to the right."""
    u = unit_up(up)
    helper = np.eye(3)[int(np.argmin(np.abs(u)))]
    e1 = helper - helper.dot(u) * u
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(u, e1), u])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """Camera-to-world pose (4 x 4 float64, OpenCV axes) of a camera at ``eye`` looking at ``target``,
    with the image's up direction as close to world ``up`` (default +z) as possible."""
    eye, target = np.asarray(eye, np.float64), np.asarray(target, np.float64)
    forward = target - eye
    if not np.all(np.isfinite(forward)) or np.linalg.norm(forward) < 1e-9:
        raise ValueError(f"look_at: eye {eye} and target {target} must be distinct finite points")
    z = forward / np.linalg.norm(forward)
    u = unit_up(up)
    x = np.cross(z, u)
    if np.linalg.norm(x) < 1e-6:  # looking straight along up: any horizontal image x will do
        x = ground_axes(u)[0]
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    pose[:3, 3] = eye
    return pose
