"""2D rectangle packing by rejection sampling (axis-aligned footprints on the floor or a support surface).

Rectangles are (xmin, ymin, xmax, ymax) in metres. Touching rectangles (shared edge) are allowed;
overlapping ones are not.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

_EPS = 1e-6


class RectPacker:
    """Places rectangles inside ``region`` without overlap, optionally outside a keep-out zone.

    ``keepout(points) -> bool mask`` marks sample points (N x 2) that a footprint must not cover.
    """

    def __init__(self, region, keepout: Callable[[np.ndarray], np.ndarray] | None = None):
        self.region = np.asarray(region, dtype=np.float64)
        self.keepout = keepout
        self.rects = np.zeros((0, 4), dtype=np.float64)

    def add(self, rect) -> None:
        self.rects = np.vstack([self.rects, np.asarray(rect, dtype=np.float64)[None]])

    def place(self, size, rng: np.random.Generator, tries: int = 256, touch_prob: float = 0.0, within=None):
        """Return a free rectangle of ``size`` (sx, sy), or None if none of ``tries`` candidates fits.

        With probability ``touch_prob`` candidates are drawn flush against an already placed rectangle,
        so objects end up touching each other; ``within`` (a rectangle) restricts the candidates, e.g. to
        a strip along a wall.
        """
        size = np.asarray(size, dtype=np.float64)
        if len(self.rects) and within is None and rng.uniform() < touch_prob:
            centres = self._touching_centres(size, rng, tries)
        else:
            area = self.region if within is None else np.asarray(within, dtype=np.float64)
            lo = area[:2] + size / 2
            hi = area[2:] - size / 2
            if np.any(hi < lo):
                return None
            centres = rng.uniform(lo, hi, size=(tries, 2))
        rects = np.concatenate([centres - size / 2, centres + size / 2], axis=1)
        ok = self._inside_region(rects) & ~self._overlaps(rects) & ~self._in_keepout(rects)
        if not ok.any():
            return None
        rect = rects[np.argmax(ok)]
        self.add(rect)
        return rect

    def _touching_centres(self, size, rng, n) -> np.ndarray:
        other = self.rects[rng.integers(len(self.rects), size=n)]
        side = rng.integers(4, size=n)
        t = rng.uniform(0, 1, size=n)
        x = other[:, 0] + t * (other[:, 2] - other[:, 0])
        y = other[:, 1] + t * (other[:, 3] - other[:, 1])
        cx = np.select([side == 0, side == 1], [other[:, 0] - size[0] / 2, other[:, 2] + size[0] / 2], x)
        cy = np.select([side == 2, side == 3], [other[:, 1] - size[1] / 2, other[:, 3] + size[1] / 2], y)
        return np.stack([cx, cy], axis=1)

    def _inside_region(self, rects) -> np.ndarray:
        lower_ok = np.all(rects[:, :2] >= self.region[:2] - _EPS, axis=1)
        return lower_ok & np.all(rects[:, 2:] <= self.region[2:] + _EPS, axis=1)

    def _overlaps(self, rects) -> np.ndarray:
        if len(self.rects) == 0:
            return np.zeros(len(rects), dtype=bool)
        a, b = rects[:, None, :], self.rects[None, :, :]
        sep = (a[..., 2] <= b[..., 0] + _EPS) | (b[..., 2] <= a[..., 0] + _EPS)
        sep |= (a[..., 3] <= b[..., 1] + _EPS) | (b[..., 3] <= a[..., 1] + _EPS)
        return (~sep).any(axis=1)

    def _in_keepout(self, rects, grid: int = 6) -> np.ndarray:
        if self.keepout is None:
            return np.zeros(len(rects), dtype=bool)
        t = np.linspace(0.0, 1.0, grid)
        u, v = np.meshgrid(t, t, indexing="ij")
        xs = rects[:, None, 0] + u.ravel()[None] * (rects[:, None, 2] - rects[:, None, 0])
        ys = rects[:, None, 1] + v.ravel()[None] * (rects[:, None, 3] - rects[:, None, 1])
        pts = np.stack([xs, ys], axis=-1).reshape(-1, 2)
        return self.keepout(pts).reshape(len(rects), -1).any(axis=1)
