"""Switchable RGB-D sensor effects applied to clean renders: depth noise, quantisation, dropout, pose drift.

Each effect is off when its parameter is zero / "none". Randomness comes from a generator seeded by
(scene seed, frame index), so any frame can be rendered on its own and is identical every time.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

QUANTIZATION_MODES = ("none", "mm", "disparity")


@dataclass
class SensorConfig:
    """Sensor model. Depth noise: Gaussian with sigma = ``noise_a + noise_b * z^2`` (metres, z in metres,
    Kinect-like). Dropout (depth set to 0): at depth edges (relative jump > ``edge_threshold``, widened by
    ``edge_width`` px) with probability ``edge_dropout``; on dark surfaces (albedo luminance <
    ``dark_threshold``) with probability ``dark_dropout``; anywhere with ``random_dropout``; beyond
    ``max_depth`` metres (0 = no limit). Quantisation: ``mm`` rounds to millimetres; ``disparity`` rounds the
    disparity ``focal * baseline / z`` to 1/``subpixel`` px (``baseline`` metres, focal = fx).
    Pose drift: Gaussian random walk, per-frame step std ``drift_translation`` metres and ``drift_rotation``
    radians, applied to the reported pose (rotation about the camera centre); the true pose stays in
    ``Frame.meta['gt_pose']``. ``color_noise``: Gaussian std in 8-bit levels."""

    noise_a: float = 0.0
    noise_b: float = 0.0
    quantization: str = "none"
    baseline: float = 0.075
    subpixel: float = 8.0
    edge_dropout: float = 0.0
    edge_threshold: float = 0.04
    edge_width: int = 1
    dark_dropout: float = 0.0
    dark_threshold: float = 0.12
    random_dropout: float = 0.0
    max_depth: float = 0.0
    drift_translation: float = 0.0
    drift_rotation: float = 0.0
    color_noise: float = 0.0

    def __post_init__(self):
        if self.quantization not in QUANTIZATION_MODES:
            raise ValueError(
                f"SensorConfig.quantization must be one of {QUANTIZATION_MODES}, got {self.quantization!r}"
            )
        for name in ("noise_a", "noise_b", "edge_dropout", "dark_dropout", "random_dropout", "max_depth",
                     "drift_translation", "drift_rotation", "color_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"SensorConfig.{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def clean(cls) -> "SensorConfig":
        return cls()

    @classmethod
    def noisy(cls) -> "SensorConfig":
        """A Kinect-v1-like sensor with mild odometry drift (random walk: after 100 frames about 5 mm
        and 0.17 degrees, i.e. under 1 cm at 3 m, the accuracy of a good RGB-D SLAM system)."""
        return cls(
            noise_a=0.0012, noise_b=0.0019, quantization="disparity", edge_dropout=0.6, dark_dropout=0.5,
            random_dropout=0.003, max_depth=8.0, drift_translation=0.0005, drift_rotation=0.0003, color_noise=2.0,
        )


def sigma_at(config: SensorConfig, depth: np.ndarray) -> np.ndarray:
    """Depth noise standard deviation (m) at depth ``depth`` (m)."""
    return config.noise_a + config.noise_b * depth.astype(np.float64) ** 2


def degrade_depth(
    depth: np.ndarray, luminance: np.ndarray, config: SensorConfig, rng: np.random.Generator, focal: float
) -> np.ndarray:
    """Apply noise, quantisation and dropout to a clean H x W float32 depth map (m, 0 = invalid);
    ``focal`` is fx in pixels (disparity quantisation)."""
    valid = depth > 0
    out = depth.astype(np.float64)
    if config.noise_a or config.noise_b:
        out = out + rng.standard_normal(depth.shape, dtype=np.float32) * sigma_at(config, depth)
    out = quantize(out, config, focal)
    drop = ~valid | (out <= 0)
    if config.edge_dropout:
        edges = depth_edges(depth, config.edge_threshold, config.edge_width)
        drop |= edges & (_uniform(rng, depth.shape) < config.edge_dropout)
    if config.dark_dropout:
        drop |= (luminance < config.dark_threshold) & (_uniform(rng, depth.shape) < config.dark_dropout)
    if config.random_dropout:
        drop |= _uniform(rng, depth.shape) < config.random_dropout
    if config.max_depth:
        drop |= out > config.max_depth
    return np.where(drop, 0.0, out).astype(np.float32)


def _uniform(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.random(shape, dtype=np.float32)


def quantize(depth: np.ndarray, config: SensorConfig, focal: float) -> np.ndarray:
    """Quantise depth (m) as configured; ``focal`` is fx in pixels (used by ``disparity`` mode)."""
    if config.quantization == "mm":
        return np.round(depth * 1000.0) / 1000.0
    if config.quantization == "disparity":
        fb = focal * config.baseline
        disparity = np.round(fb / np.maximum(depth, 1e-6) * config.subpixel) / config.subpixel
        return np.where(depth > 0, fb / np.maximum(disparity, 1e-9), 0.0)
    return depth



def depth_edges(depth: np.ndarray, threshold: float, width: int) -> np.ndarray:
    """Pixels within ``width`` px of a depth discontinuity (relative jump > ``threshold``) or of invalid depth."""
    d = depth.astype(np.float32)
    big = cv2.dilate(d, np.ones((3, 3), np.uint8))
    small = cv2.erode(np.where(d > 0, d, np.float32(np.inf)), np.ones((3, 3), np.uint8))
    edge = (d > 0) & ((big - small) > threshold * np.maximum(small, 1e-6))
    edge |= (d > 0) & (cv2.dilate((d <= 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    if width > 1:
        edge = cv2.dilate(edge.astype(np.uint8), np.ones((2 * width - 1, 2 * width - 1), np.uint8)) > 0
    return edge


def degrade_color(color: np.ndarray, config: SensorConfig, rng: np.random.Generator) -> np.ndarray:
    if not config.color_noise:
        return color
    noise = rng.standard_normal(color.shape, dtype=np.float32) * np.float32(config.color_noise)
    noisy = color.astype(np.float32) + noise
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def drift_poses(gt_poses: np.ndarray, config: SensorConfig, rng: np.random.Generator) -> np.ndarray:
    """Reported poses (N x 4 x 4): the true poses with a random-walk error in position and orientation."""
    n = len(gt_poses)
    steps_t = rng.standard_normal((n, 3)) * config.drift_translation
    steps_r = rng.standard_normal((n, 3)) * config.drift_rotation
    steps_t[0] = 0.0
    steps_r[0] = 0.0
    reported = gt_poses.copy()
    reported[:, :3, :3] = Rotation.from_rotvec(np.cumsum(steps_r, axis=0)).as_matrix() @ gt_poses[:, :3, :3]
    reported[:, :3, 3] += np.cumsum(steps_t, axis=0)
    return reported
