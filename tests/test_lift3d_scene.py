"""An analytic test scene for lift3d: a wall plane and axis-aligned boxes, ray cast exactly in numpy.

The other lift3d tests import ``render`` / ``BoxScene`` from here; the tests below check the renderer
itself against independent geometry.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

WALL_Z = 3.0  # world plane z = 3 m
WALL_COLOR = (200, 60, 40)
BOX_COLORS = ((40, 200, 60), (60, 40, 220), (220, 220, 40))


@dataclass
class BoxScene:
    """Boxes as (min corner, max corner) in world metres, in front of the wall z = WALL_Z."""

    boxes: list = field(default_factory=lambda: [
        (np.array([-0.55, -0.30, 1.80]), np.array([-0.05, 0.25, 2.30])),
        (np.array([0.35, -0.25, 2.10]), np.array([0.75, 0.20, 2.50])),
    ])

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Unsigned distance (metres) from world points to the nearest wall or box surface."""
        best = np.abs(points[:, 2] - WALL_Z)
        for lo, hi in self.boxes:
            centre, half = (lo + hi) / 2, (hi - lo) / 2
            q = np.abs(points - centre) - half
            sdf = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)
            best = np.minimum(best, np.abs(sdf))
        return best


def intrinsics(width: int = 160, height: int = 120, f: float = 150.0) -> np.ndarray:
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], np.float64)


def pose_from(rotvec, position) -> np.ndarray:
    """Camera-to-world 4 x 4 from a rotation vector (radians) and the camera centre (metres)."""
    pose = np.eye(4)
    pose[:3, :3] = cv2.Rodrigues(np.asarray(rotvec, np.float64).reshape(3, 1))[0]
    pose[:3, 3] = position
    return pose


DEFAULT_POSE = pose_from([0.08, -0.12, 0.05], [0.1, -0.05, 0.2])


def render(scene: BoxScene, K: np.ndarray, pose: np.ndarray, width: int = 160, height: int = 120):
    """(depth H x W float32 metres, instance ids H x W int32: 0 wall, 1.. boxes, colour H x W x 3 uint8)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    dirs = rays_cam @ pose[:3, :3].T
    origin = pose[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_best = np.where(dirs[:, 2] > 0, (WALL_Z - origin[2]) / dirs[:, 2], np.inf)
        ids = np.zeros(t_best.shape, np.int32)
        for k, (lo, hi) in enumerate(scene.boxes, start=1):
            t1, t2 = (lo - origin) / dirs, (hi - origin) / dirs
            t_near = np.nanmax(np.minimum(t1, t2), axis=1)
            t_far = np.nanmin(np.maximum(t1, t2), axis=1)
            hit = (t_near <= t_far) & (t_near > 0) & (t_near < t_best)
            t_best[hit], ids[hit] = t_near[hit], k
    depth = np.where(np.isfinite(t_best), t_best, 0).astype(np.float32).reshape(height, width)
    palette = np.array((WALL_COLOR,) + BOX_COLORS[: len(scene.boxes)], np.uint8)
    ids = ids.reshape(height, width)
    return depth, ids, palette[ids]


def test_render_hits_the_wall_and_boxes_where_geometry_says():
    K, scene = intrinsics(), BoxScene()
    depth, ids, color = render(scene, K, DEFAULT_POSE)
    assert set(np.unique(ids)) == {0, 1, 2}
    v, u = np.mgrid[0:120, 0:160]
    cam = np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], -1).reshape(-1, 3)
    world = cam @ DEFAULT_POSE[:3, :3].T + DEFAULT_POSE[:3, 3]
    assert np.all(scene.distance(world) < 1e-6)
    wall = ids.reshape(-1) == 0
    np.testing.assert_allclose(world[wall, 2], WALL_Z, atol=1e-6)
    assert np.all(color[ids == 1] == BOX_COLORS[0])
