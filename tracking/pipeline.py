"""The one per-frame path: make a frame's MaskSet exclusive, lift it, step the tracker (``track_frame``).

The tracker wants each frame's segments to be a partition (a pixel in one segment at most): MaskClustering's
containment test and the per-voxel label counts assume it. Overlapping masks (a hierarchy, SAM's nested
masks) are made exclusive here, smaller masks winning, before lifting.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import cv2
import numpy as np

from lift3d.lift import LiftConfig, lift_partition, pack_segments, unpack_segments
from lift3d.voxels import stable_argsort
from scene.datasets import Frame
from segment2d.types import MaskCrops, MaskSet, box_windows

from .mask_groups import coarse_together
from .online import OnlineTracker, StepResult
from .surface import known_surface


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
    selected, boxes, owner = exclusive_partition(masks, config)
    exclusive = np.zeros((selected.size,) + masks.image_size, bool)
    for row, (x0, y0, x1, y1) in enumerate(box_windows(boxes, masks.image_size).tolist()):
        exclusive[row, y0:y1, x0:x1] = owner[y0:y1, x0:x1] == row
    extra = {k: np.asarray(v)[selected] for k, v in masks.extra.items()}
    return MaskSet(exclusive, masks.scores[selected], boxes, extra)


def exclusive_partition(masks: MaskSet | MaskCrops, config: PartitionConfig = PartitionConfig()
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``exclusive_masks`` as an owner image, without the N x H x W stack: (selected: indices in ``masks``
    of the kept masks, their N x 4 float32 XYXY boxes after the partition, owner: H x W int32 row in
    ``selected`` of the mask holding each pixel, -1 where none does). ``masks`` may be ``MaskCrops``
    (the same masks as crops: the same result)."""
    index = np.arange(len(masks))
    if not config.colour_splits_objects:
        offered = ~_colour_inside_objects(masks, config)
        masks, index = masks.subset(offered), index[offered]
    rank = np.zeros(len(masks), np.int64)
    if config.levels is not None and "level" in masks.extra:
        level = np.asarray(masks.extra["level"])
        keep = np.isin(level, config.levels)
        rank = np.argmax(level[keep][:, None] == np.asarray(config.levels)[None, :], axis=1)
        masks, index = masks.subset(keep), index[keep]
    if len(masks) == 0:
        return index, np.zeros((0, 4), np.float32), np.full(masks.image_size, -1, np.int32)
    # Areas and boxes come from the crops: the whole N x H x W stack is many times larger than the crops,
    # and reading it (masks.areas, boxes_from_masks) took most of this function's time.
    placed = masks.placed_crops()
    areas = np.array([np.count_nonzero(region) for _, _, region in placed])
    # painted with mask index + 1 (0: none), in one byte while the masks allow it: the owner image's
    # runs compare, and its rows are looked up (a 256-entry table), several times faster than in int32
    paint = np.uint8 if len(masks) < 255 else np.int32
    painted = np.zeros(masks.image_size, paint)
    for i in np.lexsort((-areas, rank)).tolist():  # painted in order: the last painter wins
        x0, y0, region = placed[i]
        np.copyto(painted[y0:y0 + region.shape[0], x0:x0 + region.shape[1]], paint(i + 1), where=region)
    label, row, first, end = _runs(painted)
    label = label.astype(np.int64)
    kept_area = np.bincount(label, weights=end - first, minlength=len(masks) + 1)[1:]
    keep = np.flatnonzero(kept_area >= config.min_kept * np.maximum(areas, 1))
    row_of = np.full(len(masks) + 1, -1, np.int32)
    row_of[keep + 1] = np.arange(keep.size)
    boxes = _run_boxes(row_of[label], row, first, end, keep.size)
    return index[keep], boxes, _looked_up(row_of, painted)


def _looked_up(table: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``table[image]`` (int32), through OpenCV's lookup table for a uint8 image."""
    if image.dtype == np.uint8:
        return cv2.LUT(image, np.pad(table, (0, 256 - table.size)))
    return np.take(table, image)


def _runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The horizontal runs of equal values in an H x W label image, in raster order: (label, row,
    first column, end column (exclusive))."""
    height, width = labels.shape
    change = np.ones((height, width), bool)
    np.not_equal(labels[:, 1:], labels[:, :-1], out=change[:, 1:])
    starts = np.flatnonzero(change)
    row, first = np.divmod(starts, width)
    end = np.append(starts[1:], labels.size) - row * width  # every row starts a run, so runs end in their row
    return labels.reshape(-1)[starts], row, first, end


def _run_boxes(label: np.ndarray, row: np.ndarray, first: np.ndarray, end: np.ndarray, n: int) -> np.ndarray:
    """N x 4 float32 XYXY boxes (exclusive max) of labels 0..n-1 from their runs in raster order (negative
    labels ignored); zeros for a label without runs."""
    boxes = np.zeros((n, 4), np.float32)
    order = stable_argsort(label)  # keeps raster order within a label: its first run has the top row
    order = order[label[order] >= 0]
    if order.size == 0:
        return boxes
    ordered = label[order]
    is_start = np.empty(order.size, bool)
    is_start[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=is_start[1:])
    starts = np.flatnonzero(is_start)
    last = np.append(starts[1:], order.size) - 1
    present = ordered[starts]
    boxes[present, 0] = np.minimum.reduceat(first[order], starts)
    boxes[present, 1] = row[order[starts]]
    boxes[present, 2] = np.maximum.reduceat(end[order], starts)
    boxes[present, 3] = row[order[last]] + 1
    return boxes


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
    placed = masks.placed_crops()
    for i in parents:
        x0, y0, region = placed[i]
        owner[y0:y0 + region.shape[0], x0:x0 + region.shape[1]][region] = i
    for i in children:
        x0, y0, region = placed[i]
        under = owner[y0:y0 + region.shape[0], x0:x0 + region.shape[1]][region]
        if under.size:
            counts = np.bincount(under + 1)
            inside[i] = counts[1:].max(initial=0) >= config.parent_share * under.size
    return inside


@dataclass
class TrackedFrame:
    """One frame through ``track_frame``: ``segments`` (the lifted ``Segment3D``s, in the order the tracker
    saw them), ``step`` (the tracker's ``StepResult``: one object id per segment, merges, the voxel lookup),
    ``mask_rows`` (int64, per segment the index of its mask in the frame's ``MaskSet``), ``selected`` and
    ``partition`` (``exclusive_partition``'s kept masks and owner image, rows of ``selected``) and ``owner``
    (H x W int32: the index in the frame's ``MaskSet`` of the mask holding each pixel after the exclusive
    partition, -1 where none does; the scan mode reads it at its vertices' pixels). ``owner`` is made when
    first read: a whole-image pass (0.43 ms a frame at 640 x 480, median on 7-Scenes) that the mapper
    alone never needs."""

    segments: list
    step: StepResult
    mask_rows: np.ndarray
    selected: np.ndarray
    partition: np.ndarray

    @cached_property
    def owner(self) -> np.ndarray:
        return partition_owner(self.selected, self.partition)

    @property
    def object_ids(self) -> np.ndarray:
        """One persistent object id per segment (``step.object_ids``)."""
        return self.step.object_ids


@dataclass
class LiftedFrame:
    """A frame's partitioned and lifted masks, before association (``lift_frame_masks``): what depends on
    the frame, its masks and the lift alone, so that it can be computed anywhere (``FrameLifter`` in the
    segmenter process) and handed to ``track_frame``. ``surface``: sorted keys of the observed surface
    (``surface_keys``); ``selected`` / ``owner``: ``exclusive_partition``'s kept masks and owner image;
    ``segments``: the lifted ``Segment3D``s; ``frame_index``: the frame it was made from; ``lift`` /
    ``partition``: the configurations it was made with (``track_frame`` refuses another tracker's)."""

    frame_index: int
    surface: np.ndarray
    selected: np.ndarray
    owner: np.ndarray
    segments: list
    lift: LiftConfig
    partition: PartitionConfig

    def __getstate__(self) -> dict:
        return {**self.__dict__, "segments": pack_segments(self.segments)}  # a few arrays, not ~7 per segment

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, segments=unpack_segments(state["segments"]))


def lift_frame_masks(frame: Frame, masks: MaskSet | MaskCrops, lift: LiftConfig,
                     partition: PartitionConfig = PartitionConfig()) -> LiftedFrame:
    """Partition ``masks`` (computed on ``frame``) and lift them with ``lift``: the frame's observed surface
    is back-projected and voxelised once and serves both the tracker's visibility test and the lift (same
    voxel size, stride and depth range)."""
    surface = known_surface(frame, lift.voxel_size, lift.stride, lift.depth_range)
    selected, boxes, owner = exclusive_partition(masks, partition)
    segments = lift_partition(frame, owner, masks.scores[selected], boxes, lift, surface)
    return LiftedFrame(int(frame.index), surface.cells.keys, selected, owner, segments, lift, partition)


@dataclass(frozen=True)
class FrameLifter:
    """``lift_frame_masks`` with fixed configurations, as a picklable callable ``(frame, masks) ->
    LiftedFrame``: a segmenter process given one (``segment2d.worker.SegmenterProcess``'s ``finish``) lifts
    the frames it segments, off the mapping process."""

    lift: LiftConfig
    partition: PartitionConfig = PartitionConfig()
    takes_crops: ClassVar[bool] = True  # the segmenter process may hand it MaskCrops (no N x H x W stack)

    def __call__(self, frame: Frame, masks: MaskSet | MaskCrops) -> LiftedFrame:
        return lift_frame_masks(frame, masks, self.lift, self.partition)


def track_frame(tracker: OnlineTracker, frame: Frame, masks: MaskSet | MaskCrops,
                partition: PartitionConfig = PartitionConfig(), lifted: LiftedFrame | None = None
                ) -> TrackedFrame:
    """Partition ``masks`` (computed on ``frame``), lift them with the tracker's lift configuration and
    associate them into ``tracker``'s map: the one per-frame path (``scene.pipeline.Mapper`` calls it).

    ``lifted``: this frame's ``lift_frame_masks`` with the tracker's lift and ``partition``, already made
    (e.g. in the segmenter process); the result is the same as lifting here. ``masks`` may be ``MaskCrops``
    (the same result; no N x H x W stack is made)."""
    lift = tracker.lift
    if lifted is None:
        lifted = lift_frame_masks(frame, masks, lift, partition)
    elif lifted.frame_index != frame.index:
        raise ValueError(f"track_frame (frame {frame.index}): the lifted masks are of frame {lifted.frame_index}")
    elif lifted.lift != lift or lifted.partition != partition:
        raise ValueError(f"track_frame (frame {frame.index}): the masks were lifted with another lift or partition "
                         f"configuration than this tracker's")
    segments, selected = lifted.segments, lifted.selected
    mask_rows = selected[np.array([s.mask_index for s in segments], np.int64)]
    structure = masks.extra.get("is_structure")
    flags = None if structure is None else np.asarray(structure, bool)[mask_rows]
    tracks = masks.extra.get("track_id")
    tracks = None if tracks is None else np.asarray(tracks, np.int64)[mask_rows]
    together = coarse_together(tracker.config.association, masks, selected, lifted.owner, segments)
    step = tracker.step(frame, segments, flags, lifted.surface, tracks, together)
    return TrackedFrame(segments, step, mask_rows, selected, lifted.owner)


def partition_owner(selected: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """``exclusive_partition``'s owner image with rows of the whole ``MaskSet`` (-1 stays -1)."""
    return np.take(np.append(selected, -1).astype(np.int32), owner)
