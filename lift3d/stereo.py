"""Depth from two posed colour images: rectify the pair with its relative pose (OpenCV
``stereoRectify``), run semi-global matching (``StereoSGBM``) both ways, keep disparities that pass a
left-right check, triangulate and carry the depth back into the first image's own camera.

`StereoDepthSource` gives any indexable frame source (posed RGB, depth absent or ignored) stereo depth,
each frame paired with a nearby frame whose baseline is mostly sideways. Units: metres; poses
camera-to-world, OpenCV axes; depth 0 = no estimate.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np


@dataclass(frozen=True)
class StereoConfig:
    """``num_disparities`` (multiple of 16; SGBM leaves that many columns on the left without an estimate)
    and ``block_size`` of SGBM; ``lr_tolerance`` pixels for the
    left-right check; ``min_baseline`` / ``max_baseline`` / ``target_baseline`` metres and
    ``max_rotation_deg`` for choosing a partner within ``search`` frames either side, whose baseline
    must be at least ``min_sideways`` sideways (rectification of forward motion leaves no disparity);
    ``max_depth`` metres: farther estimates are dropped."""

    num_disparities: int = 0  # 0: a sixteenth-multiple near an eighth of the image width
    block_size: int = 5
    uniqueness: int = 10
    lr_tolerance: float = 1.0
    min_baseline: float = 0.05
    max_baseline: float = 0.4
    target_baseline: float = 0.15
    max_rotation_deg: float = 25.0
    min_sideways: float = 0.35
    search: int = 15
    max_depth: float = 8.0


def stereo_depth(color_a: np.ndarray, color_b: np.ndarray, K: np.ndarray, pose_a: np.ndarray, pose_b: np.ndarray,
                 config: StereoConfig = StereoConfig()) -> np.ndarray:
    """H x W float32 depth of image ``a`` from the pair (a, b); 0 where no disparity survived."""
    h, w = color_a.shape[:2]
    b_from_a = np.linalg.inv(pose_b) @ pose_a
    K = np.asarray(K, np.float64)
    no_distortion = np.zeros(5)
    R1, R2, P1, P2, _, _, _ = cv2.stereoRectify(K, no_distortion, K, no_distortion, (w, h), b_from_a[:3, :3].copy(),
                                                b_from_a[:3, 3].reshape(3, 1).copy(),
                                                flags=cv2.CALIB_ZERO_DISPARITY, alpha=-1)
    if abs(P2[1, 3]) > abs(P2[0, 3]):
        raise ValueError("stereo_depth: the baseline is mostly vertical; choose a partner displaced sideways")
    gray = [cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in (color_a, color_b)]
    maps = [cv2.initUndistortRectifyMap(K, no_distortion, R, P, (w, h), cv2.CV_32FC1) for R, P in ((R1, P1), (R2, P2))]
    rect_a, rect_b = (cv2.remap(g, m[0], m[1], cv2.INTER_LINEAR) for g, m in zip(gray, maps))
    mirrored = P2[0, 3] > 0  # b sits left of a: mirror both so that a is the left image
    if mirrored:
        rect_a, rect_b = rect_a[:, ::-1].copy(), rect_b[:, ::-1].copy()
    disparity = _checked_disparity(rect_a, rect_b, config)
    if mirrored:
        disparity = disparity[:, ::-1]
    focal, baseline = P1[0, 0], abs(P2[0, 3] / P2[0, 0])
    return _depth_in_camera(disparity, focal * baseline, P1, R1, K, (h, w), config.max_depth)


def _checked_disparity(left: np.ndarray, right: np.ndarray, config: StereoConfig) -> np.ndarray:
    """Left-image disparity (pixels, float32; 0 = none) that the right-image disparity confirms."""
    block = config.block_size
    h, w = left.shape
    disparities = config.num_disparities or max(16, 16 * int(np.ceil(w / 8 / 16)))
    matcher = cv2.StereoSGBM_create(minDisparity=0, numDisparities=disparities, blockSize=block,
                                    P1=8 * block * block, P2=32 * block * block, uniquenessRatio=config.uniqueness,
                                    speckleWindowSize=100, speckleRange=2, disp12MaxDiff=-1,
                                    mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    left_disp = matcher.compute(left, right).astype(np.float32) / 16.0
    # The right image's disparity: match the mirrored pair, mirror back.
    right_disp = matcher.compute(right[:, ::-1].copy(), left[:, ::-1].copy())[:, ::-1].astype(np.float32) / 16.0
    cols = np.arange(w)[None, :] - np.round(left_disp).astype(np.int64)
    valid = (left_disp > 0) & (cols >= 0)
    back = right_disp[np.arange(h)[:, None], np.clip(cols, 0, w - 1)]
    valid &= np.abs(back - left_disp) <= config.lr_tolerance
    return np.where(valid, left_disp, 0.0).astype(np.float32)


def _depth_in_camera(disparity, focal_baseline, P1, R1, K, shape, max_depth) -> np.ndarray:
    """Depth in the original camera: every original pixel looks up the disparity at its rectified
    position (pulled rather than pushed, so the image has no splatting holes) and is triangulated."""
    h, w = shape
    v, u = np.mgrid[0:h, 0:w]
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones((h, w))], -1).reshape(-1, 3)
    rectified = rays @ R1.T  # R1 rotates camera coordinates into the rectified frame
    ru = np.round(P1[0, 0] * rectified[:, 0] / rectified[:, 2] + P1[0, 2]).astype(np.int64)
    rv = np.round(P1[1, 1] * rectified[:, 1] / rectified[:, 2] + P1[1, 2]).astype(np.int64)
    inside = (rectified[:, 2] > 0) & (ru >= 0) & (ru < w) & (rv >= 0) & (rv < h)
    found = np.zeros(h * w, np.float32)
    found[inside] = disparity[rv[inside], ru[inside]]
    valid = found > 0
    z_rectified = np.where(valid, focal_baseline / np.maximum(found, 1e-6), 0.0)
    # The ray's point at rectified depth z_r lies at z_r / rectified_z along the camera ray (camera z = 1).
    depth = np.where(valid, z_rectified / np.maximum(rectified[:, 2], 1e-9), 0.0)
    depth[(depth > max_depth) | (depth < 0.05)] = 0.0
    return depth.reshape(h, w).astype(np.float32)


def choose_partner(poses: np.ndarray, index: int, config: StereoConfig = StereoConfig()) -> int | None:
    """The frame within ``config.search`` of ``index`` best suited as its stereo partner (baseline in
    range, mostly sideways in the camera, small rotation, closest to ``target_baseline``), or None."""
    lo, hi = max(0, index - config.search), min(len(poses), index + config.search + 1)
    candidates = np.array([j for j in range(lo, hi) if j != index], np.int64)
    if len(candidates) == 0:
        return None
    relative = np.linalg.inv(poses[index])[None] @ poses[candidates]
    offset = relative[:, :3, 3]
    baseline = np.linalg.norm(offset, axis=1)
    sideways = np.abs(offset[:, 0]) / np.maximum(baseline, 1e-9)
    angle = np.degrees(np.arccos(np.clip((np.trace(relative[:, :3, :3], axis1=1, axis2=2) - 1) / 2, -1, 1)))
    ok = ((baseline >= config.min_baseline) & (baseline <= config.max_baseline) & (sideways >= config.min_sideways)
          & (angle <= config.max_rotation_deg))
    if not ok.any():
        return None
    cost = np.abs(baseline - config.target_baseline) / config.target_baseline + angle / config.max_rotation_deg
    return int(candidates[ok][np.argmin(cost[ok])])


class StereoDepthSource:
    """Frames of ``source`` (indexable, with ``poses``) whose depth is replaced by stereo depth; a frame
    with no usable partner gets an all-zero depth (the mappers skip it). ``meta['stereo_partner']``
    names the partner frame index."""

    def __init__(self, source, config: StereoConfig = StereoConfig()) -> None:
        self.source = source
        self.config = config
        self.poses = np.asarray(source.poses, np.float64)
        self.root = getattr(source, "root", "")
        self.format_name = f"{getattr(source, 'format_name', '')}+stereo"

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, k: int):
        frame = self.source[k]
        partner = choose_partner(self.poses, k, self.config)
        depth = np.zeros(frame.color.shape[:2], np.float32)
        if partner is not None:
            other = self.source[partner]
            try:
                depth = stereo_depth(frame.color, other.color, frame.K, frame.pose, other.pose, self.config)
            except ValueError:  # rectification left the pair vertical: no estimate for this frame
                partner = None
        meta = {**frame.meta, "stereo_partner": -1 if partner is None else int(partner)}
        return replace(frame, depth=depth, meta=meta)

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]
