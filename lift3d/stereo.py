"""Depth from posed colour images: rectify a pair with its relative pose (OpenCV ``stereoRectify``),
run semi-global matching (``StereoSGBM``) both ways, keep disparities that pass a left-right check,
triangulate and carry the depth back into the first image's own camera.

`StereoDepthSource` gives any indexable frame source (posed RGB, depth absent or ignored) stereo depth:
each frame is matched with up to ``partners`` nearby frames whose baselines are mostly sideways (one on
each side where possible, so that what one partner cannot see the other can), at full and at half
resolution (a larger window matches weak texture), and the estimates are fused with a multi-view
check: where two estimates disagree the pixel gets none. Weakly textured planes (walls, floors, table
tops) keep few matches; ``fill_planes`` completes them: the image is cut into colour segments
(Felzenszwalb) and a segment whose matched pixels lie on one plane gets that plane's depth everywhere
(a plane's inverse depth is affine in the pixel coordinates, so the fit is linear). Units: metres;
poses camera-to-world, OpenCV axes; depth 0 = no estimate.
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
    ``max_depth`` metres: farther estimates are dropped. ``partners``: frames matched with each frame
    (best on each side first); two estimates of a pixel must agree within ``agreement`` (relative) or
    the pixel gets none. ``half_resolution``: also match at half resolution, filling pixels the full
    resolution left empty. ``fill_planes``: colour segments (Felzenszwalb, ``segment_scale``,
    ``segment_min_size`` pixels) with matched pixels on ``plane_min_support`` of their area (and at least
    ``plane_min_points``) whose inverse depths fit one plane within ``plane_max_residual`` (relative,
    median) take the plane's depth where unmatched."""

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
    partners: int = 2
    agreement: float = 0.03
    half_resolution: bool = True
    fill_planes: bool = True
    segment_scale: float = 300.0
    segment_min_size: int = 200
    plane_min_support: float = 0.2
    plane_min_points: int = 60
    plane_max_residual: float = 0.01


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
    if config.half_resolution:
        disparity = np.where(disparity > 0, disparity, _half_resolution_disparity(rect_a, rect_b, config))
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


def _half_resolution_disparity(left: np.ndarray, right: np.ndarray, config: StereoConfig) -> np.ndarray:
    """The checked disparity of the pair matched at half resolution, in full-resolution pixels."""
    h, w = left.shape
    small = [cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA) for image in (left, right)]
    half = config.num_disparities // 2 if config.num_disparities else 0
    disparity = _checked_disparity(*small, StereoConfig(**{**config.__dict__, "num_disparities": 16 * max(1, half // 16)
                                                           if half else 0}))
    return cv2.resize(disparity, (w, h), interpolation=cv2.INTER_NEAREST) * 2.0


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
    partners = choose_partners(poses, index, replace(config, partners=1))
    return partners[0] if partners else None


def choose_partners(poses: np.ndarray, index: int, config: StereoConfig = StereoConfig()) -> list[int]:
    """Up to ``config.partners`` stereo partners of frame ``index``, best first: the best on each side
    of the camera (left, right) first, then the next best overall."""
    lo, hi = max(0, index - config.search), min(len(poses), index + config.search + 1)
    candidates = np.array([j for j in range(lo, hi) if j != index], np.int64)
    if len(candidates) == 0:
        return []
    relative = np.linalg.inv(poses[index])[None] @ poses[candidates]
    offset = relative[:, :3, 3]
    baseline = np.linalg.norm(offset, axis=1)
    sideways = np.abs(offset[:, 0]) / np.maximum(baseline, 1e-9)
    angle = np.degrees(np.arccos(np.clip((np.trace(relative[:, :3, :3], axis1=1, axis2=2) - 1) / 2, -1, 1)))
    # more up than sideways: rectification would make the pair vertical, which SGBM cannot match
    horizontal = np.abs(offset[:, 0]) > np.abs(offset[:, 1])
    ok = ((baseline >= config.min_baseline) & (baseline <= config.max_baseline) & (sideways >= config.min_sideways)
          & (angle <= config.max_rotation_deg) & horizontal)
    if not ok.any():
        return []
    cost = np.abs(baseline - config.target_baseline) / config.target_baseline + angle / config.max_rotation_deg
    order = [int(i) for i in np.flatnonzero(ok)[np.argsort(cost[ok], kind="stable")]]
    side_best = []
    for side in (offset[:, 0] < 0, offset[:, 0] > 0):
        best = [i for i in order if side[i]]
        if best:
            side_best.append(best[0])
    side_best.sort(key=order.index)
    ranked = side_best + [i for i in order if i not in side_best]
    return [int(candidates[i]) for i in ranked[:max(1, config.partners)]]


def fuse_estimates(estimates: list[np.ndarray], agreement: float) -> np.ndarray:
    """One depth from several estimates of the same image (0 = none): the mean where they agree within
    ``agreement`` (relative to the smaller), 0 where any two disagree, the single value elsewhere."""
    stack = np.stack(estimates)
    valid = stack > 0
    count = valid.sum(0)
    high = np.where(valid, stack, 0.0).max(0)
    low = np.where(valid, stack, np.inf).min(0)
    consistent = (count > 0) & (high - low <= agreement * np.where(np.isfinite(low), low, 0.0))
    mean = np.where(valid, stack, 0.0).sum(0) / np.maximum(count, 1)
    return np.where(consistent, mean, 0.0).astype(np.float32)


def fill_planar_segments(depth: np.ndarray, color: np.ndarray, K: np.ndarray,
                         config: StereoConfig = StereoConfig()) -> np.ndarray:
    """``depth`` with the unmatched pixels of planar colour segments set from their segment's plane."""
    h, w = depth.shape
    segmenter = cv2.ximgproc.segmentation.createGraphSegmentation(sigma=0.8, k=config.segment_scale,
                                                                  min_size=config.segment_min_size)
    segments = segmenter.processImage(cv2.cvtColor(color, cv2.COLOR_RGB2BGR)).reshape(-1).astype(np.int64)
    count = int(segments.max()) + 1
    v, u = np.divmod(np.arange(h * w), w)
    x, y = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]  # a plane n.X = d: 1/z = (n . (x, y, 1)) / d
    flat = depth.reshape(-1)
    known = np.flatnonzero(flat > 0)
    area = np.bincount(segments, minlength=count)
    support = np.bincount(segments[known], minlength=count)
    chosen = (support >= config.plane_min_points) & (support >= config.plane_min_support * area)
    if not chosen.any():
        return depth
    use = known[chosen[segments[known]]]
    coefficients = _fit_inverse_depth_planes(segments[use], x[use], y[use], 1.0 / flat[use], count)
    predicted = 1.0 / np.maximum(np.einsum("ij,ij->i", coefficients[segments[use]],
                                           np.stack([x[use], y[use], np.ones(len(use))], 1)), 1e-9)
    residual = np.abs(predicted - flat[use]) / flat[use]
    median = _segment_medians(segments[use], residual, count)
    planar = chosen & (median <= config.plane_max_residual)
    fill = np.flatnonzero((flat <= 0) & planar[segments])
    inverse = np.einsum("ij,ij->i", coefficients[segments[fill]], np.stack([x[fill], y[fill], np.ones(len(fill))], 1))
    filled = flat.copy()
    z = np.where(inverse > 1.0 / config.max_depth, 1.0 / np.maximum(inverse, 1e-9), 0.0)
    filled[fill] = np.where(z >= 0.05, z, 0.0)
    return filled.reshape(h, w).astype(np.float32)


def _fit_inverse_depth_planes(segment, x, y, inverse, count) -> np.ndarray:
    """Per segment the least-squares (a, b, c) of ``inverse ~ a x + b y + c`` (count x 3; 0 unfit)."""
    terms = np.stack([x, y, np.ones_like(x)], 1)
    normal = np.zeros((count, 3, 3))
    rhs = np.zeros((count, 3))
    for i in range(3):
        rhs[:, i] = np.bincount(segment, weights=terms[:, i] * inverse, minlength=count)
        for j in range(i, 3):
            normal[:, i, j] = normal[:, j, i] = np.bincount(segment, weights=terms[:, i] * terms[:, j], minlength=count)
    solvable = np.abs(np.linalg.det(normal)) > 1e-12
    out = np.zeros((count, 3))
    out[solvable] = np.linalg.solve(normal[solvable], rhs[solvable][..., None])[..., 0]
    return out


def _segment_medians(segment: np.ndarray, values: np.ndarray, count: int) -> np.ndarray:
    """Median of ``values`` per segment id (inf where a segment has none)."""
    order = np.lexsort((values, segment))
    sorted_segment, sorted_values = segment[order], values[order]
    starts = np.searchsorted(sorted_segment, np.arange(count), side="left")
    ends = np.searchsorted(sorted_segment, np.arange(count), side="right")
    middle = np.clip((starts + ends - 1) // 2, 0, max(len(values) - 1, 0))
    return np.where(ends > starts, sorted_values[middle] if len(values) else np.inf, np.inf)


class StereoDepthSource:
    """Frames of ``source`` (indexable, with ``poses``) whose depth is replaced by stereo depth fused
    from up to ``config.partners`` partners; a frame with no usable partner gets an all-zero depth (the
    mappers skip it). ``meta['stereo_partners']`` lists the partner frame indices used
    (``meta['stereo_partner']`` the first, -1 for none)."""

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
        estimates, used = [], []
        for partner in choose_partners(self.poses, k, self.config):
            other = self.source[partner]
            try:
                estimates.append(stereo_depth(frame.color, other.color, frame.K, frame.pose, other.pose, self.config))
                used.append(int(partner))
            except ValueError:  # rectification left the pair vertical: no estimate from this partner
                continue
        depth = (fuse_estimates(estimates, self.config.agreement) if estimates else
                 np.zeros(frame.color.shape[:2], np.float32))
        if self.config.fill_planes and estimates:
            depth = fill_planar_segments(depth, frame.color, frame.K, self.config)
        meta = {**frame.meta, "stereo_partners": used, "stereo_partner": used[0] if used else -1}
        return replace(frame, depth=depth, meta=meta)

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]
