"""Free-space evidence: per voxel, the frames that saw through it against the frames that saw it as surface.

A voxel that the views observe as free space (the ray to the observed surface passed through it) more
often than as surface is not a surface, whatever mask labelled it: the idea of space carving, which a
TSDF applies implicitly. Such voxels come from mixed pixels at depth edges, masks spilling across a
depth discontinuity, and surfaces seen only in a few frames whose pose is off or after which the scene
changed (a chair pushed aside): the other frames look straight through them.

Online each frame votes (``FreeSpaceVotes``): the centres of the map's cells (``cell_factor`` voxels per
side) in its frustum are classified against its coarse depth (``lift3d.visibility.coarse_depth``: the
nearest surface around each tile, float16), and each cell counts the frames that classify it as FREE and
as SURFACE. Cells entering the map later get the earlier frames' votes from keyframes (a frame near a
keyframe's pose is represented by it). The global pass reads the counts of the recorded segments'
voxels and leaves out of the objects those seen through more often than seen. Looking only at cell
centres against the nearest surface around their tile, a voxel counts as free only when it lies in
front of everything seen near its pixel: thin structures missed by a few pixels of pose error and
depth-edge pixels give no free votes. ``DepthRecords`` / ``free_space_counts`` replay every frame
instead (the exact reference the votes equal when every frame is a keyframe).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lift3d.backproject import transform_columns
from lift3d.visibility import FREE, SURFACE, VisibilityConfig, classify_points, coarse_depth, coarse_intrinsics
from lift3d.voxels import VoxelIndex, group_int64, pack_keys, stable_argsort, unpack_keys, voxel_centers

from .records import GrowableArray

CHUNK_METRES = 0.32  # frustum culling granularity: a few thousand chunks in a room


@dataclass(frozen=True)
class FreeSpaceConfig:
    """- ``carve``: record each frame's coarse depth and, in the global pass, leave out of the objects
      the voxels more frames saw through than saw (False: neither recorded nor carved).
    - ``block``: pixels per side of a coarse-depth tile; ``margin``: tiles on every side whose nearest
      surface also counts (how far, in tiles, a point may project off a thin object and still not be free).
    - ``cell_factor``: voxels per side of the cells whose centres are classified (the evidence is shared
      by a cell's voxels; 2 voxels = 4 cm, the surface tolerance, at the default 2 cm voxels).
    - ``free_ratio``: a voxel is carved when the frames seeing through it outnumber ``free_ratio`` x the
      frames seeing it as surface.
    - ``surface_tol``: metres within which a voxel centre counts as the observed surface (and beyond
      which in front of it, as free), up to 2 m and growing with depth beyond (``VisibilityConfig``).
    - ``keyframe_distance`` (metres) / ``keyframe_angle`` (degrees): a frame whose camera lies within
      both of a kept keyframe's is represented by it when cells first seen later are back-filled
      (``FreeSpaceVotes``); otherwise it becomes a keyframe. 0 keeps every frame (exact, unbounded).
    - ``backfill_every``: frames between back-fills of the cells new since the last one.

    Measured (refined map; ScanNet non-structure box AP25 / AP50, scene0448_01, scene0113_00, pooled;
    synthetic noisy room "all" AP / AP50 over 48 frames, seeds 0-1 tuned on and 2-5 held out):
    no carving 0.711/0.064, 0.750/0.750, 0.662/0.234; room 0-1 0.625/0.853, 2-5 0.563/0.759.
    These defaults (block 2, margin 1, ratio 1): 0.717/0.069, 1.000/0.750, 0.736/0.232; room 0-1
    0.608/0.832, 2-5 0.564/0.758. Block 4: 0.711/0.064, 0.750/0.750, 0.664/0.235; room 2-5 0.562/0.760.
    Margin 0 with ratio 0.5 (block 4) thins the door (0.19 -> 0.11 m) and gives 0.711/0.118, 0.900/0.900,
    0.699/0.319, but loses on the held-out room (2-5 0.555/0.729) and carves a quarter of a box's faces
    under 1 cm of pose error in the tests: it stays an option.

    Keyframes (votes per map cell, 2026-12-03; same protocol): every frame kept (exact replay) as above;
    the defaults (0.15 m, 10 deg, nearest keyframe; 80 / 65 keyframes of 296 / 300 frames): 0.723/0.065,
    1.000/0.750, 0.742/0.231. Simulated on the recorded depths with the first keyframe in reach instead
    of the nearest: 0.15 m / 10 deg 0.711/0.065, 1.000/0.750, 0.734/0.229; 0.3 m / 20 deg (38 / 33
    keyframes) 0.711/0.035, 1.000/0.750, 0.738/0.210; 0.5 m / 30 deg (26 / 20) 0.713/0.035, 1.000/0.750,
    0.753/0.212. Without any back-fill (a cell counts only the frames after it entered the map)
    0.723/0.038, 0.750/0.750, 0.647/0.214: scene0113_00's merged chair part is seen through by the
    frames before it appears.
    """

    carve: bool = True
    block: int = 2
    margin: int = 1
    surface_tol: float = 0.04
    cell_factor: int = 2
    free_ratio: float = 1.0
    keyframe_distance: float = 0.15
    keyframe_angle: float = 10.0
    backfill_every: int = 10

    def __post_init__(self) -> None:
        if self.block < 1 or self.margin < 0 or self.cell_factor < 1:
            raise ValueError(f"FreeSpaceConfig: block must be >= 1 pixel and margin >= 0 tiles, got {self}")
        if not self.free_ratio > 0:
            raise ValueError(f"FreeSpaceConfig.free_ratio must be > 0, got {self.free_ratio}")
        if not self.surface_tol > 0:
            raise ValueError(f"FreeSpaceConfig.surface_tol must be > 0 metres, got {self.surface_tol}")
        if self.keyframe_distance < 0 or self.keyframe_angle < 0 or self.backfill_every < 1:
            raise ValueError(f"FreeSpaceConfig: keyframe_distance and keyframe_angle must be >= 0 and "
                             f"backfill_every >= 1 frame, got {self}")


class DepthRecords:
    """Per frame: index, 3 x 3 intrinsics of the tile grid, camera-to-world pose and coarse depth
    (``coarse_depth``, float16 metres, concatenated with offsets)."""

    def __init__(self, config: FreeSpaceConfig = FreeSpaceConfig()):
        self.config = config
        self.frame = GrowableArray(np.int64)
        self.K = GrowableArray(np.float64, 9)
        self.pose = GrowableArray(np.float64, 16)
        self.shape = GrowableArray(np.int64, 2)
        self.offsets = GrowableArray(np.int64)
        self.offsets.extend([0])
        self.depth = GrowableArray(np.float16)

    def __len__(self) -> int:
        return self.frame.size

    def append(self, frame_index: int, depth: np.ndarray, K: np.ndarray, pose: np.ndarray,
               depth_range: tuple[float, float]) -> None:
        """Record one frame (depth H x W metres, ``K`` its intrinsics, ``pose`` camera-to-world)."""
        cfg = self.config
        tiles = coarse_depth(depth, cfg.block, cfg.margin, depth_range)
        self.append_tiles(frame_index, tiles, coarse_intrinsics(K, cfg.block), pose)

    def append_tiles(self, frame_index: int, tiles: np.ndarray, K_tiles: np.ndarray, pose: np.ndarray) -> None:
        """Record one frame's coarse depth (``coarse_depth``) with its tile grid's intrinsics."""
        self.frame.extend([frame_index])
        self.K.extend(np.asarray(K_tiles, np.float64).reshape(1, 9))
        self.pose.extend(np.asarray(pose, np.float64).reshape(1, 16))
        self.shape.extend(np.array([tiles.shape]))
        self.offsets.extend([self.offsets.view[-1] + tiles.size])
        self.depth.extend(tiles.reshape(-1))

    def tiles(self, row: int) -> np.ndarray:
        start, stop = self.offsets.view[row], self.offsets.view[row + 1]
        return self.depth.view[start:stop].reshape(self.shape.view[row])

    def nbytes(self) -> int:
        parts = (self.frame, self.K, self.pose, self.shape, self.offsets, self.depth)
        return sum(p.nbytes() for p in parts)


def free_space_counts(records: DepthRecords, keys: np.ndarray, voxel_size: float,
                      depth_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(free, surface): int32 per voxel of ``keys``, the recorded frames that classify the centre of its
    cell (``cell_factor`` voxels per side) as FREE and as SURFACE against their coarse depth. Each frame
    classifies only the cells in chunks its frustum reaches."""
    keys = np.asarray(keys, np.int64)
    cfg = records.config
    if keys.size == 0 or len(records) == 0:
        return np.zeros(keys.size, np.int32), np.zeros(keys.size, np.int32)
    cells, _, cell_of_key, _ = group_int64(pack_keys(np.floor_divide(unpack_keys(keys), cfg.cell_factor)))
    chunks = _Chunks(voxel_centers(cells, voxel_size * cfg.cell_factor), CHUNK_METRES)
    visibility = VisibilityConfig(surface_tol=cfg.surface_tol, depth_range=depth_range)
    cell_free = np.zeros(cells.size, np.int32)
    cell_surface = np.zeros(cells.size, np.int32)
    for row in range(len(records)):
        tiles = records.tiles(row)
        K, pose = records.K.view[row].reshape(3, 3), records.pose.view[row].reshape(4, 4)
        inside = chunks.in_view(K, pose, tiles.shape, depth_range)
        if inside.size == 0:
            continue
        classes = classify_points(chunks.points[inside], tiles, K, pose, visibility).classes
        cell_free[inside] += classes == FREE
        cell_surface[inside] += classes == SURFACE
    free, surface = np.empty_like(cell_free), np.empty_like(cell_surface)
    free[chunks.order], surface[chunks.order] = cell_free, cell_surface  # back to the cells' order
    return free[cell_of_key.reshape(-1)], surface[cell_of_key.reshape(-1)]


class _Chunks:
    """Points grouped into cubic chunks (``size`` metres), so a frame visits only the chunks its
    frustum reaches. ``points`` are reordered chunk by chunk (``order``: original index of each)."""

    def __init__(self, points: np.ndarray, size: float):
        cells = np.floor(points / size).astype(np.int64)
        codes = pack_keys(cells - cells.min(axis=0))
        distinct, _, inverse, counts = group_int64(codes)
        self.order = stable_argsort(inverse)
        self.points = points[self.order]
        self.starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
        self.counts = counts.astype(np.int64)
        self.centres = (unpack_keys(distinct) + cells.min(axis=0) + 0.5) * size
        self.radius = 0.5 * np.sqrt(3.0) * size

    def in_view(self, K: np.ndarray, pose: np.ndarray, shape: tuple[int, int],
                depth_range: tuple[float, float]) -> np.ndarray:
        """Indices (into ``points``) of the points of the chunks whose bounding sphere meets the view
        frustum of a camera (``K`` of an image of ``shape``, ``pose`` camera-to-world)."""
        chunks = np.flatnonzero(spheres_in_view(self.centres, self.radius, K, pose, shape, depth_range))
        if chunks.size == 0:
            return np.zeros(0, np.int64)
        lengths = self.counts[chunks]
        shift = np.repeat(self.starts[chunks] - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        return np.arange(int(lengths.sum()), dtype=np.int64) + shift


def spheres_in_view(centres: np.ndarray, radius: float, K: np.ndarray, pose: np.ndarray, shape: tuple[int, int],
                    depth_range: tuple[float, float]) -> np.ndarray:
    """Bool per sphere (N x 3 world ``centres``, ``radius`` metres): it meets the view frustum of a camera
    (``K`` of an image of ``shape``, ``pose`` camera-to-world) within ``depth_range``."""
    world_to_camera = np.linalg.inv(pose)
    c = transform_columns(centres[:, 0], centres[:, 1], centres[:, 2], world_to_camera, np.float64)
    height, width = shape
    r = radius
    near, far = depth_range
    meets = (c[:, 2] > near - r) & (c[:, 2] < far + r)
    for axis, low, high in ((0, -0.5, width - 0.5), (1, -0.5, height - 0.5)):
        f, centre = K[axis, axis], K[axis, 2]
        for edge, sign in ((low, 1.0), (high, -1.0)):
            slope = (edge - centre) / f  # the side plane holds the rays with x / z = slope
            distance = sign * (c[:, axis] - slope * c[:, 2]) / np.hypot(1.0, slope)
            meets &= distance > -r
    return meets


def carved(records: DepthRecords, keys: np.ndarray, voxel_size: float, depth_range: tuple[float, float]) -> np.ndarray:
    """Bool per voxel of ``keys`` (distinct): more frames saw through it than saw it as surface
    (``free > free_ratio * surface``, ``free_space_counts``)."""
    free, surface = free_space_counts(records, keys, voxel_size, depth_range)
    return free > records.config.free_ratio * surface


class FreeSpaceVotes:
    """Free-space evidence bounded by the map, not by the frames: per cell of the map's voxels
    (``cell_factor`` voxels per side), the frames that saw through it (FREE) and saw it as surface,
    counted as frames arrive. Each frame classifies the centres of the cells in its frustum against
    its coarse depth (``coarse_depth``), exactly as ``free_space_counts`` replays it at the end.

    A cell that enters the map after a frame was taken still needs that frame's vote (a surface seen
    only late, in a few frames, is seen through by the earlier ones). So the votes keep keyframes: a
    frame whose camera lies within ``keyframe_distance`` and ``keyframe_angle`` of a keyframe's is
    represented by it (its weight grows by one), otherwise its coarse depth becomes a keyframe. Every
    ``backfill_every`` frames the cells new since the last back-fill are classified against each
    keyframe, weighted by the frames it stood for; from then on they take live votes. Every frame thus
    counts once for every cell, through itself or through its keyframe. Memory: the cells (the map)
    and the keyframes, which stop growing once the camera revisits the poses it has taken
    (re-observing a scene adds none).

    Units: metres, poses camera-to-world (OpenCV axes); keys of ``lift3d.voxels.pack_keys`` at
    ``voxel_size``."""

    def __init__(self, config: FreeSpaceConfig, voxel_size: float, depth_range: tuple[float, float]):
        self.config = config
        self.depth_range = depth_range
        self.cell_size = voxel_size * config.cell_factor
        self.visibility = VisibilityConfig(surface_tol=config.surface_tol, depth_range=depth_range)
        self.cells = VoxelIndex()
        self.centres = GrowableArray(np.float64, 3)
        self.chunk_of = GrowableArray(np.int64)  # per cell its chunk (frustum culling)
        self.chunks = VoxelIndex()
        self.chunk_centres = GrowableArray(np.float64, 3)
        self.free = GrowableArray(np.int32)
        self.surface = GrowableArray(np.int32)
        self.live = 0  # cells [0, live) hold every past frame's vote; the rest wait for the back-fill
        self.keyframes = DepthRecords(config)
        self.weight = GrowableArray(np.int64)  # per keyframe: the frames it stands for
        self.frames = 0

    def __len__(self) -> int:
        """Frames observed."""
        return self.frames

    def observe(self, frame_index: int, depth: np.ndarray, K: np.ndarray, pose: np.ndarray) -> None:
        """One frame (depth H x W metres, ``K`` its intrinsics, ``pose`` camera-to-world) votes on the
        map's cells in its view, after the cells due for back-fill got the earlier frames' votes."""
        if self.frames % self.config.backfill_every == 0:
            self.backfill()
        cfg = self.config
        tiles = coarse_depth(depth, cfg.block, cfg.margin, self.depth_range)
        K_tiles, pose = coarse_intrinsics(K, cfg.block), np.asarray(pose, np.float64)
        self._vote(np.arange(self.live, dtype=np.int64), tiles, K_tiles, pose, 1)
        self._represent(frame_index, tiles, K_tiles, pose)
        self.frames += 1

    def add_voxels(self, keys: np.ndarray) -> None:
        """Voxels (int64 keys) new to the map: their cells, when new, wait for the next back-fill."""
        if keys.size == 0:
            return
        before = len(self.cells)
        self.cells.insert(pack_keys(np.floor_divide(unpack_keys(keys), self.config.cell_factor)))
        if len(self.cells) == before:
            return
        cells = unpack_keys(self.cells.keys[before:])  # the new cells, in row order
        centres = (cells + 0.5) * self.cell_size
        chunk_cells = np.floor(centres / CHUNK_METRES).astype(np.int64)
        chunk_before = len(self.chunks)
        chunk_rows = self.chunks.insert(pack_keys(chunk_cells))
        if len(self.chunks) > chunk_before:
            new_chunks = np.zeros((len(self.chunks) - chunk_before, 3))
            new_chunks[chunk_rows[chunk_rows >= chunk_before] - chunk_before] = \
                (chunk_cells[chunk_rows >= chunk_before] + 0.5) * CHUNK_METRES
            self.chunk_centres.extend(new_chunks)
        self.centres.extend(centres)
        self.chunk_of.extend(chunk_rows)
        self.free.extend(np.zeros(centres.shape[0], np.int32))
        self.surface.extend(np.zeros(centres.shape[0], np.int32))

    def backfill(self) -> None:
        """Give the cells new since the last back-fill every earlier frame's vote, through the keyframes."""
        rows, free, surface = self._pending_votes()
        self.free.view[rows] += free
        self.surface.view[rows] += surface
        self.live = len(self.cells)

    def counts(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(free, surface) int per voxel of ``keys``: the frames that saw its cell through and as
        surface; 0 for voxels the map never held. Cells still waiting for their back-fill count it
        here without committing it, so reading the counts (a global pass every N frames) leaves the
        votes to come as they would have been."""
        keys = np.asarray(keys, np.int64)
        free, surface = np.zeros(keys.size, np.int32), np.zeros(keys.size, np.int32)
        if keys.size == 0 or len(self.cells) == 0:
            return free, surface
        cell_free, cell_surface = self.free.view.copy(), self.surface.view.copy()
        rows, pending_free, pending_surface = self._pending_votes()
        cell_free[rows] += pending_free
        cell_surface[rows] += pending_surface
        rows = self.cells.lookup(pack_keys(np.floor_divide(unpack_keys(keys), self.config.cell_factor)))
        known = rows >= 0
        free[known], surface[known] = cell_free[rows[known]], cell_surface[rows[known]]
        return free, surface

    def _pending_votes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, free, surface) of the cells waiting for the back-fill: the keyframes' votes, each
        weighted by the frames it stands for."""
        rows = np.arange(self.live, len(self.cells), dtype=np.int64)
        free, surface = np.zeros(rows.size, np.int32), np.zeros(rows.size, np.int32)
        if rows.size:
            for k in range(len(self.keyframes)):
                K, pose = self.keyframes.K.view[k].reshape(3, 3), self.keyframes.pose.view[k].reshape(4, 4)
                self._vote(rows - self.live, self.keyframes.tiles(k), K, pose, int(self.weight.view[k]),
                           (free, surface), self.live)
        return rows, free, surface

    def carved(self, keys: np.ndarray) -> np.ndarray:
        """Bool per voxel of ``keys``: more frames saw through its cell than saw it (``free_ratio``)."""
        free, surface = self.counts(keys)
        return free > self.config.free_ratio * surface

    def nbytes(self) -> int:
        parts = (self.centres, self.chunk_of, self.chunk_centres, self.free, self.surface, self.weight)
        index = sum(i._slot_keys.nbytes + i._slot_rows.nbytes + i._keys.nbytes for i in (self.cells, self.chunks))
        return sum(p.nbytes() for p in parts) + index + self.keyframes.nbytes()

    def _vote(self, rows: np.ndarray, tiles: np.ndarray, K: np.ndarray, pose: np.ndarray, weight: int,
              into: tuple[np.ndarray, np.ndarray] | None = None, offset: int = 0) -> None:
        """Add ``weight`` x the classes of the cells ``offset + rows`` in the view of one coarse depth to
        (free, surface) at ``rows`` of ``into`` (default: the cells' counts)."""
        if rows.size == 0 or weight == 0:
            return
        free, surface = into if into is not None else (self.free.view, self.surface.view)
        near_chunks = spheres_in_view(self.chunk_centres.view, 0.5 * np.sqrt(3.0) * CHUNK_METRES, K, pose,
                                      tiles.shape, self.depth_range)
        rows = rows[near_chunks[self.chunk_of.view[offset + rows]]]
        if rows.size == 0:
            return
        rows, is_free, is_surface = _free_and_surface(self.centres.view[offset:], rows, tiles, K, pose, self.visibility)
        free[rows[is_free]] += weight
        surface[rows[is_surface]] += weight

    def _represent(self, frame_index: int, tiles: np.ndarray, K: np.ndarray, pose: np.ndarray) -> None:
        """Count the frame for its nearest keyframe within the thresholds, or keep it as a keyframe."""
        cfg = self.config
        if len(self.keyframes):
            poses = self.keyframes.pose.view.reshape(-1, 4, 4)
            distance = np.linalg.norm(poses[:, :3, 3] - pose[:3, 3], axis=1)
            cosine = (np.einsum("kij,ij->k", poses[:, :3, :3], pose[:3, :3]) - 1.0) / 2.0
            angle = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
            near = (distance < cfg.keyframe_distance) & (angle < cfg.keyframe_angle)
            near &= np.all(self.keyframes.shape.view == tiles.shape, axis=1)
            if near.any():
                self.weight.view[np.flatnonzero(near)[np.argmin(distance[near])]] += 1
                return
        self.keyframes.append_tiles(frame_index, tiles, K, pose)
        self.weight.extend([1])


def _free_and_surface(centres: np.ndarray, rows: np.ndarray, tiles: np.ndarray, K: np.ndarray, pose: np.ndarray,
                      config: VisibilityConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows in view with depth, FREE bool, SURFACE bool): ``classify_points`` of ``centres[rows]``
    against the coarse depth ``tiles``, the same arithmetic without the classes nothing counts
    (out of view, no depth, occluded) and without re-checking the camera for every call."""
    points = centres[rows]
    camera = transform_columns(points[:, 0], points[:, 1], points[:, 2], np.linalg.inv(pose), np.float64)
    z = camera[:, 2]
    height, width = tiles.shape
    near, far = config.depth_range
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.floor(K[0, 0] * camera[:, 0] / z + K[0, 2] + 0.5)
        v = np.floor(K[1, 1] * camera[:, 1] / z + K[1, 2] + 0.5)
        seen = np.flatnonzero((z >= near) & (z <= far) & (u >= 0) & (u < width) & (v >= 0) & (v < height))
    z = z[seen]
    observed = tiles.reshape(-1)[v[seen].astype(np.int64) * width + u[seen].astype(np.int64)].astype(np.float64)
    has_depth = (observed >= near) & (observed <= far)
    tol = config.surface_tol * np.maximum(1.0, z / config.tol_ref_depth)
    free = has_depth & (z <= observed - tol)
    surface = has_depth & (np.abs(z - observed) < tol)
    return rows[seen], free, surface
