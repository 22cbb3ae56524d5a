"""From work-resolution labels to the MaskSet's full-resolution masks and boxes (nearest upsampling)."""
from __future__ import annotations

import cv2
import numpy as np


_BYTE_REPEAT = {2: (np.uint16, 0x0101), 4: (np.uint32, 0x01010101), 8: (np.uint64, 0x0101010101010101)}


def upsample(masks: np.ndarray, f: int, full_hw: tuple[int, int]) -> np.ndarray:
    """Nearest upsampling of N x h x w work-resolution masks to N x H x W (work pixel = full pixel // f,
    clipped to the last row/column)."""
    n, h, w = masks.shape
    H, W = full_hw
    if f == 1 and (h, w) == (H, W):
        return masks
    if h * f == H and w * f == W and f in _BYTE_REPEAT:
        # Repeat each byte f times along x by multiplying it into a wider integer (0/1 -> 0x0101..),
        # then copy whole rows f times along y: ~25x faster than a broadcast over a 5-D view.
        wide, ones = _BYTE_REPEAT[f]
        rows = (masks.view(np.uint8).astype(wide) * wide(ones)).view(np.uint8).view(bool)
        out = np.empty((n, h, f, W), bool)
        out[...] = rows[:, :, None, :]
        return out.reshape(n, H, W)
    ys = np.minimum(np.arange(H) // f, h - 1)
    xs = np.minimum(np.arange(W) // f, w - 1)
    return masks[:, ys][:, :, xs]


def full_res_crops(label_images: list, source: np.ndarray, label: np.ndarray, base_labels: np.ndarray,
                   unions: list, f: int, full_hw: tuple[int, int], boxes: np.ndarray) -> list:
    """Full-resolution masks as crops (``segment2d.types.MaskCrops``): mask i is ``label_images[source[i]] ==
    label[i]``, or where ``source[i]`` is -1 the union ``unions[label[i]]`` of ``base_labels`` regions,
    upsampled like ``upsample``; per mask (x0, y0, crop), the crop being the mask inside its XYXY ``boxes``
    row (``upscaled_boxes`` of its region's presence: the box holds every pixel of the mask, which is False
    outside it). Compared directly on the upsampled (8/16-bit) label images, over the box only: no mask
    stack to fill and upsample (a region covers 4-11% of a frame on average on the real sequences)."""
    H, W = full_hw
    full = {k: _upsample_labels(label_images[k], f, full_hw) for k in np.unique(source[source >= 0]).tolist()}
    base_full = None
    if (source < 0).any():
        same = [k for k, image in enumerate(label_images) if image is base_labels and k in full]
        base_full = full[same[0]] if same else _upsample_labels(base_labels, f, full_hw)
    member = np.zeros(int(base_labels.max(initial=0)) + 1, bool)
    crops = []
    for (x0, y0, x1, y1), k, lab in zip(_box_crops(boxes, full_hw), source.tolist(), label.tolist()):
        if k >= 0:
            crop = full[k][y0:y1, x0:x1] == lab
        else:
            member[:] = False
            member[unions[lab]] = True
            crop = member[base_full[y0:y1, x0:x1]]
        crops.append((x0, y0, crop))
    return crops


def _box_crops(boxes: np.ndarray, full_hw: tuple[int, int]) -> list:
    """Integer (x0, y0, x1, y1) of XYXY boxes holding their masks, clipped to the image."""
    H, W = full_hw
    out = np.empty((len(boxes), 4), np.int64)
    out[:, :2] = np.floor(boxes[:, :2])
    out[:, 2:] = np.ceil(boxes[:, 2:])
    out = np.clip(out, 0, [W, H, W, H])
    out[:, 2:] = np.maximum(out[:, 2:], out[:, :2])
    return out.tolist()


def _upsample_labels(labels: np.ndarray, f: int, full_hw: tuple[int, int]) -> np.ndarray:
    """Nearest upsampling of an h x w label image (same pixel mapping as ``upsample``), in the narrowest
    unsigned dtype that holds its labels (comparisons on 8-bit labels are ~4x cheaper than on 32-bit)."""
    h, w = labels.shape
    top = int(labels.max()) if labels.size else 0
    dtype = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int64
    if dtype != np.int64 and f in (2, 4, 8) and (h * f, w * f) == tuple(full_hw):
        # An exact power-of-two ratio: OpenCV's nearest resize picks source pixel dst // f (x / f is exact),
        # ~5x faster than two takes.
        return cv2.resize(labels.astype(dtype), (w * f, h * f), interpolation=cv2.INTER_NEAREST)
    ys = np.minimum(np.arange(full_hw[0]) // f, h - 1)
    xs = np.minimum(np.arange(full_hw[1]) // f, w - 1)
    return labels.astype(dtype).take(ys, axis=0).take(xs, axis=1)


def label_presence(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n x h, n x w) bool: whether label k occurs in each row / each column of ``labels``.

    Read from the pixels that start a run of equal labels along the row (for rows) or the column (for
    columns): a row holding label k holds the first pixel of one of its runs, so this is presence over every
    pixel, from the few percent of pixels that start runs."""
    h, w = labels.shape
    flat_labels = labels.ravel()
    run = np.empty((h, w), bool)
    run[:, 0] = True
    np.not_equal(labels[:, 1:], labels[:, :-1], out=run[:, 1:])
    starts = np.flatnonzero(run)
    rows = np.bincount(flat_labels[starts].astype(np.int64) * h + starts // w, minlength=n * h).reshape(n, h) > 0
    run[0] = True
    np.not_equal(labels[1:], labels[:-1], out=run[1:])
    starts = np.flatnonzero(run)
    cols = np.bincount(flat_labels[starts].astype(np.int64) * w + starts % w, minlength=n * w).reshape(n, w) > 0
    return rows, cols


def boxes_from_presence(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """XYXY boxes (exclusive max) from row/column presence, as ``boxes_from_masks``; absent -> zeros."""
    h, w = rows.shape[1], cols.shape[1]
    present = rows.any(axis=1)
    boxes = np.zeros((len(rows), 4), np.float32)
    boxes[:, 0] = np.where(present, cols.argmax(axis=1), 0)
    boxes[:, 1] = np.where(present, rows.argmax(axis=1), 0)
    boxes[:, 2] = np.where(present, w - cols[:, ::-1].argmax(axis=1), 0)
    boxes[:, 3] = np.where(present, h - rows[:, ::-1].argmax(axis=1), 0)
    return boxes


def union_boxes(presence: tuple[np.ndarray, np.ndarray], groups: list) -> np.ndarray:
    """len(groups) x 4 XYXY boxes of the unions of label groups, from the labels' ``label_presence``."""
    if not groups:
        return np.zeros((0, 4), np.float32)
    rows, cols = presence
    return boxes_from_presence(np.stack([rows[g].any(axis=0) for g in groups]),
                                np.stack([cols[g].any(axis=0) for g in groups]))


def upscaled_boxes(boxes: np.ndarray, f: int, work_hw: tuple[int, int], full_hw: tuple[int, int]) -> np.ndarray:
    """XYXY boxes of work-resolution masks -> boxes of the ``upsample``d masks (exclusive max, full pixels).

    The last work row/column also covers any leftover full-resolution rows/columns."""
    (h, w), (H, W) = work_hw, full_hw
    out = boxes * np.float32(f)
    out[:, 2] = np.where(boxes[:, 2] >= w, W, out[:, 2])
    out[:, 3] = np.where(boxes[:, 3] >= h, H, out[:, 3])
    empty = boxes[:, 2] <= boxes[:, 0]
    out[empty] = 0
    return out.astype(np.float32)
