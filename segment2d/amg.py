"""Building blocks of SAM's automatic mask generation, written for this project (no torchvision, no pycocotools).

Conventions: images are H x W; points are pixel coordinates ``(x, y)`` in continuous units (pixel ``(i, j)``
covers ``[j, j+1) x [i, i+1)``); boxes are XYXY float32 with an EXCLUSIVE max corner, as in
``segment2d.types.boxes_from_masks`` (SAM's own boxes use an inclusive max, one pixel less); crop boxes
are integer XYXY ``[x0, y0, x1, y1)`` in the full image.
"""
from __future__ import annotations

import math
from typing import Iterator

import cv2
import numpy as np
import torch

# Rows of the pairwise IoU matrix computed at once in NMS (bounds the float temporary to rows x N).
_NMS_ROW_BLOCK = 1024


# ---------------------------------------------------------------- point grids and crops


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n^2, 2) float64 points ``(x, y)`` normalised to [0, 1], at the centres of an n x n grid; x varies fastest."""
    if n_per_side < 1:
        raise ValueError(f"n_per_side must be >= 1, got {n_per_side}")
    offset = 1.0 / (2 * n_per_side)
    side = np.linspace(offset, 1.0 - offset, n_per_side, dtype=np.float64)
    xs, ys = np.meshgrid(side, side, indexing="xy")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """Point grids for crop layers 0..n_layers; layer i has ``int(n_per_side / scale_per_layer**i)`` points a side."""
    grids = []
    for layer in range(n_layers + 1):
        n_points = int(n_per_side / (scale_per_layer**layer))
        if n_points < 1:
            raise ValueError(
                f"crop layer {layer} would have no points: points_per_side={n_per_side} / "
                f"crop_n_points_downscale_factor={scale_per_layer}**{layer} < 1"
            )
        grids.append(build_point_grid(n_points))
    return grids


def generate_crop_boxes(image_size: tuple[int, int], n_layers: int, overlap_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """SAM's crop boxes: the whole image, then (2^i)^2 overlapping crops for layer i = 1..n_layers.

    ``image_size`` is (H, W). Returns ``(boxes, layers)``: (M, 4) int64 XYXY crop boxes (exclusive max) and
    (M,) int64 layer indices. Crops of a layer overlap by ``overlap_ratio * short_side * 2 / n_crops_per_side``
    pixels; within a layer they are ordered x-major (all crops of the first column first).
    """
    im_h, im_w = int(image_size[0]), int(image_size[1])
    short_side = min(im_h, im_w)
    boxes, layers = [[0, 0, im_w, im_h]], [0]
    for layer in range(1, n_layers + 1):
        n_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / n_side))
        crop_w = _crop_length(im_w, n_side, overlap)
        crop_h = _crop_length(im_h, n_side, overlap)
        x0s = [int((crop_w - overlap) * i) for i in range(n_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_side)]
        for x0 in x0s:
            for y0 in y0s:
                boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
                layers.append(layer)
    return np.asarray(boxes, dtype=np.int64), np.asarray(layers, dtype=np.int64)


def _crop_length(full_length: int, n_crops: int, overlap: int) -> int:
    return int(math.ceil((overlap * (n_crops - 1) + full_length) / n_crops))


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``batch_size`` covering ``range(n)``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


# ---------------------------------------------------------------- scores and boxes


def calculate_stability_score(logits: torch.Tensor, mask_threshold: float, threshold_offset: float) -> torch.Tensor:
    """IoU between the masks thresholded at ``mask_threshold + offset`` and ``mask_threshold - offset``.

    ``logits``: (..., H, W). The high mask is always inside the low one, so the IoU is a ratio of pixel counts.
    Returns float32 (...); a mask that is empty even at the low threshold scores 0 (SAM gives NaN there).
    """
    high = count_pixels(logits > (mask_threshold + threshold_offset))
    low = count_pixels(logits > (mask_threshold - threshold_offset))
    return stability_from_counts(high, low)


def stability_from_counts(high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """Stability score (float32) from the pixel counts above the high and the low threshold; 0 where low is 0."""
    ratio = high.to(torch.float32) / low.clamp(min=1).to(torch.float32)
    return torch.where(low > 0, ratio, torch.zeros_like(ratio))


def count_pixels(masks: torch.Tensor) -> torch.Tensor:
    """Set pixels of each bool mask (..., H, W) as int64 (...)."""
    # summing rows into int16 first is several times faster on CPU than one int64 sum over H*W
    row_dtype = torch.int16 if masks.shape[-1] < 2**15 else torch.int32
    return masks.sum(-1, dtype=row_dtype).sum(-1, dtype=torch.int64)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """XYXY float32 boxes (exclusive max) of bool masks (..., H, W); empty masks get [0, 0, 0, 0]."""
    h, w = masks.shape[-2:]
    if masks.numel() == 0:
        return torch.zeros((*masks.shape[:-2], 4), dtype=torch.float32, device=masks.device)
    # max over uint8 is ~10x faster than any() over bool on CPU
    as_bytes = masks.view(torch.uint8) if masks.dtype == torch.bool else (masks != 0).view(torch.uint8)
    rows, cols = as_bytes.amax(-1) > 0, as_bytes.amax(-2) > 0
    row_idx = torch.arange(h, device=masks.device)
    col_idx = torch.arange(w, device=masks.device)
    top = torch.where(rows, row_idx, h).amin(-1)
    bottom = torch.where(rows, row_idx + 1, 0).amax(-1)
    left = torch.where(cols, col_idx, w).amin(-1)
    right = torch.where(cols, col_idx + 1, 0).amax(-1)
    boxes = torch.stack([left, top, right, bottom], dim=-1).to(torch.float32)
    return boxes * rows.any(-1, keepdim=True)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of XYXY boxes (N, 4); inverted boxes count as 0."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """(N, M) IoU of XYXY boxes; 0 where both boxes are empty."""
    area_a, area_b = box_area(boxes_a), box_area(boxes_b)
    lt = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    rb = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def box_xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) XYXY -> XYWH (COCO ``bbox``: width and height are the pixel extents for exclusive boxes)."""
    boxes = np.asarray(boxes)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


# ---------------------------------------------------------------- non-maximum suppression


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS: indices (int64) of the kept boxes, highest score first.

    A box is dropped when its IoU with a kept, higher-scoring box exceeds ``iou_threshold``. Equal scores keep
    their input order (stable sort). The IoU matrix is computed vectorised in row blocks; the greedy pass
    then walks the boxes once with whole-row bool operations.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"nms needs boxes (N, 4) and scores (N,), got {tuple(boxes.shape)} and {tuple(scores.shape)}")
    n = boxes.shape[0]
    order = torch.argsort(scores, descending=True, stable=True)
    if n == 0:
        return order.to(torch.int64)
    ordered = boxes[order].to(torch.float32)
    overlaps = _overlap_matrix(ordered, iou_threshold)
    removed = np.zeros(n, dtype=bool)
    for i in range(n):
        if not removed[i]:
            removed |= overlaps[i]
    keep = torch.from_numpy(np.flatnonzero(~removed)).to(order.device)
    return order[keep].to(torch.int64)


def _overlap_matrix(boxes: torch.Tensor, iou_threshold: float) -> np.ndarray:
    """(N, N) bool numpy: IoU > threshold, strictly above the diagonal (box i can only suppress a later box)."""
    n = boxes.shape[0]
    out = np.zeros((n, n), dtype=bool)
    for start in range(0, n, _NMS_ROW_BLOCK):
        block = box_iou(boxes[start : start + _NMS_ROW_BLOCK], boxes) > iou_threshold
        out[start : start + _NMS_ROW_BLOCK] = block.cpu().numpy()
    return np.triu(out, k=1)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, categories: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS applied per category, in one pass: boxes of different categories are shifted apart so they never overlap."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    boxes = boxes.to(torch.float32)
    span = boxes.max() - boxes.min() + 1
    offsets = categories.to(boxes.dtype)[:, None] * span
    return nms(boxes + offsets, scores, iou_threshold)


# ---------------------------------------------------------------- crops back to the full image


def is_box_near_crop_edge(boxes: torch.Tensor, crop_box, image_box, atol: float = 20.0) -> torch.Tensor:
    """(N,) bool: boxes (in CROP coordinates) within ``atol`` px of a crop edge that is not also an image edge."""
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    image = torch.as_tensor(image_box, dtype=torch.float32, device=boxes.device)
    full = uncrop_boxes(boxes.to(torch.float32), crop_box)
    near_crop = torch.isclose(full, crop[None], atol=atol, rtol=0)
    near_image = torch.isclose(full, image[None], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def uncrop_boxes(boxes: torch.Tensor, crop_box) -> torch.Tensor:
    """Shift (..., 4) XYXY boxes from crop to full-image coordinates."""
    x0, y0 = int(crop_box[0]), int(crop_box[1])
    return boxes + torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype, device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box) -> torch.Tensor:
    """Shift (..., 2) xy points from crop to full-image coordinates."""
    x0, y0 = int(crop_box[0]), int(crop_box[1])
    return points + torch.tensor([x0, y0], dtype=points.dtype, device=points.device)


def uncrop_masks(masks: torch.Tensor, crop_box, image_h: int, image_w: int) -> torch.Tensor:
    """Zero-pad (N, h, w) crop masks into the (N, image_h, image_w) full image."""
    x0, y0, x1, y1 = (int(v) for v in crop_box)
    if (x0, y0, x1, y1) == (0, 0, image_w, image_h):
        return masks
    pad = (x0, image_w - x1, y0, image_h - y1)  # left, right, top, bottom
    return torch.nn.functional.pad(masks, pad, value=0)


# ---------------------------------------------------------------- run-length encoding (COCO, uncompressed)


def mask_to_rle(masks: np.ndarray | torch.Tensor) -> list[dict]:
    """COCO uncompressed RLEs of (N, H, W) bool masks: ``{'size': [H, W], 'counts': [...]}``.

    Like pycocotools: pixels are read column-major (down each column, then the next column), counts
    alternate zeros/ones and always start with the count of zeros (0 when the first pixel is set).
    """
    masks = masks.cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"mask_to_rle needs N x H x W masks, got shape {masks.shape}")
    n, h, w = masks.shape
    flat = masks.astype(bool).transpose(0, 2, 1).reshape(n, h * w)
    rows, cols = np.nonzero(flat[:, 1:] != flat[:, :-1])
    changes = np.split(cols + 1, np.cumsum(np.bincount(rows, minlength=n))[:-1])
    rles = []
    for i in range(n):
        counts = np.diff(np.concatenate([[0], changes[i], [h * w]]))
        if h * w > 0 and flat[i, 0]:
            counts = np.concatenate([[0], counts])
        rles.append({"size": [int(h), int(w)], "counts": counts.astype(np.int64).tolist()})
    return rles


def rle_to_mask(rle: dict) -> np.ndarray:
    """H x W bool mask from a COCO uncompressed RLE (see ``mask_to_rle``)."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = np.asarray(rle["counts"], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"not an uncompressed RLE dict {{'size': [h, w], 'counts': [...]}}: {err}") from None
    if counts.ndim != 1 or np.any(counts < 0) or counts.sum() != h * w:
        raise ValueError(f"RLE counts must be non-negative and sum to h*w = {h * w}, got sum {counts.sum()}")
    values = (np.arange(counts.size) % 2).astype(bool)
    return np.ascontiguousarray(np.repeat(values, counts).reshape(w, h).T)


def area_from_rle(rle: dict) -> int:
    """Number of set pixels of an uncompressed RLE (the sum of its odd-position counts)."""
    return int(sum(rle["counts"][1::2]))


# ---------------------------------------------------------------- small regions


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Remove islands or fill holes smaller than ``area_thresh`` pixels (8-connectivity), as SAM does.

    ``mode='islands'``: drop connected parts of the mask under the threshold, but keep the largest part when
    all are small. ``mode='holes'``: fill connected parts of the background under the threshold (as in SAM,
    this includes small background pieces touching the image border). Returns ``(mask, changed)``.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    mask = np.asarray(mask, dtype=bool)
    fill_holes = mode == "holes"
    working = (mask ^ fill_holes).astype(np.uint8)
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = sizes < area_thresh
    if not small.any():
        return mask, False
    if fill_holes:
        # label 0 is the mask itself; small background components join it
        selected = np.concatenate([[True], small])
    else:
        selected = np.concatenate([[False], ~small])
        if not selected.any():
            selected[1 + int(np.argmax(sizes))] = True
    return selected[labels], True


# ---------------------------------------------------------------- batch container


class MaskData:
    """Per-mask fields of equal length (torch tensors, numpy arrays or lists), filtered and joined together."""

    def __init__(self, **fields) -> None:
        self._fields: dict = {}
        for key, value in fields.items():
            self[key] = value

    def __setitem__(self, key: str, value) -> None:
        if not isinstance(value, (torch.Tensor, np.ndarray, list)):
            raise TypeError(f"MaskData field {key!r} must be a tensor, array or list, got {type(value).__name__}")
        if self._fields and key not in self._fields and len(value) != len(self):
            raise ValueError(f"MaskData field {key!r} has {len(value)} rows, the others {len(self)}")
        self._fields[key] = value

    def __getitem__(self, key: str):
        return self._fields[key]

    def __contains__(self, key: str) -> bool:
        return key in self._fields

    def __len__(self) -> int:
        return len(next(iter(self._fields.values()))) if self._fields else 0

    def keys(self) -> list[str]:
        return list(self._fields)

    def filter(self, keep) -> None:
        """Keep the rows selected by a bool mask or an index array/tensor (in that order)."""
        keep_np = keep.cpu().numpy() if isinstance(keep, torch.Tensor) else np.asarray(keep)
        for key, value in self._fields.items():
            if isinstance(value, torch.Tensor):
                self._fields[key] = value[torch.as_tensor(keep_np, device=value.device)]
            elif isinstance(value, np.ndarray):
                self._fields[key] = value[keep_np]
            else:
                idx = np.flatnonzero(keep_np) if keep_np.dtype == bool else keep_np
                self._fields[key] = [value[int(i)] for i in idx]

    def __delitem__(self, key: str) -> None:
        del self._fields[key]

    @classmethod
    def concatenate(cls, parts: list["MaskData"]) -> "MaskData":
        """One MaskData with the rows of all ``parts`` in order (each field joined once, not pairwise)."""
        parts = [part for part in parts if part.keys()]
        if not parts:
            return cls()
        keys = parts[0].keys()
        for part in parts[1:]:
            if set(part.keys()) != set(keys):
                raise ValueError(f"cannot join MaskData with fields {sorted(part.keys())} to {sorted(keys)}")
        return cls(**{key: _join([part[key] for part in parts]) for key in keys})

    def cat(self, other: "MaskData") -> None:
        """Append the rows of ``other`` (same fields, or this one empty)."""
        self._fields = MaskData.concatenate([self, other])._fields


def _join(values: list):
    if isinstance(values[0], torch.Tensor):
        return torch.cat([v.to(values[0].device) for v in values], dim=0)
    if isinstance(values[0], np.ndarray):
        return np.concatenate(values, axis=0)
    return [item for v in values for item in v]
