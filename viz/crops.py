"""Best-view image crops: the part of an object's best frame that shows it, read from the map's source.

The frame is ``MapObject.best_view_frame`` (a frame index of the sequence, i.e. ``Frame.index``) of the
dataset at ``MapMetadata.source_path``; the box ``best_view_box`` is x0 y0 x1 y1 pixels of that frame.
"""
from __future__ import annotations

import cv2
import numpy as np

from scene.datasets import DatasetError, open_dataset
from scene.map import MapMetadata, MapObject


class BestViewCrops:
    """Reads crops, opening each dataset once. ``crop`` returns None whenever the image cannot be had
    (no source path, missing files, unknown frame, empty box): a viewer shows nothing rather than failing."""

    def __init__(self, max_side: int = 320, margin: float = 0.15) -> None:
        self.max_side = int(max_side)
        self.margin = float(margin)
        self._sources: dict[tuple[str, str], object] = {}

    def crop(self, metadata: MapMetadata, obj: MapObject) -> np.ndarray | None:
        """H x W x 3 uint8 RGB crop around the object's best-view box (with a margin), longest side
        at most ``max_side`` pixels, or None."""
        if not metadata.source_path or obj.best_view_frame < 0:
            return None
        try:
            source = self._source(metadata)
            position = source.raw_indices.index(obj.best_view_frame)
            image = source[position].color
        except (DatasetError, OSError, ValueError, IndexError):
            return None
        return crop_box(image, obj.best_view_box, self.margin, self.max_side)

    def _source(self, metadata: MapMetadata):
        key = (metadata.source_path, metadata.source_format)
        if key not in self._sources:
            self._sources[key] = open_dataset(metadata.source_path, format=metadata.source_format or None)
        return self._sources[key]


def crop_box(image: np.ndarray, box: np.ndarray, margin: float = 0.15, max_side: int = 320) -> np.ndarray | None:
    """Crop x0 y0 x1 y1 (pixels, grown by ``margin`` of its size on each side, clipped to the image) and
    shrink so the longest side is at most ``max_side``; None for an empty box. A zero box means the
    whole image."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, np.float64).reshape(4))
    if x0 == y0 == x1 == y1 == 0.0:
        x0, y0, x1, y1 = 0.0, 0.0, float(w), float(h)
    grow_x, grow_y = margin * (x1 - x0), margin * (y1 - y0)
    c0, r0 = int(max(0, np.floor(x0 - grow_x))), int(max(0, np.floor(y0 - grow_y)))
    c1, r1 = int(min(w, np.ceil(x1 + grow_x))), int(min(h, np.ceil(y1 + grow_y)))
    if c1 <= c0 or r1 <= r0:
        return None
    crop = np.ascontiguousarray(image[r0:r1, c0:c1])
    scale = max_side / max(crop.shape[:2])
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return crop
