"""Camera trajectories through the room and the floor space they keep free.

Poses are camera-to-world 4x4 float64 with OpenCV camera axes (x right, y down, z forward) in the
room frame of `layout` (metres, z up, floor at z = 0; the scene moves them with the room).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import look_at


@dataclass
class TrajectoryConfig:
    """``loop``: a smooth ellipse around the room centre, looking across the room at points ahead near
    the walls; ``orbit``: a circle around the layout's focus (the tabletop), looking at it."""

    mode: str = "loop"
    path_fraction: float = 0.36  # loop: ellipse semi-axes as a fraction of the half room size
    clearance: float = 0.45  # metres of floor kept free on each side of the path
    height: tuple = (1.2, 1.6)  # camera height range (m)
    look_ahead_deg: tuple = (70.0, 130.0)  # loop: angular lead of the look-at point on the target ellipse
    target_fraction: float = 0.85  # loop: look-at ellipse as a fraction of the half room size
    target_height: float = 0.6  # loop: look-at height (m)
    orbit_margin: float = 0.55  # orbit: distance kept between the path and the walls (m)


def _path_axes(room_size, focus, config: TrajectoryConfig) -> tuple[np.ndarray, np.ndarray]:
    """Centre (x, y) and semi-axes (a, b) of the camera path ellipse."""
    half = np.array(room_size[:2], dtype=np.float64) / 2
    if config.mode == "orbit":
        centre = np.array(focus[:2]) if focus is not None else half
        radius = float(np.min(np.minimum(centre, np.array(room_size[:2]) - centre))) - config.orbit_margin
        return centre, np.array([radius, radius])
    if config.mode != "loop":
        raise ValueError(f"trajectory mode must be 'loop' or 'orbit', got {config.mode!r}")
    return half, half * config.path_fraction


def camera_path(room_size, focus, config: TrajectoryConfig, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """``num_frames`` camera-to-world poses (N x 4 x 4) for one closed loop, starting at a random phase."""
    centre, axes = _path_axes(room_size, focus, config)
    theta = rng.uniform(0, 2 * np.pi) + np.linspace(0, 2 * np.pi, num_frames, endpoint=False)
    wobble = rng.uniform(0, 2 * np.pi, 3)
    lo, hi = config.height
    height = (lo + hi) / 2 + (hi - lo) / 2 * np.sin(2 * theta + wobble[0])
    eyes = np.stack([centre[0] + axes[0] * np.cos(theta), centre[1] + axes[1] * np.sin(theta), height], axis=1)
    if config.mode == "orbit":
        jitter = 0.12 * np.stack(
            [np.sin(3 * theta + wobble[1]), np.cos(2 * theta + wobble[2]), np.zeros_like(theta)], axis=1
        )
        targets = np.array([centre[0], centre[1], focus[2] if focus is not None else 0.7]) + jitter
    else:
        a0, a1 = np.radians(config.look_ahead_deg)
        lead = (a0 + a1) / 2 + (a1 - a0) / 2 * np.sin(3 * theta + wobble[1])
        outer = np.array(room_size[:2]) / 2 * config.target_fraction
        phi = theta + lead
        targets = np.stack([
            room_size[0] / 2 + outer[0] * np.cos(phi), room_size[1] / 2 + outer[1] * np.sin(phi),
            np.full_like(theta, config.target_height),
        ], axis=1)
    return np.stack([look_at(e, t) for e, t in zip(eyes, targets)])


def path_keepout(room_size, focus, config: TrajectoryConfig):
    """A function ``keepout(points_xy) -> bool`` true within ``clearance`` of the camera path (conservative)."""
    centre, axes = _path_axes(room_size, focus, config)

    def keepout(points: np.ndarray) -> np.ndarray:
        rho = np.hypot((points[:, 0] - centre[0]) / axes[0], (points[:, 1] - centre[1]) / axes[1])
        return np.abs(rho - 1.0) * axes.min() < config.clearance

    return keepout
