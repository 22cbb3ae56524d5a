"""Z-buffer point splatting: projected points drawn as squares of per-point size, nearest point wins.

Pure numpy (no GPU, no display). Each point covers a (2r+1) x (2r+1) square around its pixel, with its
own radius r in pixels; per pixel the point with the smallest depth wins (``np.minimum.at`` on depth
ranks, so ties and draw order never matter).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Splat:
    """A rendered image: ``rgb`` H x W x 3 uint8; ``depth`` H x W float64 (camera depth in metres or
    any depth-like key; inf where empty); ``index`` H x W int64 index of the winning input point (-1)."""

    rgb: np.ndarray
    depth: np.ndarray
    index: np.ndarray


def splat_points(
    pixels: np.ndarray, depth: np.ndarray, colors: np.ndarray, radius: np.ndarray, width: int, height: int,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Splat:
    """Draw N points at ``pixels`` (N x 2 float, x = column, y = row) with ``depth`` (N, smaller is
    nearer), ``colors`` (N x 3 uint8) and ``radius`` (N int, pixels) into a ``width`` x ``height`` image."""
    pixels = np.asarray(pixels, np.float64).reshape(-1, 2)
    n = len(pixels)
    depth = np.asarray(depth, np.float64).reshape(-1)
    radius = np.asarray(radius, np.int64).reshape(-1)
    if len(depth) != n or len(radius) != n or np.asarray(colors).shape != (n, 3):
        raise ValueError(f"splat_points: need N x 2 pixels, N depths, N x 3 colours and N radii, got "
                         f"{pixels.shape}, {depth.shape}, {np.asarray(colors).shape}, {radius.shape}")
    col = np.floor(pixels[:, 0] + 0.5).astype(np.int64)
    row = np.floor(pixels[:, 1] + 0.5).astype(np.int64)
    rank = np.empty(n, np.int64)
    rank[np.argsort(depth, kind="stable")] = np.arange(n, dtype=np.int64)
    best = np.full(width * height, n, np.int64)
    for r in np.unique(radius):
        members = np.flatnonzero(radius == r)
        _stamp(best, row[members], col[members], rank[members], int(r), width, height)
    order = np.argsort(depth, kind="stable")
    filled = best < n
    index = np.full(width * height, -1, np.int64)
    index[filled] = order[best[filled]]
    rgb = np.empty((width * height, 3), np.uint8)
    rgb[:] = np.asarray(background, np.uint8)
    rgb[filled] = np.asarray(colors, np.uint8)[index[filled]]
    z = np.full(width * height, np.inf)
    z[filled] = depth[index[filled]]
    return Splat(rgb.reshape(height, width, 3), z.reshape(height, width), index.reshape(height, width))


def _stamp(best: np.ndarray, row: np.ndarray, col: np.ndarray, rank: np.ndarray, r: int, width: int,
           height: int) -> None:
    """Lower ``best`` (flat pixel -> nearest rank) by every point's square of radius ``r``."""
    steps = np.arange(-r, r + 1)
    dr, dc = (a.reshape(-1) for a in np.meshgrid(steps, steps, indexing="ij"))
    rows, cols = (row[:, None] + dr).reshape(-1), (col[:, None] + dc).reshape(-1)
    ranks = np.repeat(rank, len(dr))
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    np.minimum.at(best, rows[inside] * width + cols[inside], ranks[inside])


def outline(rgb: np.ndarray, labels: np.ndarray, strength: float = 0.45) -> np.ndarray:
    """Darken pixels where ``labels`` (H x W int) differ from a right or lower neighbour: thin edges
    between objects and around them, which flat instance colours otherwise lack."""
    edge = np.zeros(labels.shape, bool)
    horizontal = labels[:, 1:] != labels[:, :-1]
    vertical = labels[1:, :] != labels[:-1, :]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    out = rgb.copy()
    out[edge] = (out[edge].astype(np.float32) * (1.0 - strength)).astype(np.uint8)
    return out


def fill_holes(splat: Splat, min_neighbours: int = 5) -> Splat:
    """Close pin-holes left between sparse points: an empty pixel with at least ``min_neighbours`` of
    its 8 neighbours filled takes the nearest (smallest-depth) neighbour's point. One pass."""
    h, w = splat.depth.shape
    depth = np.pad(splat.depth, 1, constant_values=np.inf)
    index = np.pad(splat.index, 1, constant_values=-1)
    shifts = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
    neighbour_depth = np.stack([depth[1 + dr:1 + dr + h, 1 + dc:1 + dc + w] for dr, dc in shifts])
    neighbour_index = np.stack([index[1 + dr:1 + dr + h, 1 + dc:1 + dc + w] for dr, dc in shifts])
    filled = np.isfinite(neighbour_depth).sum(axis=0)
    hole = (splat.index < 0) & (filled >= min_neighbours)
    nearest = np.argmin(neighbour_depth, axis=0)
    rows, cols = np.nonzero(hole)
    pick = nearest[rows, cols]
    new_index, new_depth, new_rgb = splat.index.copy(), splat.depth.copy(), splat.rgb.copy()
    new_index[rows, cols] = neighbour_index[pick, rows, cols]
    new_depth[rows, cols] = neighbour_depth[pick, rows, cols]
    source_rows, source_cols = rows + np.array(shifts)[pick, 0], cols + np.array(shifts)[pick, 1]
    new_rgb[rows, cols] = splat.rgb[source_rows, source_cols]
    return Splat(new_rgb, new_depth, new_index)
