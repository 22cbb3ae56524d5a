"""A seeded mask degrader: wraps any mask generator and adds the errors real segmenters make.

Per frame, independently, and in this order (each kind draws from its own random stream, seeded by
``(seed, frame index, kind)``, so a run is reproducible and switching one kind on does not reshuffle
the draws of the kinds before it):

1. **merge**: every pair of *adjacent* masks (touching after a ``adjacency_px`` dilation) is merged with
   probability ``merge_rate``; pairs chained through a shared mask become one mask (union-find).
2. **split**: every mask is cut in two with probability ``split_rate`` by a straight line through its
   centroid at a random angle (the two sides are the two pieces; masks too small to cut are kept).
3. **drop**: every mask is removed with probability ``drop_rate``.
4. **boundary**: every mask is, with probability ``boundary_rate``, eroded or dilated (random sign) by a
   radius drawn uniformly from ``boundary_px``; a mask eroded to nothing is removed.

A merged mask keeps the score and ``extra`` values of its largest member; split pieces keep their
parent's. All rates 0 (the default) give back the wrapped generator's masks unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np

from .types import MaskGenerator, MaskSet, boxes_from_masks, one_level_masks

_KINDS = ("merge", "split", "drop", "boundary")


def _pair(value, name: str) -> tuple[int, int]:
    try:
        low, high = value
        return int(low), int(high)
    except (TypeError, ValueError):
        raise ValueError(f"DegradeConfig.{name} must be a (min, max) pair of integers, got {value!r}") from None


@dataclass(frozen=True)
class DegradeConfig:
    """Error rates (probabilities in [0, 1]) and sizes (pixels) of ``degrade_masks``.

    - ``merge_rate``: share of adjacent mask pairs merged; ``adjacency_px``: dilation radius (1-2 px)
      under which two masks count as touching.
    - ``split_rate``: share of masks cut in two.
    - ``drop_rate``: share of masks removed.
    - ``boundary_rate``: share of masks eroded or dilated; ``boundary_px``: (min, max) radius, inclusive.
    """

    merge_rate: float = 0.0
    split_rate: float = 0.0
    drop_rate: float = 0.0
    boundary_rate: float = 0.0
    boundary_px: tuple[int, int] = (1, 3)
    adjacency_px: int = 2

    def __post_init__(self) -> None:
        for name in ("merge_rate", "split_rate", "drop_rate", "boundary_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"DegradeConfig.{name} must be a probability in [0, 1], got {value!r}")
        low, high = _pair(self.boundary_px, "boundary_px")
        if not 1 <= low <= high:
            raise ValueError(f"DegradeConfig.boundary_px must be (min, max) with 1 <= min <= max, got {self.boundary_px!r}")
        if not isinstance(self.adjacency_px, int) or not 1 <= self.adjacency_px <= 5:
            raise ValueError(f"DegradeConfig.adjacency_px must be an integer in [1, 5], got {self.adjacency_px!r}")

    @property
    def is_identity(self) -> bool:
        return not any((self.merge_rate, self.split_rate, self.drop_rate, self.boundary_rate))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


# The rates issue 14 measures against: merge 5% of adjacent pairs, split 10%, drop 15%, 1-3 px boundaries.
ISSUE14_RATES = DegradeConfig(merge_rate=0.05, split_rate=0.10, drop_rate=0.15, boundary_rate=1.0)


def frame_rngs(seed: int, frame_index: int) -> dict[str, np.random.Generator]:
    """One independent generator per error kind for ``(seed, frame_index)``."""
    return {kind: np.random.default_rng([int(seed), int(frame_index), k]) for k, kind in enumerate(_KINDS)}


def degrade_masks(masks: MaskSet, config: DegradeConfig, seed: int = 0, frame_index: int = 0) -> MaskSet:
    """``masks`` with merges, splits, drops and boundary errors drawn for ``(seed, frame_index)``."""
    if config.is_identity or len(masks) == 0:
        return masks
    rngs = frame_rngs(seed, frame_index)
    out = masks
    if config.merge_rate > 0:
        out = merge_adjacent(out, config.merge_rate, config.adjacency_px, rngs["merge"])
    if config.split_rate > 0:
        out = split_masks(out, config.split_rate, rngs["split"])
    if config.drop_rate > 0:
        out = out.subset(rngs["drop"].random(len(out)) >= config.drop_rate)
    if config.boundary_rate > 0:
        out = perturb_boundaries(out, config.boundary_rate, _pair(config.boundary_px, "boundary_px"), rngs["boundary"])
    return out


def adjacent_pairs(masks: np.ndarray, radius: int) -> np.ndarray:
    """K x 2 index pairs (i < j) of N x H x W masks that touch or overlap after dilating by ``radius`` px."""
    masks = np.asarray(masks, bool)
    n = len(masks)
    boxes = boxes_from_masks(masks)
    grown = boxes + np.array([-radius, -radius, radius, radius], np.float32)
    kernel = _disk(radius)
    pairs = []
    for i in range(n):
        x0, y0, x1, y1 = grown[i]
        near = np.flatnonzero((boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1) & (boxes[:, 3] > y0))
        near = near[near > i]
        if near.size == 0:
            continue
        h, w = masks.shape[1:]
        ys = slice(max(int(y0), 0), min(int(y1), h))
        xs = slice(max(int(x0), 0), min(int(x1), w))
        dilated = cv2.dilate(masks[i, ys, xs].astype(np.uint8), kernel).astype(bool)
        touching = (masks[near, ys, xs] & dilated).any((1, 2))
        pairs.extend((i, int(j)) for j in near[touching])
    return np.asarray(pairs, np.int64).reshape(-1, 2)


def merge_adjacent(masks: MaskSet, rate: float, radius: int, rng: np.random.Generator) -> MaskSet:
    """Merge each adjacent pair with probability ``rate``; connected chains of merged pairs become one mask."""
    pairs = adjacent_pairs(masks.masks, radius)
    chosen = pairs[rng.random(len(pairs)) < rate]
    if len(chosen) == 0:
        return masks
    groups = _union_find(len(masks), chosen)
    areas = masks.areas
    rows, keep = [], []
    for members in groups:
        rows.append(masks.masks[members].any(0))
        keep.append(members[int(np.argmax(areas[members]))])
    keep = np.asarray(keep)
    extra = {k: np.asarray(v)[keep] for k, v in masks.extra.items()}
    stacked = np.stack(rows)
    return MaskSet(stacked, masks.scores[keep], boxes_from_masks(stacked), extra)


def _union_find(n: int, pairs: np.ndarray) -> list[np.ndarray]:
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(n)])
    # groups in the order of their first member, so an unmerged set keeps its order
    return [np.flatnonzero(roots == r) for r in roots[np.sort(np.unique(roots, return_index=True)[1])]]


def split_masks(masks: MaskSet, rate: float, rng: np.random.Generator) -> MaskSet:
    """Cut each mask with probability ``rate`` along a random line through its centroid."""
    chosen = rng.random(len(masks)) < rate
    angles = rng.uniform(0.0, np.pi, len(masks))
    if not chosen.any():
        return masks
    rows, parents = [], []
    for i in range(len(masks)):
        pieces = _cut(masks.masks[i], angles[i]) if chosen[i] else None
        for piece in pieces or (masks.masks[i],):
            rows.append(piece)
            parents.append(i)
    parents = np.asarray(parents)
    stacked = np.stack(rows)
    extra = {k: np.asarray(v)[parents] for k, v in masks.extra.items()}
    return MaskSet(stacked, masks.scores[parents], boxes_from_masks(stacked), extra)


def _cut(mask: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The two sides of ``mask`` across the line through its centroid with normal at ``angle``; None if
    a side would be empty (a mask of one pixel, or a line along a one-pixel-wide mask)."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 2:
        return None
    side = (xs - xs.mean()) * np.cos(angle) + (ys - ys.mean()) * np.sin(angle) > 0
    if side.all() or not side.any():
        return None
    first, second = np.zeros_like(mask), np.zeros_like(mask)
    first[ys[side], xs[side]] = True
    second[ys[~side], xs[~side]] = True
    return first, second


def perturb_boundaries(masks: MaskSet, rate: float, radius_range: tuple[int, int], rng: np.random.Generator) -> MaskSet:
    """Erode or dilate (random sign) each mask with probability ``rate`` by a radius in ``radius_range``."""
    n = len(masks)
    chosen = rng.random(n) < rate
    radii = rng.integers(radius_range[0], radius_range[1] + 1, n)
    grow = rng.random(n) < 0.5
    out = masks.masks.copy()
    for i in np.flatnonzero(chosen):
        operation = cv2.dilate if grow[i] else cv2.erode
        out[i] = operation(out[i].astype(np.uint8), _disk(int(radii[i])), borderType=cv2.BORDER_REPLICATE).astype(bool)
    keep = out.reshape(n, -1).any(1)
    kept = out[keep]
    return MaskSet(kept, masks.scores[keep], boxes_from_masks(kept), {k: np.asarray(v)[keep] for k, v in masks.extra.items()})


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


class DegradedMaskGenerator:
    """Any mask generator with ``degrade_masks`` applied to its output, seeded by (``seed``, frame index).

    Given a bare image instead of a Frame, the frame index is the number of images degraded before it.
    ``one_level`` is the wrapped generator's (``types.one_level_masks``): a merge or split replaces the masks
    it takes and a boundary error moves a mask's edge, so the masks stay one level when they were; so is
    ``needs_instance_ids`` (frames without instance ids cannot be segmented).
    """

    def __init__(self, inner: MaskGenerator, config: DegradeConfig | None = None, seed: int = 0, **rates):
        self.inner = inner
        self.config = config if config is not None else DegradeConfig(**rates)
        self.seed = int(seed)
        self.name = f"{inner.name}+degraded"
        self.one_level = one_level_masks(inner)
        self.needs_instance_ids = bool(getattr(inner, "needs_instance_ids", False))
        self._images_seen = 0

    def generate(self, frame_or_image) -> MaskSet:
        masks = self.inner.generate(frame_or_image)
        index = getattr(frame_or_image, "index", None)
        if index is None:
            index, self._images_seen = self._images_seen, self._images_seen + 1
        return degrade_masks(masks, self.config, self.seed, int(index))
