"""Virtual cameras for rendering a map: look-at poses, pinhole intrinsics and an automatic overview.

Units and frames: metres, world frame; poses are 4 x 4 camera-to-world with OpenCV camera axes
(x right, y down, z forward); intrinsics are 3 x 3 pixels with pixel centres at integer coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scene.datasets.geometry import DEFAULT_UP, ground_axes, look_at, unit_up  # noqa: F401 (re-exported)


def pinhole(width: int, height: int, vertical_fov_deg: float = 55.0) -> np.ndarray:
    """3 x 3 float64 intrinsics of a centred pinhole camera with square pixels."""
    if width < 1 or height < 1 or not 1.0 <= vertical_fov_deg <= 170.0:
        raise ValueError(f"pinhole: need width, height >= 1 and a fov in [1, 170] degrees, "
                         f"got {width}, {height}, {vertical_fov_deg}")
    f = 0.5 * height / np.tan(np.radians(vertical_fov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def robust_bounds(points: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre (3,), radius) of the 2-98 % percentile box of N x 3 points: a few stray points do not count."""
    lo, hi = np.percentile(np.asarray(points, np.float64), [2, 98], axis=0)
    return (lo + hi) / 2.0, max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-3)


@dataclass
class OverviewConfig:
    """Automatic viewpoint: looking at the scene's centre from ``elevation_deg`` above the horizon and
    ``azimuth_deg`` around the up axis (0 = from the -e2 side, i.e. from -y for z-up scenes), far
    enough that the scene's bounding sphere fills about ``fill`` of the image height."""

    elevation_deg: float = 50.0
    azimuth_deg: float = -30.0
    vertical_fov_deg: float = 50.0
    fill: float = 0.9


def overview_camera(
    points: np.ndarray, width: int, height: int, up: np.ndarray | None = None, config: OverviewConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(K 3 x 3, camera-to-world pose 4 x 4) of a perspective camera looking at N x 3 ``points``
    (metres, world frame) from above at an angle. The centre is the middle of the 2-98 % percentile
    box, so a few stray points do not move the view."""
    config = config or OverviewConfig()
    p = np.asarray(points, np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
        raise ValueError(f"overview_camera: points must be N x 3 with N >= 1, got shape {p.shape}")
    centre, radius = robust_bounds(p)
    K = pinhole(width, height, config.vertical_fov_deg)
    half_fov = np.radians(config.vertical_fov_deg) / 2.0
    distance = radius / np.sin(half_fov * config.fill)
    e1, e2, u = ground_axes(up)
    elevation, azimuth = np.radians(config.elevation_deg), np.radians(config.azimuth_deg)
    horizontal = -np.cos(azimuth) * e2 + np.sin(azimuth) * e1
    eye = centre + distance * (np.cos(elevation) * horizontal + np.sin(elevation) * u)
    return K, look_at(eye, centre, u)
