"""Coloured TSDF fusion of posed depth frames with Open3D's tensor ``VoxelBlockGrid`` (CPU).

Not ``ScalableTSDFVolume``: in Open3D 0.20 it integrates silently and extracts nothing (NOTES.md).
Units: metres; poses camera-to-world, OpenCV axes; extracted geometry is in the world frame.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import open3d as o3d
import open3d.core as o3c

from scene.datasets import Frame

from .backproject import check_camera


@dataclass(frozen=True)
class TSDFConfig:
    """``voxel_size`` and ``trunc`` (truncation distance, default 4 voxels) in metres; ``block_resolution``
    voxels per block side; ``block_count`` initial hash capacity (it grows on demand); ``depth_max``
    metres; ``weight_threshold``: extracted surface needs an integration weight (observations) above it."""

    voxel_size: float = 0.02
    trunc: float | None = None
    block_resolution: int = 8
    block_count: int = 20000
    depth_max: float = 5.0
    weight_threshold: float = 0.5
    device: str = "CPU:0"

    @property
    def trunc_voxels(self) -> float:
        return (4.0 * self.voxel_size if self.trunc is None else self.trunc) / self.voxel_size


class TSDFFusion:
    """Integrate frames, extract a coloured mesh or point cloud, save and load the grid."""

    def __init__(
        self,
        voxel_size: float = 0.02,
        trunc: float | None = None,
        block_count: int = 20000,
        config: TSDFConfig | None = None,
    ):
        self.config = config or TSDFConfig(voxel_size=voxel_size, trunc=trunc, block_count=block_count)
        if self.config.voxel_size <= 0 or self.config.trunc_voxels <= 1.0:
            raise ValueError(f"TSDFFusion: need voxel_size > 0 and trunc > voxel_size, got {self.config}")
        self._device = o3c.Device(self.config.device)
        self._grid = self._new_grid()
        self.frames_integrated = 0

    def _new_grid(self) -> o3d.t.geometry.VoxelBlockGrid:
        return o3d.t.geometry.VoxelBlockGrid(
            attr_names=("tsdf", "weight", "color"),
            attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
            attr_channels=((1), (1), (3)),
            voxel_size=self.config.voxel_size,
            block_resolution=self.config.block_resolution,
            block_count=self.config.block_count,
            device=self._device,
        )

    def integrate(self, frame: Frame) -> None:
        """Fuse one frame (depth metres, colour uint8 RGB of the same size)."""
        self.integrate_arrays(frame.depth, frame.K, frame.pose, frame.color)

    def integrate_arrays(
        self, depth: np.ndarray, K: np.ndarray, pose: np.ndarray, color: np.ndarray | None = None
    ) -> None:
        """Fuse depth (H x W metres, 0 invalid), intrinsics, camera-to-world pose, optional H x W x 3 uint8 colour."""
        check_camera(depth, K, pose, "TSDFFusion.integrate")
        depth_image = self._image(np.ascontiguousarray(depth, dtype=np.float32))
        intrinsic = o3c.Tensor(np.asarray(K, dtype=np.float64))
        extrinsic = o3c.Tensor(np.linalg.inv(np.asarray(pose, dtype=np.float64)))  # world-to-camera
        cfg = self.config
        blocks = self._grid.compute_unique_block_coordinates(
            depth_image, intrinsic, extrinsic, 1.0, cfg.depth_max, cfg.trunc_voxels
        )
        if color is None:  # depth-only integration leaves the stored colours as they are
            self._grid.integrate(blocks, depth_image, intrinsic, extrinsic, 1.0, cfg.depth_max, cfg.trunc_voxels)
            self.frames_integrated += 1
            return
        if color.shape != depth.shape + (3,) or color.dtype != np.uint8:
            raise ValueError(
                f"TSDFFusion.integrate: colour must be {depth.shape + (3,)} uint8, got {color.dtype} {color.shape}"
            )
        color_image = self._image(color.astype(np.float32) / np.float32(255.0))
        self._grid.integrate(
            blocks, depth_image, color_image, intrinsic, intrinsic, extrinsic, 1.0, cfg.depth_max, cfg.trunc_voxels
        )
        self.frames_integrated += 1

    def extract_mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vertices V x 3 float32 metres world, triangles T x 3 int64, colours V x 3 uint8 RGB)."""
        if self.frames_integrated == 0:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), np.zeros((0, 3), np.uint8)
        mesh = self._grid.extract_triangle_mesh(self.config.weight_threshold)
        vertices = mesh.vertex.positions.numpy().astype(np.float32)
        has_triangles, has_colors = "indices" in mesh.triangle, "colors" in mesh.vertex
        triangles = mesh.triangle.indices.numpy().astype(np.int64) if has_triangles else np.zeros((0, 3), np.int64)
        return vertices, triangles, _to_uint8(mesh.vertex.colors.numpy() if has_colors else None, len(vertices))

    def extract_point_cloud(self) -> tuple[np.ndarray, np.ndarray]:
        """(points N x 3 float32 metres world, colours N x 3 uint8 RGB) on the zero crossing."""
        if self.frames_integrated == 0:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
        cloud = self._grid.extract_point_cloud(self.config.weight_threshold)
        points = cloud.point.positions.numpy().astype(np.float32)
        return points, _to_uint8(cloud.point.colors.numpy() if "colors" in cloud.point else None, len(points))

    def _image(self, array: np.ndarray) -> o3d.t.geometry.Image:
        return o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(array), device=self._device))

    @property
    def num_blocks(self) -> int:
        return int(self._grid.hashmap().size())

    def save(self, path: str | Path) -> None:
        """Write the grid to ``path`` (an .npz file)."""
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"TSDFFusion.save: {path}: the file name must end in .npz")
        self._grid.save(str(path))

    @classmethod
    def load(cls, path: str | Path, config: TSDFConfig = TSDFConfig()) -> "TSDFFusion":
        """Read a grid written by ``save``; voxel size and block resolution come from the file, the
        rest of ``config`` (truncation, depth_max, weight_threshold) applies to later calls."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"TSDFFusion.load: {path}: no such file")
        with np.load(path) as saved:
            if "voxel_size" not in saved.files or "block_resolution" not in saved.files:
                raise ValueError(f"TSDFFusion.load: {path}: not a VoxelBlockGrid file (no voxel_size)")
            voxel_size, block_resolution = float(saved["voxel_size"][0]), int(saved["block_resolution"][0])
        fusion = cls(config=replace(config, voxel_size=voxel_size, block_resolution=block_resolution))
        fusion._grid = o3d.t.geometry.VoxelBlockGrid.load(str(path))
        fusion.frames_integrated = 1 if fusion.num_blocks > 0 else 0
        return fusion


def _to_uint8(colors: np.ndarray | None, n: int) -> np.ndarray:
    if colors is None:
        return np.zeros((n, 3), np.uint8)
    return np.clip(np.rint(colors * 255.0), 0, 255).astype(np.uint8)
