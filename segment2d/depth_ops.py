"""Dense per-pixel geometry on an organised depth image: resampling, hole filling, points, normals and the
three kinds of boundary evidence the geometric mask generator cuts along.

Conventions: depth in metres (0 = invalid), pinhole intrinsics ``K`` in pixels, OpenCV camera axes
(x right, y down, z forward). Points and normals are in the camera frame, stored channel-first (3 x H x W,
so each coordinate is one contiguous plane); normals point towards the camera.
"""
from __future__ import annotations

import cv2
import numpy as np

# Four neighbour offsets (dy, dx) covering the pixel-pair directions: right, down, two diagonals.
PAIR_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))


def subsample(depth: np.ndarray, color: np.ndarray, K: np.ndarray, factor: int):
    """Nearest-pixel subsampling by an integer ``factor``.

    Low-res pixel (i, j) takes the full-res pixel (f*i + f//2, f*j + f//2) and stands for the block
    [f*i, f*i+f) x [f*j, f*j+f). Returns (depth float32 metres, colour uint8 RGB, K of the low-res image).
    """
    o = factor // 2
    d = np.ascontiguousarray(depth[o::factor, o::factor], dtype=np.float32)
    h, w = d.shape
    c = cv2.resize(color, (w, h), interpolation=cv2.INTER_AREA) if factor > 1 else color
    K2 = np.asarray(K, np.float64).copy()
    K2[0, 0] /= factor
    K2[1, 1] /= factor
    K2[0, 2] = (K2[0, 2] - o) / factor
    K2[1, 2] = (K2[1, 2] - o) / factor
    return d, c, K2


def fill_small_holes(depth: np.ndarray, color: np.ndarray, iterations: int) -> np.ndarray:
    """Fill invalid pixels (0) up to ~``iterations`` pixels from valid ones, each from the valid 8-neighbour
    of most similar colour (RGB L1).

    Sensor dropouts sit on both sides of object borders; colour tells which surface a hole belongs to, where
    a max or mean would shift the border or invent flying pixels. Larger invalid areas stay 0.
    """
    d = depth.copy()
    h, w = d.shape
    flat = pad1(d).ravel()
    rgb = [pad1(color[..., i].astype(np.int16)).ravel() for i in range(3)]
    idx = np.flatnonzero(pad1(d <= 0))
    steps = [dy * (w + 2) + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    if iterations > 0:
        flat[idx] = 0  # every hole pixel is written in the first step: filled, or 0 without a valid neighbour
    ring = np.ones((3, 3), np.uint8)
    for _ in range(iterations):
        if len(idx) == 0:
            break
        # Only holes with a valid 8-neighbour can be filled in this step; the rest stay 0 (not visited).
        reached = cv2.dilate((flat > 0).view(np.uint8).reshape(h + 2, w + 2), ring).ravel()[idx] > 0
        front = idx[reached]
        own = [c[front] for c in rgb]
        best_cost = np.full(len(front), np.iinfo(np.int16).max, np.int16)
        best_depth = np.zeros(len(front), np.float32)
        for step in steps:
            zq = flat[front + step]
            cost = sum(np.abs(c[front + step] - o) for c, o in zip(rgb, own))
            better = (zq > 0) & (cost < best_cost)
            best_cost = np.where(better, cost, best_cost)
            best_depth = np.where(better, zq, best_depth)
        flat[front] = best_depth
        reached[reached] = best_depth > 0
        idx = idx[~reached]
    return flat.reshape(h + 2, w + 2)[1:-1, 1:-1].copy()


def pad1(a: np.ndarray) -> np.ndarray:
    """``a`` with one zero (False) pixel added on each side of its last two axes (np.pad is ~10x slower)."""
    out = np.zeros(a.shape[:-2] + (a.shape[-2] + 2, a.shape[-1] + 2), a.dtype)
    out[..., 1:-1, 1:-1] = a
    return out


def median_smooth(depth: np.ndarray) -> np.ndarray:
    """5x5 median of valid depth (edge preserving); pixels whose median would be pulled to 0 keep their value."""
    med = cv2.medianBlur(depth, 5)
    return np.where((med > 0) | (depth <= 0), med, depth).astype(np.float32)


def backproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """3 x H x W float32 camera-frame points (metres); invalid pixels give (0, 0, 0)."""
    h, w = depth.shape
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    xs = ((np.arange(w, dtype=np.float32) - np.float32(cx)) / np.float32(fx))[None, :]
    ys = ((np.arange(h, dtype=np.float32) - np.float32(cy)) / np.float32(fy))[:, None]
    return np.stack([xs * depth, ys * depth, depth]).astype(np.float32, copy=False)


def shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` shifted over its last two axes so that out[..., y, x] = a[..., y + dy, x + dx]; pixels that
    fall off the image repeat the border. Done with slice copies (memcpy speed), not fancy indexing."""
    h, w = a.shape[-2:]
    dy, dx = max(-(h - 1), min(int(dy), h - 1)), max(-(w - 1), min(int(dx), w - 1))  # not np.clip: 10 us a call
    out = np.empty_like(a)
    dst_y, dst_x = slice(max(-dy, 0), h - max(dy, 0)), slice(max(-dx, 0), w - max(dx, 0))
    out[..., dst_y, dst_x] = a[..., max(dy, 0):h - max(-dy, 0), max(dx, 0):w - max(-dx, 0)]
    if dy > 0:
        out[..., h - dy:, :] = out[..., h - dy - 1:h - dy, :]
    elif dy < 0:
        out[..., :-dy, :] = out[..., -dy:-dy + 1, :]
    if dx > 0:
        out[..., w - dx:] = out[..., w - dx - 1:w - dx]
    elif dx < 0:
        out[..., :-dx] = out[..., -dx:-dx + 1]
    return out


class EdgeShifts:
    """Shifted views of one array: ``EdgeShifts(a, reach)(dy, dx)`` equals ``shifted(a, dy, dx)`` for
    |dy|, |dx| <= ``reach``, as a view into one copy of ``a`` padded by repeating its border pixels (one copy
    in all instead of one per shift)."""

    def __init__(self, a: np.ndarray, reach: int):
        h, w = a.shape[-2:]
        r = self.reach = int(reach)
        out = np.empty(a.shape[:-2] + (h + 2 * r, w + 2 * r), a.dtype)
        out[..., r:r + h, r:r + w] = a
        out[..., :r, r:r + w] = a[..., :1, :]
        out[..., r + h:, r:r + w] = a[..., -1:, :]
        out[..., :, :r] = out[..., :, r:r + 1]
        out[..., :, r + w:] = out[..., :, r + w - 1:r + w]
        self.padded, self.shape = out, (h, w)

    def __call__(self, dy: int, dx: int) -> np.ndarray:
        if max(abs(dy), abs(dx)) > self.reach:
            raise ValueError(f"EdgeShifts: shift ({dy}, {dx}) beyond the padding of {self.reach} pixels")
        (h, w), r = self.shape, self.reach
        return self.padded[..., r + dy:r + dy + h, r + dx:r + dx + w]

    def padded_index(self, pixels: np.ndarray) -> np.ndarray:
        """Flat indices into the padded image of flat pixel indices of the h x w image."""
        w, r = self.shape[1], self.reach
        return pixels + 2 * r * (pixels // w) + (r * (w + 2 * r) + r)

    def gather(self, index: np.ndarray, dy: int, dx: int) -> np.ndarray:
        """``self(dy, dx)`` at the pixels of ``padded_index`` ``index`` (leading axes kept, pixels last)."""
        if max(abs(dy), abs(dx)) > self.reach:
            raise ValueError(f"EdgeShifts: shift ({dy}, {dx}) beyond the padding of {self.reach} pixels")
        flat = self.padded.reshape(self.padded.shape[:-2] + (-1,))
        return flat.take(index + (dy * (self.shape[1] + 2 * self.reach) + dx), axis=-1)


def _normalised(v: np.ndarray) -> np.ndarray:
    """``v`` divided in place by its length (+ 1e-12): v / (|v| + 1e-12), value for value."""
    length = dot3(v, v)
    np.sqrt(length, out=length)
    length += np.float32(1e-12)
    v /= length
    return v


def dot3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel dot product of two 3 x H x W fields (a0 b0 + a1 b1 + a2 b2, in that order)."""
    out = np.multiply(a[0], b[0])
    term = np.multiply(a[1], b[1])
    out += term
    np.multiply(a[2], b[2], out=term)
    out += term
    return out


def normals_from_points(points: np.ndarray, valid: np.ndarray, radius: int, smooth: int) -> np.ndarray:
    """Unit normals (3 x H x W float32, towards the camera) from central differences at ``radius`` pixels,
    box-averaged over ``smooth`` x ``smooth`` and renormalised. Invalid pixels get (0, 0, 0)."""
    at = EdgeShifts(points, radius)
    du = at(0, radius) - at(0, -radius)
    dv = at(radius, 0) - at(-radius, 0)
    n = np.empty_like(du)
    term = np.empty_like(du[0])
    for c, (i, j) in enumerate(((1, 2), (2, 0), (0, 1))):  # the cross product du x dv
        np.multiply(du[i], dv[j], out=n[c])
        np.multiply(du[j], dv[i], out=term)
        n[c] -= term
    _normalised(n)
    ok = valid.copy()
    valid_at = EdgeShifts(valid, radius)
    for dy, dx in ((0, radius), (0, -radius), (radius, 0), (-radius, 0)):
        ok &= valid_at(dy, dx)
    n *= ok
    if smooth > 1:
        box = np.empty_like(n)
        for c in range(3):
            cv2.boxFilter(n[c], -1, (smooth, smooth), dst=box[c], normalize=False)
        n = box
    np.negative(n, out=n, where=dot3(n, points) > 0)  # face the camera: n . p < 0
    _normalised(n)
    n *= valid
    return n


def depth_noise_sigma(z: np.ndarray, sigma0: float, sigma2: float) -> np.ndarray:
    """Axial noise model sigma(z) = sigma0 + sigma2 * z^2 (metres), structured-light/ToF style."""
    return (np.float32(sigma0) + np.float32(sigma2) * z * z).astype(np.float32)


def jump_limit(z: np.ndarray, rel_jump: float, sigma0: float, sigma2: float, n_sigma: float) -> np.ndarray:
    """Largest depth step (metres) between neighbours at depth ``z`` that is still one surface: a share of
    the depth (slanted surfaces) plus ``n_sigma`` times the noise of a difference of two readings."""
    return np.float32(rel_jump) * z + np.float32(n_sigma * np.sqrt(2.0)) * depth_noise_sigma(z, sigma0, sigma2)


def depth_discontinuities(depth: np.ndarray, valid: np.ndarray, rel_jump: float, sigma0: float, sigma2: float,
                          n_sigma: float) -> np.ndarray:
    """Pixels on either side of a depth jump between 8-neighbours (bool H x W).

    A jump is |z_p - z_q| > rel_jump * min(z) + n_sigma * sqrt(2) * sigma(min(z)): relative to depth (so a
    slanted floor far away does not break up) plus the sensor noise at that depth. Pixels next to invalid
    ones are not marked here (invalid areas are not labelled at all).
    """
    edge = np.zeros(depth.shape, bool)
    for dy, dx in PAIR_OFFSETS:
        q = shifted(depth, dy, dx)
        qv = shifted(valid, dy, dx)
        zmin = np.minimum(depth, q)
        thresh = jump_limit(zmin, rel_jump * np.hypot(dy, dx), sigma0, sigma2, n_sigma)
        jump = valid & qv & (np.abs(depth - q) > thresh)
        edge |= jump
        edge |= shifted(jump, -dy, -dx) & valid  # mark the partner pixel too
    return edge


def crease_strength(points: np.ndarray, normals: np.ndarray, valid: np.ndarray, offset: int, directions=PAIR_OFFSETS):
    """Concave and convex crease strengths (H x W float32, 1 - cos of the angle between normals).

    Compares the normals of the pixels ``offset`` before and after each pixel along ``directions`` (default:
    x, y and both diagonals).
    With normals facing the camera, (n_p - n_q) . (x_p - x_q) < 0 marks a concave crease (a box meeting the
    floor, a wall corner seen from inside) and > 0 a convex one (a box's own edges). Returns the maximum
    over directions of each kind.
    """
    concave = np.zeros(valid.shape, np.float32)
    convex = np.zeros(valid.shape, np.float32)
    for bend, sign in _bends(points, normals, valid, offset, directions):
        np.maximum(concave, bend, out=concave, where=sign < 0)  # concave >= 0: a negative bend never wins
        np.maximum(convex, bend, out=convex, where=sign > 0)
    return concave, convex


def concave_strength(points: np.ndarray, normals: np.ndarray, valid: np.ndarray, offset: int,
                     directions=PAIR_OFFSETS, floor: float = 0.0) -> np.ndarray:
    """``crease_strength``'s concave half alone (the other half's work skipped).

    With ``floor`` > 0, strengths at or below ``floor`` read 0 and the rest are exact (a threshold at or
    above ``floor`` sees no change): the crease sign is then computed only where a bend exceeds both
    ``floor`` and the strength so far, a few percent of the pixels.
    """
    if floor <= 0:
        concave = np.zeros(valid.shape, np.float32)
        for bend, sign in _bends(points, normals, valid, offset, directions):
            np.maximum(concave, bend, out=concave, where=sign < 0)
        return concave
    concave = np.zeros(valid.size, np.float32)
    reach = max((max(abs(dy), abs(dx)) * offset for dy, dx in directions), default=0)
    normal_at, point_at, valid_at = (EdgeShifts(a, reach) for a in (normals, points, valid))
    for dy, dx in directions:
        a, b = (-dy * offset, -dx * offset), (dy * offset, dx * offset)
        bend = (np.float32(1.0) - dot3(normal_at(*a), normal_at(*b))).ravel()
        worth = (bend > np.maximum(concave, np.float32(floor))).reshape(valid.shape)
        worth &= valid
        worth &= valid_at(*a)
        worth &= valid_at(*b)
        pick = np.flatnonzero(worth)
        at = normal_at.padded_index(pick)
        sign = dot3(normal_at.gather(at, *a) - normal_at.gather(at, *b),
                    point_at.gather(at, *a) - point_at.gather(at, *b))
        pick = pick[sign < 0]
        concave[pick] = bend[pick]
    return concave.reshape(valid.shape)


def _bends(points: np.ndarray, normals: np.ndarray, valid: np.ndarray, offset: int, directions):
    """Per direction: (bend: 1 - n_p . n_q where p, q and the pixel are valid, else 0; the crease sign
    (n_p - n_q) . (x_p - x_q)), p and q ``offset`` pixels before and after each pixel (see
    ``crease_strength``)."""
    zero = np.float32(0.0)
    reach = max((max(abs(dy), abs(dx)) * offset for dy, dx in directions), default=0)
    normal_at, point_at, valid_at = (EdgeShifts(a, reach) for a in (normals, points, valid))
    for dy, dx in directions:
        a, b = (-dy * offset, -dx * offset), (dy * offset, dx * offset)
        p_n, q_n = normal_at(*a), normal_at(*b)
        ok = valid & valid_at(*a) & valid_at(*b)
        bend = np.where(ok, np.float32(1.0) - dot3(p_n, q_n), zero)
        yield bend, dot3(p_n - q_n, point_at(*a) - point_at(*b))


def color_gradient(color: np.ndarray, blur_sigma: float, chroma_weight: float = 1.0) -> np.ndarray:
    """Colour edge strength (H x W float32) of the Gaussian-blurred image in CIE Lab (8-bit scaling), in Lab
    units per pixel: the larger of the lightness gradient's Sobel magnitude and ``chroma_weight`` times the
    chroma's (the magnitude over both a and b). Shading and texture move lightness far more than hue, so a
    weight above 1 lets a change of hue cut where a change of brightness as large does not."""
    blurred = cv2.GaussianBlur(color, (0, 0), blur_sigma) if blur_sigma > 0 else color
    lab = cv2.cvtColor(blurred, cv2.COLOR_RGB2Lab)
    gx = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    gx *= gx
    gy *= gy
    gx += gy
    # Channel sums and maxima as elementwise operations on the channel planes (a reduction over a length-3 axis
    # is ~10x slower), then one square root (monotonic, so the maximum commutes with it).
    chroma = gx[..., 1] + gx[..., 2]
    chroma *= np.float32(chroma_weight * chroma_weight)
    return np.sqrt(np.maximum(gx[..., 0], chroma))
