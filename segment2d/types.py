"""The mask-set type that leaves segment2d, and the generator interface that produces it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class MaskSet:
    """N binary masks on one image, at the image's resolution.

    - ``masks``: N x H x W bool.
    - ``scores``: N float32 confidence in [0, 1] (SAM: predicted IoU; geometric: a region quality).
    - ``boxes``: N x 4 float32 XYXY pixel boxes (x0, y0 inclusive, x1, y1 exclusive).
    - ``extra``: optional per-mask arrays (e.g. ``stability_score``, ``point_coords``, ``crop_box``,
      ``is_structure`` for planes such as floor and walls), each of length N.
    - ``extra["track_id"]`` (optional, int64): a video generator's (``sam2``) track of each mask: equal ids
      on different frames of one stream mean the generator followed one object from one to the other.
    Masks may overlap; each row is one region.
    """

    masks: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.masks = np.asarray(self.masks, dtype=bool)
        if self.masks.ndim != 3:
            raise ValueError(f"masks must be N x H x W, got shape {self.masks.shape}")
        n = self.masks.shape[0]
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(n)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(n, 4)
        for k, v in self.extra.items():
            if len(v) != n:
                raise ValueError(f"extra[{k!r}] has {len(v)} rows for {n} masks")

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @property
    def areas(self) -> np.ndarray:
        return self.masks.sum(axis=(1, 2))  # (also for no masks: reshape(0, -1) is an error)

    @classmethod
    def empty(cls, height: int, width: int) -> "MaskSet":
        return cls(np.zeros((0, height, width), bool), np.zeros(0, np.float32), np.zeros((0, 4), np.float32))

    @classmethod
    def from_masks(cls, masks: np.ndarray, scores: np.ndarray | None = None, **extra: np.ndarray) -> "MaskSet":
        masks = np.asarray(masks, dtype=bool)
        scores = np.ones(len(masks), np.float32) if scores is None else scores
        return cls(masks, scores, boxes_from_masks(masks), dict(extra))

    def subset(self, keep: np.ndarray) -> "MaskSet":
        keep = np.asarray(keep)
        return MaskSet(self.masks[keep], self.scores[keep], self.boxes[keep], {k: np.asarray(v)[keep] for k, v in self.extra.items()})

    def placed_crops(self) -> list[tuple[int, int, np.ndarray]]:
        """Per mask (x0, y0, h x w bool) holding every pixel of it, placed at column x0, row y0: views of
        the stack cut to the boxes (``box_windows``)."""
        windows = box_windows(self.boxes, self.image_size).tolist()
        return [(x0, y0, self.masks[i, y0:y1, x0:x1]) for i, (x0, y0, x1, y1) in enumerate(windows)]

    def label_image(self) -> np.ndarray:
        """H x W int32: index of the highest-scoring mask covering each pixel, -1 where none does."""
        h, w = self.image_size
        out = np.full((h, w), -1, np.int32)
        for i in np.argsort(self.scores, kind="stable"):
            out[self.masks[i]] = i
        return out


def box_windows(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Integer (x0, y0, x1, y1) windows of the image holding the XYXY ``boxes`` (MaskSet's contract: the
    box holds the mask)."""
    height, width = image_size
    out = np.empty((len(boxes), 4), np.int64)
    out[:, [0, 1]] = np.floor(boxes[:, [0, 1]])
    out[:, [2, 3]] = np.ceil(boxes[:, [2, 3]])
    return np.clip(out, 0, [width, height, width, height])


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """XYXY boxes (exclusive max) of N x H x W masks; empty masks get [0, 0, 0, 0]."""
    masks = np.asarray(masks, dtype=bool)
    n = masks.shape[0]
    boxes = np.zeros((n, 4), np.float32)
    if n == 0:
        return boxes
    rows, cols = masks.any(2), masks.any(1)
    nonempty = rows.any(1)
    h, w = masks.shape[1:]
    boxes[:, 0] = np.where(nonempty, cols.argmax(1), 0)
    boxes[:, 1] = np.where(nonempty, rows.argmax(1), 0)
    boxes[:, 2] = np.where(nonempty, w - cols[:, ::-1].argmax(1), 0)
    boxes[:, 3] = np.where(nonempty, h - rows[:, ::-1].argmax(1), 0)
    return boxes


@dataclass
class MaskCrops:
    """A MaskSet kept as each mask's box crop: ``crops`` holds per mask (x0, y0, h x w bool) placed at
    column x0, row y0 of an image of ``image_size`` (H, W); every pixel outside a crop is False. Lets a
    generator hand its masks to a worker process's packing without an N x H x W stack (a mask covers a few
    percent of the frame). ``to_maskset()`` is the MaskSet."""

    crops: list
    image_size: tuple[int, int]
    scores: np.ndarray
    boxes: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.crops)

    def subset(self, keep: np.ndarray) -> "MaskCrops":
        """``MaskSet.subset`` of these masks (``keep``: a bool array)."""
        rows = np.flatnonzero(keep)
        return MaskCrops([self.crops[i] for i in rows.tolist()], self.image_size, self.scores[rows],
                         self.boxes[rows], {k: np.asarray(v)[rows] for k, v in self.extra.items()})

    def placed_crops(self) -> list[tuple[int, int, np.ndarray]]:
        """``MaskSet.placed_crops``: the crops as they are, clipped to the image."""
        height, width = self.image_size
        return [(x0, y0, crop[:max(height - y0, 0), :max(width - x0, 0)]) for x0, y0, crop in self.crops]

    def to_maskset(self) -> MaskSet:
        masks = np.zeros((len(self.crops),) + tuple(self.image_size), bool)
        for i, (x0, y0, crop) in enumerate(self.crops):
            masks[i, y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
        return MaskSet(masks, self.scores, self.boxes, self.extra)


@runtime_checkable
class MaskGenerator(Protocol):
    """Anything that turns an RGB(-D) frame into a MaskSet.

    ``generate`` takes a ``Frame`` (``scene.datasets.Frame``) or an H x W x 3 uint8 RGB image; generators
    that need depth (the geometric one) require a Frame.

    Optional ``process_safe = True``: the generator is cheap to pickle, keeps no state from frame to frame
    and reads only a frame's index, source, colour, depth, K and pose, so a pipeline may run a copy of it
    in a worker process (``scene.pipeline.run``); absent or False, it runs on a thread of this process.
    Optional ``generate_crops(frame) -> MaskCrops``: the same masks as crops, which the worker process
    packs without making the N x H x W stack.
    Optional ``one_level = True``: the masks are one flat level, whole regions of which none is a part of
    another (``one_level_masks``).
    """

    name: str

    def generate(self, frame_or_image) -> MaskSet: ...


def one_level_masks(generator) -> bool:
    """Whether ``generator``'s masks are one flat level: each a whole region, none holding another
    (ground-truth instance masks, and those masks degraded: a merge or a split replaces the masks it
    takes). Absent the generator's ``one_level`` attribute, False: a hierarchy, whose finest masks may be
    parts of objects. The weight-free geometric generator offers parts, part unions and whole objects;
    SAM's automatic generator (SAM 2's too, on its keyframes) keeps up to three outputs per prompt
    (sub-part, part, whole), which box NMS keeps side by side when their boxes differ, so its masks nest
    as well, and the smallest-mask-wins partition the tracker sees keeps their parts. The tracker's
    evidence model follows this (``tracking.config.RefineConfig.from_online``)."""
    return bool(getattr(generator, "one_level", False))
