"""Mask cleaning in the image: which (mask, pixel) pairs are trustworthy enough to lift.

Drops pixels with invalid depth, pixels on depth discontinuities (flying pixels between foreground
and background), a band of ``erode_px`` pixels (square neighbourhood) along every mask boundary, and
optionally pixels claimed by more than one mask. The 3D side (splitting, minimum size) is in ``lift``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .backproject import DEFAULT_DEPTH_RANGE, stride_grid, valid_depth
from .voxels import stable_argsort

UNOWNED = -1
CONTESTED = -2


@dataclass(frozen=True)
class CleanConfig:
    """Cleaning parameters.

    - ``erode_px``: boundary band removed from each mask, in full-resolution pixels (0 = none).
    - ``max_depth_jump``: a pixel is on a discontinuity when depth varies by more than this fraction
      of its own depth within ``discontinuity_radius`` pixels among the valid neighbours, or when
      fewer than half the neighbours are valid.
    - ``drop_overlaps``: drop pixels inside more than one mask of the same overlap group; the groups
      are read from ``MaskSet.extra[overlap_groups]`` when present (the geometric generator's ``level``:
      its levels nest, while masks within a level should not overlap), else all masks form one group.
      Used by ``lift_masks`` only: ``lift_partition`` (the pipeline's path) lifts a partition, which has
      no overlaps.
    - ``split``: split a mask whose points form spatially separate parts, connecting voxels within
      about ``split_cell`` metres (26-connected cells of that size).
    - ``min_points``: drop parts with fewer lifted points (counted after the pixel stride).
    """

    erode_px: int = 2
    max_depth_jump: float = 0.05
    discontinuity_radius: int = 1
    drop_overlaps: bool = True
    overlap_groups: str | None = "level"
    split: bool = True
    split_cell: float = 0.06
    min_points: int = 40

    def __post_init__(self) -> None:
        if self.erode_px < 0 or self.discontinuity_radius < 0 or self.min_points < 0:
            raise ValueError(f"CleanConfig: erode_px, discontinuity_radius and min_points must be >= 0: {self}")
        if self.max_depth_jump <= 0 or self.split_cell <= 0:
            raise ValueError(f"CleanConfig: max_depth_jump and split_cell must be > 0: {self}")


def depth_discontinuities(
    depth: np.ndarray, max_jump: float, radius: int, depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE
) -> np.ndarray:
    """H x W bool: the valid depths (metres) within ``radius`` px span more than ``max_jump`` x the pixel's
    depth, or fewer than half of those neighbours are valid (an isolated reading). Invalid neighbours are
    not jumps themselves: sensors drop scattered pixels on dark or distant surfaces, and counting every
    hole as an edge would erase such surfaces whole."""
    if radius == 0:
        return np.zeros(depth.shape, bool)
    valid = valid_depth(depth, depth_range)
    clean = np.where(valid, depth, np.float32(0)).astype(np.float32, copy=False)
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    highest = cv2.dilate(clean, kernel, borderType=cv2.BORDER_REPLICATE)
    lowest = cv2.erode(np.where(valid, clean, np.float32(np.inf)), kernel, borderType=cv2.BORDER_REPLICATE)
    count_depth = -1 if kernel.size < 256 else cv2.CV_32S  # counts in the input's byte while they fit
    valid_count = cv2.boxFilter(valid.view(np.uint8), count_depth, kernel.shape, normalize=False,
                                borderType=cv2.BORDER_REPLICATE)
    np.subtract(highest, lowest, out=highest)
    jump = highest > np.multiply(clean, np.float32(max_jump), out=clean)
    jump |= valid_count < (kernel.size + 1) // 2  # fewer than half of the neighbours valid
    return jump


def mask_boxes(masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Integer N x 4 (x0, y0, x1, y1) crops from XYXY float boxes, rounded outwards and clipped."""
    height, width = masks.shape[1:]
    out = np.empty((len(boxes), 4), np.int64)
    out[:, 0] = np.clip(np.floor(boxes[:, 0]), 0, width)
    out[:, 1] = np.clip(np.floor(boxes[:, 1]), 0, height)
    out[:, 2] = np.clip(np.ceil(boxes[:, 2]), 0, width)
    out[:, 3] = np.clip(np.ceil(boxes[:, 3]), 0, height)
    return out


def owner_image(masks: np.ndarray, crops: np.ndarray, members: np.ndarray | None = None) -> np.ndarray:
    """H x W int32: the index of the only mask (among ``members``, default all) covering each pixel,
    UNOWNED or CONTESTED. Works inside each mask's crop: the cost follows box areas, not N x H x W.
    """
    height, width = masks.shape[1:]
    count = np.zeros((height, width), np.uint16)
    owner = np.full((height, width), UNOWNED, np.int32)
    for i in range(len(masks)) if members is None else members:
        x0, y0, x1, y1 = crops[i]
        inside = masks[i, y0:y1, x0:x1]
        count[y0:y1, x0:x1] += inside
        owner[y0:y1, x0:x1][inside] = i
    owner[count > 1] = CONTESTED
    return owner


def exclusive_owner(masks: np.ndarray, crops: np.ndarray) -> np.ndarray | None:
    """H x W int32 index of the mask covering each pixel (UNOWNED elsewhere), or None when two masks
    share a pixel. Like ``owner_image``, it looks only inside each mask's crop."""
    owner = np.full(masks.shape[1:], UNOWNED, np.int32)
    painted = 0
    for i, (x0, y0, x1, y1) in enumerate(crops.tolist()):
        inside = masks[i, y0:y1, x0:x1]
        painted += np.count_nonzero(inside)
        np.copyto(owner[y0:y1, x0:x1], np.int32(i), where=inside)
    return owner if np.count_nonzero(owner >= 0) == painted else None


def interior_of_labels(owner: np.ndarray, erode_px: int) -> np.ndarray:
    """H x W bool: pixels whose whole (2 erode_px + 1)^2 square has their label (the image border does not erode)."""
    if erode_px == 0:
        return owner >= 0
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * erode_px + 1, 2 * erode_px + 1))
    labels = owner.astype(np.int16 if owner.max(initial=0) < np.iinfo(np.int16).max else np.float32)
    low = cv2.erode(labels, kernel, borderType=cv2.BORDER_REPLICATE)
    high = cv2.dilate(labels, kernel, borderType=cv2.BORDER_REPLICATE)
    return (low == high) & (owner >= 0)


def eroded_crop(
    masks: np.ndarray, i: int, crop: np.ndarray, erode_px: int
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Mask ``i`` eroded by ``erode_px`` inside its crop grown by the radius (the image border does not erode)."""
    height, width = masks.shape[1:]
    x0, y0 = max(int(crop[0]) - erode_px, 0), max(int(crop[1]) - erode_px, 0)
    x1, y1 = min(int(crop[2]) + erode_px, width), min(int(crop[3]) + erode_px, height)
    region = masks[i, y0:y1, x0:x1]
    if erode_px == 0 or region.size == 0:
        return region, (x0, y0, x1, y1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * erode_px + 1, 2 * erode_px + 1))
    eroded = cv2.erode(region.view(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE)
    return eroded.view(bool), (x0, y0, x1, y1)


def clean_mask_pixels(
    depth: np.ndarray,
    masks: np.ndarray,
    boxes: np.ndarray,
    config: CleanConfig = CleanConfig(),
    stride: int = 1,
    depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The (mask id, pixel) pairs that survive cleaning, sampled every ``stride`` rows and columns.

    ``masks`` is N x H x W bool, ``boxes`` N x 4 XYXY pixel boxes that contain the masks (MaskSet's
    contract). With ``config.drop_overlaps``, a pixel is dropped when two masks of the same group
    (``groups``: N ints, e.g. the hierarchy level; default one group) claim it; masks of different
    groups may nest. Returns (mask_ids M int32, pixels M int64 flat indices), sorted by mask then pixel.
    """
    if masks.ndim != 3 or masks.shape[1:] != depth.shape:
        raise ValueError(f"clean_mask_pixels: masks must be N x {depth.shape[0]} x {depth.shape[1]}, got {masks.shape}")
    if np.shape(boxes) != (masks.shape[0], 4):
        raise ValueError(f"clean_mask_pixels: boxes must be {masks.shape[0]} x 4, got {np.shape(boxes)}")
    usable = _usable_pixels(depth, config, stride, depth_range)
    crops = mask_boxes(masks, np.asarray(boxes, dtype=np.float64))
    if not config.drop_overlaps:
        return _pairs_per_mask(masks, crops, usable, config.erode_px)
    groups = np.zeros(len(masks), np.int64) if groups is None else np.asarray(groups).reshape(-1)
    if groups.size != len(masks):
        raise ValueError(f"clean_mask_pixels: groups has {groups.size} entries for {len(masks)} masks")
    ids, pixels = [np.zeros(0, np.int32)], [np.zeros(0, np.int64)]
    for group in np.unique(groups):
        owner = owner_image(masks, crops, np.flatnonzero(groups == group))
        pixels.append(np.flatnonzero(usable & interior_of_labels(owner, config.erode_px)))
        ids.append(owner.reshape(-1)[pixels[-1]])
    mask_ids, pixels = np.concatenate(ids), np.concatenate(pixels)
    order = stable_argsort(mask_ids)
    return mask_ids[order].astype(np.int32), pixels[order]


def clean_partition_pixels(
    depth: np.ndarray,
    owner: np.ndarray,
    config: CleanConfig = CleanConfig(),
    stride: int = 1,
    depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE,
) -> tuple[np.ndarray, np.ndarray]:
    """``clean_mask_pixels`` for masks that form a partition, given as their H x W int owner image (mask
    index per pixel, negative where none): no overlaps to drop, and no N x H x W stack to paint."""
    if owner.shape != depth.shape:
        raise ValueError(f"clean_partition_pixels: owner is {owner.shape}, depth is {depth.shape}")
    return _pairs_of_owner(owner, _usable_pixels(depth, config, stride, depth_range), config.erode_px)


def _usable_pixels(depth: np.ndarray, config: CleanConfig, stride: int, depth_range: tuple[float, float]) -> np.ndarray:
    """H x W bool: valid depth off discontinuities, on the stride grid."""
    usable = valid_depth(depth, depth_range) & ~depth_discontinuities(
        depth, config.max_depth_jump, config.discontinuity_radius, depth_range
    )
    if stride > 1:
        usable &= stride_grid(*depth.shape, stride)
    return usable


def _pairs_of_owner(owner: np.ndarray, usable: np.ndarray, erode_px: int) -> tuple[np.ndarray, np.ndarray]:
    """The usable interior pixels of a partition's owner image, sorted by mask then pixel."""
    pixels = np.flatnonzero(usable & interior_of_labels(owner, erode_px))
    ids = owner.reshape(-1)[pixels]
    order = stable_argsort(ids)
    return ids[order], pixels[order]


def _pairs_per_mask(masks: np.ndarray, crops: np.ndarray, usable: np.ndarray, erode_px: int):
    """Overlapping masks keep shared pixels: erode and collect each mask inside its own crop. Masks
    that do not overlap (a partition) are eroded all at once as one label image, with the same result."""
    owner = exclusive_owner(masks, crops)
    if owner is not None:
        return _pairs_of_owner(owner, usable, erode_px)
    width = masks.shape[2]
    ids, pixels = [], []
    for i, crop in enumerate(crops):
        inside, (x0, y0, x1, y1) = eroded_crop(masks, i, crop, erode_px)
        rows, cols = np.nonzero(inside & usable[y0:y1, x0:x1])
        pixels.append((rows + y0).astype(np.int64) * width + cols + x0)
        ids.append(np.full(rows.size, i, np.int32))
    if not pixels:
        return np.zeros(0, np.int32), np.zeros(0, np.int64)
    return np.concatenate(ids), np.concatenate(pixels)
