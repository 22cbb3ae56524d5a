"""Plane statistics of labelled regions (one least-squares plane per label from summed moments) and the
grouping of coplanar regions, e.g. the parts of a floor that a table cuts apart in the image.

Points are camera-frame metres; normals are unit vectors facing the camera; a plane is n . x + offset = 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RegionPlanes:
    """Per-label plane fits; row k describes label k (row 0, the unlabelled pixels, is meaningless).

    - ``count``: valid pixels per label; ``centroid``: K x 3 metres.
    - ``normal``: K x 3 unit plane normals (facing the camera); ``offset``: K, so that n . x + offset = 0.
    - ``rms``: K, root-mean-square distance of the points to their plane (metres).
    - ``extent``: K x 2, standard deviations along the two in-plane principal axes (metres, largest first).
    """

    count: np.ndarray
    centroid: np.ndarray
    normal: np.ndarray
    offset: np.ndarray
    rms: np.ndarray
    extent: np.ndarray


@dataclass(frozen=True)
class PointSamples:
    """An organised cloud's points as float64 rows with their pairwise products (the per-point terms of the
    plane-fit moments): made once per frame and shared by every labelling of the same pixels."""

    coords: np.ndarray  # 3 x N float64 metres
    products: dict  # (i, j) with i <= j -> N float64, coords[i] * coords[j]

    @classmethod
    def of(cls, points: np.ndarray) -> "PointSamples":
        """Samples of 3 x H x W (or 3 x N) camera-frame points."""
        coords = points.reshape(3, -1).astype(np.float64)
        return cls(coords, {(i, j): coords[i] * coords[j] for i in range(3) for j in range(i, 3)})


def fit_region_planes(points, labels: np.ndarray, n_labels: int) -> RegionPlanes:
    """Fit a plane to each label's points in one pass of weighted bincounts and one batched eigh.

    ``points``: 3 x H x W camera-frame metres, or their ``PointSamples``; ``labels``: H x W int, 0 = none,
    1..n_labels-1 regions.
    """
    samples = points if isinstance(points, PointSamples) else PointSamples.of(points)
    lab = labels.ravel().astype(np.intp)  # once: bincount would convert it in each of its ten calls
    pts = samples.coords
    count = np.bincount(lab, minlength=n_labels).astype(np.float64)
    safe = np.maximum(count, 1.0)
    first = np.stack([np.bincount(lab, pts[i], n_labels) for i in range(3)], axis=1) / safe[:, None]
    second = np.empty((n_labels, 3, 3), np.float64)
    for (i, j), product in samples.products.items():
        m = np.bincount(lab, product, n_labels) / safe
        second[:, i, j] = second[:, j, i] = m
    cov = second - first[:, :, None] * first[:, None, :]
    evals, evecs = np.linalg.eigh(cov)  # ascending eigenvalues
    normal = evecs[:, :, 0]
    facing_away = np.einsum("kc,kc->k", normal, first) > 0
    normal[facing_away] *= -1.0
    offset = -np.einsum("kc,kc->k", normal, first)
    evals = np.maximum(evals, 0.0)
    return RegionPlanes(
        count=count.astype(np.int64),
        centroid=first,
        normal=normal,
        offset=offset,
        rms=np.sqrt(evals[:, 0]),
        extent=np.sqrt(evals[:, :0:-1]),
    )


def coplanar_groups(planes: RegionPlanes, candidates: np.ndarray, max_angle_deg: float,
                    max_offset: float) -> list[np.ndarray]:
    """Groups (arrays of labels, >= 2 each) of candidate regions that lie on one plane.

    Two regions join when their normals differ by less than ``max_angle_deg`` and each one's centroid lies
    within ``max_offset`` metres of the other's plane. Grouping is transitive (connected components).
    """
    cand = np.flatnonzero(candidates)
    if len(cand) < 2:
        return []
    n = planes.normal[cand]
    c = planes.centroid[cand]
    cos_ok = (n @ n.T) > np.cos(np.deg2rad(max_angle_deg))
    dist = np.abs(n @ c.T + planes.offset[cand][:, None])  # dist[i, j]: centroid j to plane i
    linked = cos_ok & (dist < max_offset) & (dist.T < max_offset)
    group = _components(linked)
    out = []
    for g in np.unique(group):
        members = cand[group == g]
        if len(members) >= 2:
            out.append(members)
    return out


def _components(adjacency: np.ndarray) -> np.ndarray:
    """Connected-component id per node of a small symmetric boolean adjacency matrix."""
    n = len(adjacency)
    reach = adjacency | np.eye(n, dtype=bool)
    while True:  # boolean transitive closure by repeated squaring: log2(n) products of a few-dozen matrix
        nxt = (reach.astype(np.int32) @ reach.astype(np.int32)) > 0
        if np.array_equal(nxt, reach):
            break
        reach = nxt
    return reach.argmax(axis=1)


def on_planes(points: np.ndarray, normals: np.ndarray, plane_normal: np.ndarray, plane_offset: np.ndarray,
              max_dist_abs: float, max_dist_rel: float, max_angle_deg: float) -> np.ndarray:
    """H x W bool: pixels lying on any of the given planes (P x 3 normals, P offsets).

    A pixel is on a plane when its distance to it is below ``max_dist_abs + max_dist_rel * z`` metres and
    its surface normal is within ``max_angle_deg`` of the plane's. ``points``/``normals``: 3 x H x W.
    """
    out = np.zeros(points.shape[1:], bool)
    limit = np.float32(max_dist_abs) + np.float32(max_dist_rel) * points[2]
    cos_min = np.float32(np.cos(np.deg2rad(max_angle_deg)))
    for n, o in zip(np.asarray(plane_normal, np.float32), np.asarray(plane_offset, np.float32)):
        dist = np.abs(n[0] * points[0] + n[1] * points[1] + n[2] * points[2] + o)
        agree = n[0] * normals[0] + n[1] * normals[1] + n[2] * normals[2]
        out |= (dist < limit) & (agree > cos_min)
    return out
