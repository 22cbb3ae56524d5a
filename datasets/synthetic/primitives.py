"""Triangle-mesh primitives (boxes, cylinders, spheres, quads) with per-vertex normals.

All coordinates are metres in the world frame (z up). Every primitive keeps its own vertices so that
flat faces get flat normals and curved faces get smooth ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Mesh:
    """A triangle mesh: ``vertices`` V x 3 float64 (m), ``triangles`` T x 3 int32, ``normals`` V x 3 unit."""

    vertices: np.ndarray
    triangles: np.ndarray
    normals: np.ndarray

    def translated(self, offset) -> "Mesh":
        return Mesh(self.vertices + np.asarray(offset, dtype=np.float64), self.triangles, self.normals)

    def rotated_z(self, yaw: float, pivot) -> "Mesh":
        """Rotate by ``yaw`` radians about the vertical axis through ``pivot`` (x, y)."""
        c, s = np.cos(yaw), np.sin(yaw)
        R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        p = np.array([pivot[0], pivot[1], 0.0])
        return Mesh((self.vertices - p) @ R.T + p, self.triangles, self.normals @ R.T)


def merge_meshes(meshes: list[Mesh]) -> tuple[Mesh, np.ndarray]:
    """Concatenate meshes; also return the source mesh index of every triangle (int32)."""
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    triangles = np.concatenate([m.triangles + o for m, o in zip(meshes, offsets)]).astype(np.int32)
    owner = np.repeat(np.arange(len(meshes), dtype=np.int32), [len(m.triangles) for m in meshes])
    merged = Mesh(
        np.concatenate([m.vertices for m in meshes]),
        triangles,
        np.concatenate([m.normals for m in meshes]),
    )
    return merged, owner


def quad(corner, edge_u, edge_v) -> Mesh:
    """Parallelogram ``corner + a*edge_u + b*edge_v`` (a, b in [0, 1]); normal = edge_u x edge_v."""
    corner, edge_u, edge_v = (np.asarray(x, dtype=np.float64) for x in (corner, edge_u, edge_v))
    vertices = np.stack([corner, corner + edge_u, corner + edge_u + edge_v, corner + edge_v])
    normal = np.cross(edge_u, edge_v)
    normal = normal / np.linalg.norm(normal)
    triangles = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int32)
    return Mesh(vertices, triangles, np.tile(normal, (4, 1)))


_BOX_FACES = (  # (axis, sign) per face; order: -x, +x, -y, +y, -z (bottom), +z (top)
    (0, -1.0), (0, 1.0), (1, -1.0), (1, 1.0), (2, -1.0), (2, 1.0),
)


def box(size, center, bottom: bool = True) -> Mesh:
    """Axis-aligned box of ``size`` (sx, sy, sz) centred at ``center``; ``bottom=False`` omits the -z face
    (used when the box rests on a surface, so ground-truth points are not sampled on hidden contact faces)."""
    size = np.asarray(size, dtype=np.float64)
    center = np.asarray(center, dtype=np.float64)
    faces = [f for f in _BOX_FACES if bottom or f != (2, -1.0)]
    meshes = []
    for axis, sign in faces:
        u_axis, v_axis = [(1, 2), (2, 0), (0, 1)][axis]
        edge_u = np.zeros(3)
        edge_v = np.zeros(3)
        edge_u[u_axis] = size[u_axis]
        edge_v[v_axis] = size[v_axis]
        if sign < 0:
            edge_u, edge_v = edge_v, edge_u
        corner = center - size / 2.0
        corner[axis] = center[axis] + sign * size[axis] / 2.0
        meshes.append(quad(corner, edge_u, edge_v))
    return merge_meshes(meshes)[0]


def cylinder(radius: float, height: float, base_center, segments: int = 24, caps: bool = True) -> Mesh:
    """Vertical cylinder standing on ``base_center`` (bottom cap omitted: it rests on a surface)."""
    base = np.asarray(base_center, dtype=np.float64)
    angles = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles), np.zeros(segments)], axis=1)
    bottom = base + radius * ring
    top = bottom + np.array([0.0, 0.0, height])
    i = np.arange(segments, dtype=np.int32)
    j = (i + 1) % segments
    side_tris = np.concatenate([np.stack([i, j, j + segments], 1), np.stack([i, j + segments, i + segments], 1)])
    side = Mesh(np.concatenate([bottom, top]), side_tris, np.concatenate([ring, ring]))
    if not caps:
        return side
    cap_vertices = np.concatenate([top, [base + [0.0, 0.0, height]]])
    cap_tris = np.stack([i, j, np.full(segments, segments, dtype=np.int32)], 1)
    cap = Mesh(cap_vertices, cap_tris, np.tile([0.0, 0.0, 1.0], (segments + 1, 1)))
    return merge_meshes([side, cap])[0]


def sphere(radius: float, center, rings: int = 14, segments: int = 24) -> Mesh:
    """UV sphere; smooth normals."""
    theta = np.linspace(0.0, np.pi, rings + 1)
    phi = np.linspace(0.0, 2.0 * np.pi, segments + 1)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    normals = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1).reshape(-1, 3)
    r, s = np.meshgrid(np.arange(rings), np.arange(segments), indexing="ij")
    a = (r * (segments + 1) + s).ravel()
    b = a + segments + 1
    triangles = np.concatenate([np.stack([a, b, b + 1], 1), np.stack([a, b + 1, a + 1], 1)]).astype(np.int32)
    vertices = np.asarray(center, dtype=np.float64) + radius * normals
    return Mesh(vertices, _drop_degenerate(vertices, triangles), normals)


def _drop_degenerate(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    return triangles[triangle_areas(vertices, triangles) > 1e-12]


def triangle_areas(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area (m^2) of every triangle."""
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
