"""Lift a frame's MaskSet to `Segment3D`s: clean in 2D, back-project, voxelise, split, filter.

One pass over the frame's surviving pixels: every array operation covers all masks at once; only
the final packaging into Segment3D objects loops, once per segment.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scene.datasets import Frame
from segment2d.types import MaskSet

from .backproject import DEFAULT_DEPTH_RANGE, backproject_pixels, check_camera
from .clean import CleanConfig, clean_mask_pixels, clean_partition_pixels
from .split import grouped_cell_components
from .types import Segment3D
from .voxels import PointCells, point_cells, stable_argsort, unpack_keys


DEFAULT_VOXEL_SIZE = 0.02  # metres: the pipeline's voxel size unless configured otherwise


@dataclass(frozen=True)
class KnownSurface:
    """A frame's pixels already lifted and voxelised (e.g. its observed surface, ``tracking.surface``):
    ``pixels`` sorted flat indices, ``points`` their N x 3 float32 world points (``backproject_pixels``),
    ``cells`` their voxels (``point_cells``) of ``voxel_size`` metres."""

    pixels: np.ndarray
    points: np.ndarray
    cells: PointCells
    voxel_size: float


@dataclass(frozen=True)
class LiftConfig:
    """``voxel_size`` metres; ``stride``: lift every stride-th pixel row and column; ``depth_range``
    (near, far) metres; ``keep_points``: store one point (and colour) per voxel in each segment.

    In the pipeline these three are the one voxel grid and pixel sampling of everything downstream: the
    tracker samples each frame's observed surface with them (``tracking.OnlineTracker(config, lift)``) and
    the map is built on the same voxels (``scene.config.MapperConfig.voxel_size`` reads this field)."""

    voxel_size: float = DEFAULT_VOXEL_SIZE
    stride: int = 2
    depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE
    keep_points: bool = True
    clean: CleanConfig = field(default_factory=CleanConfig)

    def __post_init__(self) -> None:
        if not self.voxel_size > 0:
            raise ValueError(f"LiftConfig.voxel_size must be > 0 metres, got {self.voxel_size}")
        if self.stride < 1:
            raise ValueError(f"LiftConfig.stride must be >= 1 pixel, got {self.stride}")
        if len(self.depth_range) != 2 or not 0 <= self.depth_range[0] < self.depth_range[1]:
            raise ValueError(f"LiftConfig.depth_range must be (near, far) metres with 0 <= near < far, "
                             f"got {self.depth_range}")


def lift_frame(frame: Frame, masks: MaskSet, config: LiftConfig = LiftConfig()) -> list[Segment3D]:
    """Segments of ``masks`` (computed on ``frame``) in world coordinates; see ``lift_masks``."""
    return lift_masks(frame.depth, frame.K, frame.pose, masks, frame.color, frame.index, config)


def lift_masks(
    depth: np.ndarray,
    K: np.ndarray,
    pose: np.ndarray,
    masks: MaskSet,
    color: np.ndarray | None = None,
    frame_index: int = 0,
    config: LiftConfig = LiftConfig(),
) -> list[Segment3D]:
    """Clean, lift and voxelise every mask; split masks into spatially separate parts; drop small parts.

    ``depth`` H x W metres, ``K`` 3 x 3, ``pose`` camera-to-world, ``color`` optional H x W x 3 uint8.
    Returns the segments ordered by mask index, then part (largest first).
    """
    check_camera(depth, K, pose, f"lift_masks (frame {frame_index})")
    if not isinstance(masks, MaskSet):
        raise TypeError(f"lift_masks: masks must be a MaskSet, got {type(masks).__name__}")
    if masks.image_size != depth.shape:
        raise ValueError(f"lift_masks (frame {frame_index}): masks are {masks.image_size}, depth is {depth.shape}")
    if color is not None and color.shape[:2] != depth.shape:
        raise ValueError(f"lift_masks (frame {frame_index}): colour is {color.shape}, depth is {depth.shape}")
    groups = masks.extra.get(config.clean.overlap_groups) if config.clean.overlap_groups else None
    mask_ids, pixels = clean_mask_pixels(
        depth, masks.masks, masks.boxes, config.clean, config.stride, config.depth_range, groups
    )
    return _segments(depth, K, pose, mask_ids, pixels, masks.scores, masks.boxes, color, frame_index, config)


def lift_partition(frame: Frame, owner: np.ndarray, scores: np.ndarray, boxes: np.ndarray,
                   config: LiftConfig = LiftConfig(), known: KnownSurface | None = None) -> list[Segment3D]:
    """``lift_frame`` for masks that form a partition, given as their H x W int owner image (mask index
    per pixel, negative where none) with per-mask ``scores`` and XYXY ``boxes``: no N x H x W stack.
    ``known``: pixels already lifted and voxelised at ``config.voxel_size``, e.g. the frame's surface;
    lifted pixels take their points and voxels from it when it holds them all."""
    depth, color = frame.depth, frame.color
    check_camera(depth, frame.K, frame.pose, f"lift_partition (frame {frame.index})")
    if color is not None and color.shape[:2] != depth.shape:
        raise ValueError(f"lift_partition (frame {frame.index}): colour is {color.shape}, depth is {depth.shape}")
    if known is not None and known.voxel_size != config.voxel_size:
        raise ValueError(f"lift_partition (frame {frame.index}): the known surface has {known.voxel_size} m voxels, "
                         f"the lift {config.voxel_size} m")
    mask_ids, pixels = clean_partition_pixels(depth, owner, config.clean, config.stride, config.depth_range)
    return _segments(depth, frame.K, frame.pose, mask_ids, pixels, scores, boxes, color, frame.index, config, known)


def _segments(depth, K, pose, mask_ids, pixels, scores, boxes, color, frame_index, config, known=None):
    """Lift, voxelise, split and package the cleaned (mask, pixel) pairs."""
    if pixels.size == 0:
        return []
    lifted = _lift_pairs(depth, K, pose, mask_ids, pixels, config.voxel_size, known)
    component = _components(lifted, config)
    return _package(lifted, component, scores, boxes, color, frame_index, config)


@dataclass
class _Lifted:
    """A frame's surviving (mask, pixel) pairs, lifted once per distinct pixel and grouped into distinct
    (mask, voxel) rows sorted by voxel key, then mask."""

    pixels: np.ndarray  # U int64 distinct flat pixel indices
    points: np.ndarray  # U x 3 float32 world points of those pixels
    pair_pixel: np.ndarray  # P int64 row in ``pixels`` of each pair
    pair_row: np.ndarray  # P int64 voxel row of each pair
    mask: np.ndarray  # V int64 mask of each voxel row
    keys: np.ndarray  # V int64 voxel keys
    counts: np.ndarray  # V int64 pairs (points) per voxel row
    representative: np.ndarray  # V int64 one pair of each voxel row


def _lift_pairs(depth, K, pose, mask_ids: np.ndarray, pixels: np.ndarray, voxel_size: float,
                known: KnownSurface | None = None) -> _Lifted:
    """Back-project and voxelise each distinct pixel once (or take it from ``known``), then group the
    pairs by (mask, voxel)."""
    pixel_row = np.full(depth.size, -1, np.int64)
    pixel_row[pixels] = 0
    unique_pixels = np.flatnonzero(pixel_row == 0)
    pixel_row[unique_pixels] = np.arange(unique_pixels.size)
    pair_pixel = pixel_row[pixels]
    rows = None if known is None else _known_rows(known.pixels, unique_pixels, depth.size)
    if rows is None:
        points = backproject_pixels(depth, K, pose, unique_pixels)
        cells = point_cells(points, voxel_size)
        cell_of_pixel = cells.of_point
    else:
        points, cells = np.take(known.points, rows, axis=0), known.cells
        cell_of_pixel = cells.of_point[rows]
    mask, cell_index, representative, pair_row, counts = _group_pairs(mask_ids, cell_of_pixel[pair_pixel])
    return _Lifted(unique_pixels, points, pair_pixel, pair_row, mask, cells.keys[cell_index], counts, representative)


def _known_rows(known_pixels: np.ndarray, pixels: np.ndarray, size: int) -> np.ndarray | None:
    """The rows of ``pixels`` in ``known_pixels``, or None when ``known_pixels`` lacks one of them."""
    row = np.full(size, -1, np.int32)
    row[known_pixels] = np.arange(known_pixels.size, dtype=np.int32)
    at = row[pixels]
    if at.size and at.min() < 0:
        return None
    return at


def _group_pairs(mask_ids: np.ndarray, pair_cell: np.ndarray):
    """Distinct (mask, cell) rows of pairs given sorted by mask: one stable sort by cell (a single radix
    pass below 65536 cells) keeps masks sorted within each cell. Rows come out sorted by cell, then mask.
    Returns (mask, cell, representative pair, row of each pair, pairs per row)."""
    order = stable_argsort(pair_cell)
    cells, masks = pair_cell[order], mask_ids[order]
    is_start = np.empty(order.size, bool)
    is_start[:1] = True
    is_start[1:] = (cells[1:] != cells[:-1]) | (masks[1:] != masks[:-1])
    starts = np.flatnonzero(is_start)
    counts = np.diff(np.append(starts, order.size))
    pair_row = np.empty(order.size, np.int64)
    pair_row[order] = np.repeat(np.arange(starts.size), counts)
    return masks[starts].astype(np.int64), cells[starts], order[starts], pair_row, counts


def _components(lifted: _Lifted, config: LiftConfig) -> np.ndarray:
    """Dense segment id per voxel row: the mask itself, or its spatially connected parts."""
    if not config.clean.split:
        return np.unique(lifted.mask, return_inverse=True)[1].reshape(-1)
    ratio = max(1, int(round(config.clean.split_cell / config.voxel_size)))
    return grouped_cell_components(lifted.mask, np.floor_divide(unpack_keys(lifted.keys), ratio))


def _package(lifted: _Lifted, component, scores, boxes, color, frame_index, config) -> list[Segment3D]:
    """Per-segment statistics for all segments at once, then one Segment3D per kept segment."""
    n_seg = int(component.max()) + 1
    seg_points = np.bincount(component, weights=lifted.counts, minlength=n_seg).astype(np.int64)
    seg_mask = np.zeros(n_seg, np.int64)
    seg_mask[component] = lifted.mask
    kept = np.flatnonzero(seg_points >= max(config.clean.min_points, 1))
    kept = kept[np.lexsort((-seg_points[kept], seg_mask[kept]))]
    if kept.size == 0:
        return []
    centroid, lo, hi = _point_stats(component[lifted.pair_row], lifted.points, lifted.pair_pixel, seg_points)
    order = stable_argsort(component)  # keeps key order within a segment
    starts = np.searchsorted(component[order], np.arange(n_seg + 1))
    keys = np.take(lifted.keys, order)
    counts = lifted.counts[order].astype(np.int32)
    sample_pixel = lifted.pair_pixel[lifted.representative[order]]
    sample_points = np.take(lifted.points, sample_pixel, axis=0) if config.keep_points else None
    sample_colors = None
    if config.keep_points and color is not None:
        sample_colors = np.take(color.reshape(-1, 3), lifted.pixels[sample_pixel], axis=0)
    segments, part = [], 0
    for rank, s in enumerate(kept):
        part = part + 1 if rank and seg_mask[kept[rank - 1]] == seg_mask[s] else 0
        rows = slice(starts[s], starts[s + 1])
        m = int(seg_mask[s])
        segments.append(
            Segment3D(
                frame_index=int(frame_index),
                mask_index=m,
                part=part,
                voxel_keys=keys[rows],
                voxel_counts=counts[rows],
                num_points=int(seg_points[s]),
                centroid=centroid[s],
                aabb_min=lo[s],
                aabb_max=hi[s],
                score=float(scores[m]),
                box=boxes[m].copy(),
                voxel_size=float(config.voxel_size),
                points=None if sample_points is None else sample_points[rows],
                colors=None if sample_colors is None else sample_colors[rows],
            )
        )
    return segments


def _point_stats(point_seg: np.ndarray, points: np.ndarray, point_row: np.ndarray, seg_points: np.ndarray):
    """Per segment: centroid, AABB min and max (float64, metres) of the points ``points[point_row]``."""
    n_seg = seg_points.size
    order = stable_argsort(point_seg)
    starts = np.minimum(np.searchsorted(point_seg[order], np.arange(n_seg)), max(point_seg.size - 1, 0))
    rows = point_row[order]
    centroid, lo, hi = np.empty((n_seg, 3)), np.empty((n_seg, 3)), np.empty((n_seg, 3))
    for axis in range(3):
        column = np.take(points[:, axis], rows).astype(np.float64)
        centroid[:, axis] = np.add.reduceat(column, starts) / np.maximum(seg_points, 1)
        lo[:, axis] = np.minimum.reduceat(column, starts)
        hi[:, axis] = np.maximum.reduceat(column, starts)
    return centroid, lo, hi  # every segment has points: reduceat's empty-slice rule never applies


def pack_segments(segments: list[Segment3D]) -> tuple:
    """One frame's segments as a few flat arrays (their per-voxel arrays concatenated, their scalars
    stacked): a process boundary then pickles ~10 arrays instead of ~7 per segment (``unpack_segments``)."""
    if not segments:
        return ()
    ints = np.array([(s.frame_index, s.mask_index, s.part, s.num_points) for s in segments], np.int64)
    stats = np.stack([np.concatenate([s.centroid, s.aabb_min, s.aabb_max]) for s in segments])
    offsets = np.cumsum([0] + [s.num_voxels for s in segments])
    points = None if segments[0].points is None else np.concatenate([s.points for s in segments])
    colors = None if segments[0].colors is None else np.concatenate([s.colors for s in segments])
    return (ints, stats, np.array([s.score for s in segments]), np.stack([s.box for s in segments]),
            float(segments[0].voxel_size), offsets, np.concatenate([s.voxel_keys for s in segments]),
            np.concatenate([s.voxel_counts for s in segments]), points, colors)


def unpack_segments(packed: tuple) -> list[Segment3D]:
    """The segments ``pack_segments`` packed, equal field by field (arrays as views into the flat ones)."""
    if not packed:
        return []
    ints, stats, scores, boxes, voxel_size, offsets, keys, counts, points, colors = packed
    segments = []
    for s, (frame, mask, part, num_points) in enumerate(ints.tolist()):
        rows = slice(offsets[s], offsets[s + 1])
        segments.append(Segment3D(
            frame_index=frame, mask_index=mask, part=part, voxel_keys=keys[rows], voxel_counts=counts[rows],
            num_points=num_points, centroid=stats[s, 0:3], aabb_min=stats[s, 3:6], aabb_max=stats[s, 6:9],
            score=float(scores[s]), box=boxes[s], voxel_size=voxel_size,
            points=None if points is None else points[rows], colors=None if colors is None else colors[rows]))
    return segments
