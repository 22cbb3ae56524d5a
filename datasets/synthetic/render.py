"""Headless ray-cast rendering of a `Layout` with Open3D's RaycastingScene.

Outputs per pixel: planar depth (float32 metres, 0 where no surface), instance id (int32, 0 = void),
Lambertian-shaded RGB (uint8) and albedo luminance (float32, used by the sensor model's dark-surface
dropout). Pixel (u, v) looks along ((u - cx) / fx, (v - cy) / fy, 1) in the camera frame (OpenCV axes),
so back-projecting with the same K and pose recovers the surface point exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from .layout import Layout
from .primitives import merge_meshes
from .textures import albedo_at

_INVALID = np.uint32(0xFFFFFFFF)


@dataclass
class LightingConfig:
    """Ambient term plus directional lights (unit vectors towards the light, world frame) and one point
    light under the ceiling centre whose intensity falls off as 1 / (1 + (d / falloff)^2)."""

    ambient: float = 0.32
    directional: tuple = (((0.35, 0.55, 0.76), 0.45), ((-0.7, -0.3, 0.65), 0.2))
    point_intensity: float = 0.35
    point_falloff: float = 3.0


@dataclass
class RenderOutput:
    depth: np.ndarray  # H x W float32 metres, 0 = no hit
    instance_ids: np.ndarray  # H x W int32
    color: np.ndarray  # H x W x 3 uint8
    luminance: np.ndarray  # H x W float32 albedo luminance in [0, 1]


class Renderer:
    """Ray caster bound to one layout; ``render(pose, K, width, height)`` for any camera."""

    def __init__(self, layout: Layout, lighting: LightingConfig | None = None, nthreads: int = 0):
        mesh, owner = merge_meshes([p.mesh for p in layout.parts])
        self.mesh = mesh
        corners = mesh.normals.astype(np.float32)[mesh.triangles]  # T x 3 x 3
        self.face_normals = corners.mean(axis=1)
        self.face_normals /= np.linalg.norm(self.face_normals, axis=1, keepdims=True)
        self.curved = np.abs(corners - corners[:, :1]).max(axis=(1, 2)) > 1e-6  # needs interpolation
        self.corner_normals = corners
        self._ray_cache: dict = {}
        self.tri_instance = np.array([p.instance_id for p in layout.parts], dtype=np.int32)[owner]
        self.tri_material = np.array([p.material for p in layout.parts], dtype=np.int32)[owner]
        self.materials = layout.materials
        self.lighting = lighting or LightingConfig()
        sx, sy, h = layout.room_size
        self.point_light = np.asarray(layout.origin, np.float64) + [sx / 2, sy / 2, h - 0.1]
        self.nthreads = nthreads
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(
            o3d.core.Tensor(mesh.vertices.astype(np.float32)), o3d.core.Tensor(mesh.triangles.astype(np.uint32))
        )

    def _cast(self, pose, K, width, height):
        """Cast one ray per pixel; returns the world ray directions (H*W x 3 float32) and Open3D's hits."""
        key = (np.asarray(K, dtype=np.float64).tobytes(), width, height)
        if key not in self._ray_cache:
            self._ray_cache = {key: camera_ray_grid(K, width, height)}
        grid = self._ray_cache[key]
        R = pose[:3, :3].astype(np.float32)
        rays = np.empty((height * width, 6), dtype=np.float32)
        rays[:, :3] = pose[:3, 3]
        # grid z is 1: R @ (x, y, 1) = x R[:, 0] + y R[:, 1] + R[:, 2] (avoids a BLAS call per frame)
        rays[:, 3:] = grid[:, :1] * R[:, 0] + grid[:, 1:2] * R[:, 1] + R[:, 2]
        return rays[:, 3:], self.scene.cast_rays(o3d.core.Tensor(rays), nthreads=self.nthreads)

    def instance_ids(self, pose: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
        """Only the H x W int32 instance-id image (no shading)."""
        return self.depth_and_ids(pose, K, width, height)[1]

    def depth_and_ids(self, pose: np.ndarray, K: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Planar depth (H x W float32 m, 0 = no hit) and instance ids (H x W int32), no shading."""
        hit = self._cast(pose, K, width, height)[1]
        prim = hit["primitive_ids"].numpy()
        valid = prim != _INVALID
        ids = np.zeros(height * width, dtype=np.int32)
        ids[valid] = self.tri_instance[prim[valid].astype(np.int64)]
        depth = np.where(valid, hit["t_hit"].numpy(), np.float32(0.0)).astype(np.float32)
        return depth.reshape(height, width), ids.reshape(height, width)

    def first_hit(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Distance to the first surface along each ray, in units of its direction's length (inf: none)."""
        rays = np.concatenate([origins, directions], axis=1).astype(np.float32)
        return self.scene.cast_rays(o3d.core.Tensor(rays), nthreads=self.nthreads)["t_hit"].numpy()

    def render(self, pose: np.ndarray, K: np.ndarray, width: int, height: int) -> RenderOutput:
        directions, hit = self._cast(pose, K, width, height)
        t = hit["t_hit"].numpy().reshape(-1)
        prim = hit["primitive_ids"].numpy().reshape(-1)
        valid = (prim != _INVALID) & np.isfinite(t)
        sel = slice(None) if valid.all() else valid  # closed rooms: views instead of masked copies
        tri = prim[sel].astype(np.int64)
        ray_dirs = directions[sel]
        # positions in float64: texture lookups (floor(p / period)) must not flicker with rounding
        points = pose[:3, 3] + t[sel, None].astype(np.float64) * ray_dirs
        normals = self._normals(tri, hit["primitive_uvs"].numpy().reshape(-1, 2)[sel], ray_dirs)
        albedo = albedo_at(points, self.tri_material[tri], self.materials)
        shaded = albedo * self._irradiance(points.astype(np.float32), normals)[:, None]
        n = height * width
        depth = np.where(valid, t, np.float32(0.0)).astype(np.float32)
        ids = np.zeros(n, dtype=np.int32)
        ids[sel] = self.tri_instance[tri]
        color = np.zeros((n, 3), dtype=np.uint8)
        color[sel] = np.clip(shaded * np.float32(255.0) + np.float32(0.5), 0, 255).astype(np.uint8)
        luminance = np.zeros(n, dtype=np.float32)
        luminance[sel] = albedo @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        shape = (height, width)
        return RenderOutput(
            depth.reshape(shape), ids.reshape(shape), color.reshape(*shape, 3), luminance.reshape(shape)
        )

    def _normals(self, tri: np.ndarray, uv: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Face normals, or on curved surfaces interpolated vertex normals (Embree barycentrics:
        p = (1-u-v) p0 + u p1 + v p2); flipped to face the camera; N x 3 float32."""
        n = self.face_normals[tri]
        curved = np.flatnonzero(self.curved[tri])
        if len(curved):
            c = self.corner_normals[tri[curved]]
            w = uv[curved]
            m = c[:, 0] + w[:, :1] * (c[:, 1] - c[:, 0]) + w[:, 1:] * (c[:, 2] - c[:, 0])
            n[curved] = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
        facing_away = np.einsum("ij,ij->i", n, directions) > 0
        n[facing_away] *= -1.0
        return n

    def _irradiance(self, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        light = self.lighting
        total = np.full(len(points), light.ambient, dtype=np.float32)
        for direction, intensity in light.directional:
            d = np.asarray(direction, dtype=np.float32)
            total += np.float32(intensity) * np.maximum(normals @ (d / np.linalg.norm(d)), 0)
        to_light = self.point_light.astype(np.float32) - points
        dist2 = np.einsum("ij,ij->i", to_light, to_light)
        dist = np.sqrt(dist2)
        cosine = np.maximum(np.einsum("ij,ij->i", normals, to_light) / np.maximum(dist, 1e-9), 0)
        total += np.float32(light.point_intensity) * cosine / (1.0 + dist2 / np.float32(light.point_falloff**2))
        return total


def camera_ray_grid(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """Camera-frame ray directions ((u - cx) / fx, (v - cy) / fy, 1), row-major pixels, H*W x 3 float32."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    grid = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
    return grid.reshape(-1, 3).astype(np.float32)
