"""3D ground truth: points sampled area-uniformly on the scene's surfaces, with instance ids and albedo."""
from __future__ import annotations

import numpy as np

from ..gt import GTPoints
from .layout import Layout
from .primitives import merge_meshes, triangle_areas
from .textures import albedo_at


def sample_surface_points(layout: Layout, density: float, rng: np.random.Generator) -> GTPoints:
    """Sample ``density`` points per m^2 (on average) uniformly over all surfaces of ``layout``."""
    if density <= 0:
        raise ValueError(f"density must be > 0 points per m^2, got {density}")
    mesh, owner = merge_meshes([p.mesh for p in layout.parts])
    areas = triangle_areas(mesh.vertices, mesh.triangles)
    count = int(round(areas.sum() * density))
    tri = rng.choice(len(areas), size=count, p=areas / areas.sum())
    r1, r2 = rng.uniform(size=(2, count))
    flip = r1 + r2 > 1.0
    r1, r2 = np.where(flip, 1.0 - r1, r1), np.where(flip, 1.0 - r2, r2)
    a, b, c = (mesh.vertices[mesh.triangles[tri, k]] for k in range(3))
    xyz = a + r1[:, None] * (b - a) + r2[:, None] * (c - a)
    part_instance = np.array([p.instance_id for p in layout.parts], dtype=np.int32)
    part_material = np.array([p.material for p in layout.parts], dtype=np.int32)
    albedo = albedo_at(xyz, part_material[owner[tri]], layout.materials)
    colors = np.round(albedo * 255.0).astype(np.uint8)
    return GTPoints(xyz.astype(np.float32), part_instance[owner[tri]], colors)
