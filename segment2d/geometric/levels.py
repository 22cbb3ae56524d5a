"""The hierarchy's levels: the level codes, one level's regions (``Level``), and the region groups built on
level 0: rigid joins (legs hanging under a seat) and merged object parts (a chair's back, seat and legs)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..planes import PointSamples, RegionPlanes
from .config import GeometricConfig


LEVEL_GEOMETRY, LEVEL_COLOR, LEVEL_OBJECT, LEVEL_PLANE_UNION, LEVEL_PART_UNION = 0, 1, 2, 3, 4


@dataclass
class Level:
    """One level of the hierarchy at work resolution: labels (0 = none), their number, per-label data
    (row 0 is the unlabelled pixels). ``evidence``: the pixels its outlines are scored against (cut or
    invalid); ``support``: the outline support, filled in only for the levels that are offered (a level
    replaced by a relabelled one is never scored)."""

    code: int
    labels: np.ndarray
    n: int
    area: np.ndarray
    evidence: np.ndarray
    structure: np.ndarray
    planar: np.ndarray
    planes: RegionPlanes
    support: np.ndarray | None = None


def border_pairs(labels: np.ndarray, disc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 4-neighbour pixel pairs whose labels differ (a few percent of all pairs): per pair the two labels
    (a, b) and whether either pixel is on a depth jump (``disc``). Horizontal pairs first, then vertical."""
    h, w = labels.shape
    flat, jumps = labels.ravel(), disc.ravel()
    across = flat[:-1] != flat[1:]  # pixel p and p + 1; the pairs that wrap to the next row are dropped
    across[w - 1::w] = False
    first = [np.flatnonzero(across), np.flatnonzero(flat[:-w] != flat[w:])]
    second = [first[0] + 1, first[1] + w]
    a, b = np.concatenate(first), np.concatenate(second)
    return flat[a], flat[b], jumps[a] | jumps[b]


def merged_parts(lv: Level, disc: np.ndarray, color: np.ndarray, cfg: GeometricConfig) -> list[np.ndarray]:
    """Groups of adjacent non-structure regions of ``lv`` (a chair's back, seat and legs), as label arrays.

    Regions are adjacent when they share a border mostly free of depth jumps (a crease, not an occlusion).
    Adjacent pairs are merged greedily, most similar mean colour first (union-find over a few dozen
    regions), and every group formed along the way is offered, up to ``merge_max_unions``.
    """
    labels, n = lv.labels, lv.n
    a, b, jump = border_pairs(labels, disc)
    keep = (a > 0) & (b > 0) & ~lv.structure[a] & ~lv.structure[b]
    if not keep.any():
        return []
    pair = np.minimum(a[keep], b[keep]).astype(np.int64) * n + np.maximum(a[keep], b[keep])
    length = np.bincount(pair, minlength=n * n)
    jumps = np.bincount(pair, weights=jump[keep], minlength=n * n)
    edges = np.flatnonzero((length >= cfg.crease_border_px) & (jumps < cfg.crease_max_jump_share * length))
    mean_rgb = _region_colors(labels, color, n)
    weight = np.abs(mean_rgb[edges // n] - mean_rgb[edges % n]).sum(axis=1) / 3.0
    order = np.argsort(weight, kind="stable")
    order = order[weight[order] <= cfg.merge_max_color]
    parent = np.arange(n)
    members = {i: [i] for i in range(n)}
    max_area = cfg.merge_max_fraction * np.count_nonzero(labels)
    out = []
    for e in edges[order]:
        ra, rb = _root(parent, e // n), _root(parent, e % n)
        if ra == rb:
            continue
        parent[rb] = ra
        members[ra] = members[ra] + members.pop(rb)
        group = np.array(members[ra])
        if lv.area[group].sum() <= max_area:
            out.append(group)
            if len(out) >= cfg.merge_max_unions:
                break
    return out


def rigid_groups(lv: Level, disc: np.ndarray, samples: PointSamples, up: np.ndarray, cfg: GeometricConfig):
    """Label remap (old -> new, 0 kept) joining rigidly attached regions of ``lv``, or None when none join.
    ``samples``: the points of every other pixel (``lv.labels[::2, ::2]``)."""
    labels, n = lv.labels, lv.n
    a, b, jump = border_pairs(labels, disc)
    keep = (a > 0) & (b > 0) & ~lv.structure[a] & ~lv.structure[b]
    if not keep.any():
        return None
    a, b, jump = a[keep], b[keep], jump[keep]
    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    pair = lo * n + hi
    length = np.bincount(pair, minlength=n * n)
    jumps = np.bincount(pair, weights=jump, minlength=n * n)
    edges = np.flatnonzero((length >= cfg.crease_border_px) & (jumps < cfg.crease_max_jump_share * length))
    if len(edges) == 0:
        return None
    # Per-region 3D moments (every other pixel).
    sub = labels[::2, ::2].ravel().astype(np.intp)
    p = samples.coords
    m0 = np.bincount(sub, minlength=n).astype(np.float64)
    m1 = np.stack([np.bincount(sub, p[i], n) for i in range(3)], axis=1)
    m2 = np.empty((n, 3, 3))
    for (i, j), product in samples.products.items():
        m2[:, i, j] = m2[:, j, i] = np.bincount(sub, product, n)
    safe = np.maximum(m0, 1.0)
    mean = m1 / safe[:, None]
    cov = m2 / safe[:, None, None] - mean[:, :, None] * mean[:, None, :]
    ea, eb = edges // n, edges % n
    big = np.where(lv.area[ea] >= lv.area[eb], ea, eb)
    small = np.where(lv.area[ea] >= lv.area[eb], eb, ea)
    hvec = mean[small] - mean[big]
    hvec = hvec - np.outer(hvec @ up, up)
    big_var = np.trace(cov[big], axis1=1, axis2=2) - np.einsum("i,kij,j->k", up, cov[big], up)  # horizontal
    under = np.linalg.norm(hvec, axis=1) <= cfg.join_max_offset * np.sqrt(np.maximum(big_var, 0.0))
    ok = (lv.area[small] <= cfg.join_max_area_ratio * lv.area[big]) & under & (m0[small] >= 4) & (m0[big] >= 4)
    if not ok.any():
        return None
    # Robust height ranges (quantiles along ``up``), sorted only for the regions of pairs still in question.
    needed = np.zeros(n, bool)
    needed[small[ok]] = needed[big[ok]] = True
    pick = needed[sub]
    height = (up @ p)[pick]
    hs = height[np.lexsort((height, sub[pick]))]
    cnt = np.where(needed, m0, 0).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    last = max(len(hs) - 1, 0)
    low, high = cfg.join_height_quantiles
    zlo = hs[np.minimum(start + (low * np.maximum(cnt - 1, 0)).astype(np.int64), last)]
    zhi = hs[np.minimum(start + (high * np.maximum(cnt - 1, 0)).astype(np.int64), last)]
    ok &= np.abs(zhi[small] - zlo[big]) <= cfg.join_contact  # small's top at big's underside
    if not ok.any():
        return None
    parent = np.arange(n)
    max_area = cfg.object_fraction * labels.size
    area = lv.area.astype(np.float64).copy()
    M0, M1, M2 = m0.copy(), m1.copy(), m2.copy()
    joined = False
    for k in np.argsort(-length[edges] * ok, kind="stable"):
        if not ok[k]:
            break
        ra, rb = _root(parent, big[k]), _root(parent, small[k])
        if ra == rb:
            continue
        c0, c1, c2 = M0[ra] + M0[rb], M1[ra] + M1[rb], M2[ra] + M2[rb]
        if c0 < 8 or area[ra] + area[rb] > max_area:
            continue
        mu = c1 / c0
        ev = np.linalg.eigvalsh(c2 / c0 - np.outer(mu, mu))
        if np.sqrt(max(ev[-1], 0.0)) >= cfg.object_extent:
            continue
        parent[rb] = ra
        M0[ra], M1[ra], M2[ra], area[ra] = c0, c1, c2, area[ra] + area[rb]
        joined = True
    if not joined:
        return None
    roots = np.array([_root(parent, i) for i in range(n)])
    _, remap = np.unique(roots, return_inverse=True)
    return remap.astype(np.int32)  # root 0 stays 0 (label 0 is its own root and the smallest)


def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return int(i)


def _region_colors(labels: np.ndarray, color: np.ndarray, n: int) -> np.ndarray:
    """n x 3 float32 mean RGB of each label's pixels (row 0: unlabelled)."""
    lab = labels.ravel()
    count = np.maximum(np.bincount(lab, minlength=n), 1).astype(np.float32)
    rgb = color.reshape(-1, 3)
    return np.stack([np.bincount(lab, rgb[:, i], n) for i in range(3)], axis=1).astype(np.float32) / count[:, None]
