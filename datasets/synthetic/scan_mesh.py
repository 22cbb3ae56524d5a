"""A synthetic scene as the triangle mesh a scanner would give, with the instance of every vertex:
the layout's surfaces subdivided until no edge is longer than ``max_edge`` metres, vertices shared
within an instance welded (different instances stay unconnected), colours from the materials."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import Layout
from .primitives import merge_meshes
from .textures import albedo_at


@dataclass
class ScanMesh:
    """``vertices`` V x 3 float32 metres (world), ``triangles`` T x 3 int32, ``colors`` V x 3 uint8,
    ``instance_ids`` V int32 (the layout's instance ids)."""

    vertices: np.ndarray
    triangles: np.ndarray
    colors: np.ndarray
    instance_ids: np.ndarray


def scan_mesh(layout: Layout, max_edge: float = 0.05) -> ScanMesh:
    """The layout's surfaces as one welded, evenly subdivided mesh with per-vertex instance ids."""
    if max_edge <= 0:
        raise ValueError(f"max_edge must be > 0 metres, got {max_edge}")
    mesh, owner = merge_meshes([p.mesh for p in layout.parts])
    corners = mesh.vertices[mesh.triangles]  # T x 3 x 3
    longest = np.max(np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2), axis=1)
    steps = np.maximum(1, np.ceil(longest / max_edge).astype(np.int64))
    points, triangles, parts, offset = [], [], [], 0
    for n in np.unique(steps).tolist():
        chosen = np.flatnonzero(steps == n)
        bary, sub = _grid(n)
        a, b, c = (corners[chosen, k] for k in range(3))
        xyz = a[:, None] + bary[None, :, 0:1] * (b - a)[:, None] + bary[None, :, 1:2] * (c - a)[:, None]
        points.append(xyz.reshape(-1, 3))
        parts.append(np.repeat(owner[chosen], len(bary)))
        triangles.append((sub[None] + (offset + np.arange(len(chosen)) * len(bary))[:, None, None]).reshape(-1, 3))
        offset += len(chosen) * len(bary)
    xyz, part, tri = np.concatenate(points), np.concatenate(parts), np.concatenate(triangles)
    instance = np.array([p.instance_id for p in layout.parts], np.int64)[part]
    welded, first, index = _weld(xyz, instance)
    tri = index[tri]
    tri = tri[(tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])]
    material = np.array([p.material for p in layout.parts], np.int64)[part[first]]
    colors = np.round(albedo_at(welded, material, layout.materials) * 255).astype(np.uint8)
    return ScanMesh(welded.astype(np.float32), tri.astype(np.int32), colors, instance[first].astype(np.int32))


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric (u, v) of the (n+1)(n+2)/2 grid points of a triangle split n times per edge, and the
    n^2 sub-triangles as index triples into them."""
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = i + j <= n
    i, j = i[keep], j[keep]
    index = np.full((n + 1, n + 1), -1, np.int64)
    index[i, j] = np.arange(len(i))
    a, b = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    up = a + b <= n - 1
    down = a + b <= n - 2
    upper = np.stack([index[a[up], b[up]], index[a[up] + 1, b[up]], index[a[up], b[up] + 1]], 1)
    lower = np.stack([index[a[down] + 1, b[down]], index[a[down] + 1, b[down] + 1], index[a[down], b[down] + 1]], 1)
    return np.stack([i, j], 1) / n, np.concatenate([upper, lower])


def _weld(xyz: np.ndarray, instance: np.ndarray, tolerance: float = 1e-4):
    """Merge points of one instance closer than ``tolerance`` (on a grid): (points, first source row of
    each, the welded index of every source row)."""
    cells = np.round(xyz / tolerance).astype(np.int64)
    keys = np.concatenate([cells, instance[:, None]], axis=1)
    _, first, index = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return xyz[first], first, index.reshape(-1)
