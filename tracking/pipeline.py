"""Glue for one frame: make a MaskSet exclusive, lift it, step the tracker.

The tracker wants each frame's segments to be a partition (a pixel in one segment at most): MaskClustering's
containment test and the per-voxel label counts assume it. Overlapping masks (a hierarchy, SAM's nested
masks) are made exclusive here, smaller masks winning, before lifting.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lift3d.clean import CleanConfig
from lift3d.lift import LiftConfig, lift_frame
from scene.datasets import Frame
from segment2d.types import MaskSet

from .online import OnlineTracker, StepResult


@dataclass(frozen=True)
class PartitionConfig:
    """``levels``: keep only masks whose ``extra['level']`` is listed (None: all), later levels in the
    tuple winning contested pixels over earlier ones (then smaller masks over larger); ``min_kept``: a
    mask keeping less than this share of its area after the winners took their pixels is dropped.

    ``colour_splits_objects``: when False, a mask of ``colour_level`` lying mostly (``parent_share``)
    inside one non-structure mask of ``geometry_level`` is dropped: colour edges then cut planes (a door
    in its wall, a window, a rug) but not objects, whose texture and shading would split them (a
    patterned sofa, a chair's painted legs). Needs the generator's ``level`` and ``is_structure``."""

    levels: tuple[int, ...] | None = None
    min_kept: float = 0.5
    colour_splits_objects: bool = True
    geometry_level: int = 0
    colour_level: int = 1
    parent_share: float = 0.5


def exclusive_masks(masks: MaskSet, config: PartitionConfig = PartitionConfig()) -> MaskSet:
    """A MaskSet whose masks do not overlap: every pixel goes to the winning mask covering it (the
    preferred level, then the smallest)."""
    if not config.colour_splits_objects:
        masks = masks.subset(~_colour_inside_objects(masks, config))
    rank = np.zeros(len(masks), np.int64)
    if config.levels is not None and "level" in masks.extra:
        level = np.asarray(masks.extra["level"])
        keep = np.isin(level, config.levels)
        rank = np.argmax(level[keep][:, None] == np.asarray(config.levels)[None, :], axis=1)
        masks = masks.subset(keep)
    if len(masks) == 0:
        return masks
    crops = _crops(masks.boxes, masks.image_size).tolist()
    # Areas and boxes come from the crops: the whole N x H x W stack is many times larger than the crops,
    # and reading it (masks.areas, boxes_from_masks) took most of this function's time.
    areas = np.array([np.count_nonzero(masks.masks[i, y0:y1, x0:x1]) for i, (x0, y0, x1, y1) in enumerate(crops)])
    owner = np.full(masks.image_size, -1, np.int32)
    for i in np.lexsort((-areas, rank)).tolist():  # painted in order: the last painter wins
        x0, y0, x1, y1 = crops[i]
        np.copyto(owner[y0:y1, x0:x1], np.int32(i), where=masks.masks[i, y0:y1, x0:x1])
    kept_area = np.bincount(owner.ravel() + 1, minlength=len(masks) + 1)[1:]
    keep = np.flatnonzero(kept_area >= config.min_kept * np.maximum(areas, 1))
    exclusive = np.zeros((keep.size,) + masks.image_size, bool)
    boxes = np.zeros((keep.size, 4), np.float32)
    for row, i in enumerate(keep.tolist()):
        x0, y0, x1, y1 = crops[i]
        inside = owner[y0:y1, x0:x1] == i
        exclusive[row, y0:y1, x0:x1] = inside
        boxes[row] = _box_in_crop(inside, x0, y0)
    extra = {k: np.asarray(v)[keep] for k, v in masks.extra.items()}
    return MaskSet(exclusive, masks.scores[keep], boxes, extra)


def _box_in_crop(inside: np.ndarray, x0: int, y0: int) -> tuple[int, int, int, int]:
    """XYXY box (exclusive max, image pixels) of a crop's True pixels; zeros when empty, as
    ``boxes_from_masks`` gives for the whole mask, which is empty outside its crop."""
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    return (x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1)


def _colour_inside_objects(masks: MaskSet, config: PartitionConfig) -> np.ndarray:
    """Per mask: a ``colour_level`` mask whose pixels lie mostly inside one non-structure
    ``geometry_level`` mask (geometry levels are partitions, so "inside" is one owner image)."""
    inside = np.zeros(len(masks), bool)
    if "level" not in masks.extra or "is_structure" not in masks.extra:
        return inside
    level = np.asarray(masks.extra["level"])
    structure = np.asarray(masks.extra["is_structure"], bool)
    parents = np.flatnonzero((level == config.geometry_level) & ~structure)
    children = np.flatnonzero(level == config.colour_level)
    if parents.size == 0 or children.size == 0:
        return inside
    owner = np.full(masks.image_size, -1, np.int64)
    crops = _crops(masks.boxes, masks.image_size)
    for i in parents:
        x0, y0, x1, y1 = crops[i]
        owner[y0:y1, x0:x1][masks.masks[i, y0:y1, x0:x1]] = i
    for i in children:
        x0, y0, x1, y1 = crops[i]
        under = owner[y0:y1, x0:x1][masks.masks[i, y0:y1, x0:x1]]
        if under.size:
            counts = np.bincount(under + 1)
            inside[i] = counts[1:].max(initial=0) >= config.parent_share * under.size
    return inside


def _crops(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Integer (x0, y0, x1, y1) crops holding the XYXY boxes (MaskSet's contract: the box holds the mask)."""
    height, width = image_size
    out = np.empty((len(boxes), 4), np.int64)
    out[:, [0, 1]] = np.floor(boxes[:, [0, 1]])
    out[:, [2, 3]] = np.ceil(boxes[:, [2, 3]])
    return np.clip(out, 0, [width, height, width, height])


@dataclass(frozen=True)
class FramePipelineConfig:
    """How a frame's masks reach the tracker: partition, then lifting (overlaps were removed already)."""

    partition: PartitionConfig = field(default_factory=PartitionConfig)
    lift: LiftConfig = field(default_factory=lambda: LiftConfig(clean=CleanConfig(drop_overlaps=False)))


def track_frame(tracker: OnlineTracker, frame: Frame, masks: MaskSet,
                config: FramePipelineConfig = FramePipelineConfig()) -> StepResult:
    """Partition ``masks`` (computed on ``frame``), lift them and associate them into ``tracker``'s map.

    The lift's pixel stride and voxel size must equal the tracker's surface stride and voxel size: the
    visibility test compares a segment's voxels with the frame's surface voxels sampled the same way."""
    if config.lift.stride != tracker.config.surface_stride or config.lift.voxel_size != tracker.config.voxel_size:
        raise ValueError(f"track_frame: lift stride / voxel size ({config.lift.stride}, {config.lift.voxel_size} m) must equal "
                         f"the tracker's surface_stride / voxel_size ({tracker.config.surface_stride}, {tracker.config.voxel_size} m)")
    exclusive = exclusive_masks(masks, config.partition)
    segments = lift_frame(frame, exclusive, config.lift)
    structure = exclusive.extra.get("is_structure")
    flags = None if structure is None else np.asarray(structure, bool)[[s.mask_index for s in segments]]
    return tracker.step(frame, segments, flags)
