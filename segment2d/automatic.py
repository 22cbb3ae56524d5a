"""SAM's automatic mask generator: prompt any promptable model with a point grid, keep good distinct masks.

The algorithm is the one of Meta's ``SamAutomaticMaskGenerator`` (per crop: point batches -> predicted-IoU
filter -> stability filter -> threshold -> drop masks cut by an inner crop edge -> box NMS; then NMS across
crops preferring smaller crops; then optional removal of small islands/holes and a last NMS). It drives any
object with the ``PromptablePredictor`` interface, so the model is replaceable (and tests use a fake).

Speed without changing the result: the predicted-IoU filter runs on the scores before any mask is upsampled;
with a ``LowResPredictor`` (``SamPredictor``) only its survivors are upsampled from the decoder's 256 x 256
logits, a few at a time, and thresholded straight into bool masks with their stability counts.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from scene.datasets import Frame

from .amg import (
    MaskData,
    batch_slices,
    box_area,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    count_pixels,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_to_rle,
    masks_to_boxes,
    nms,
    remove_small_regions,
    stability_from_counts,
    uncrop_boxes,
    uncrop_masks,
    uncrop_points,
)
from .types import MaskSet

OUTPUT_MODES = ("binary_mask", "uncompressed_rle")


@runtime_checkable
class PromptablePredictor(Protocol):
    """A SAM-like model with one image set at a time (``segment2d.predictor.SamPredictor`` is one).

    ``predict_torch`` takes points in the pixel coordinates of the image given to ``set_image`` (xy, not
    resized: the predictor transforms them itself) and returns ``(masks (B, C, H, W), iou_predictions (B, C),
    low_res_logits (B, C, 256, 256))``; with ``return_logits=True`` the masks are float logits at the image's
    size, to be thresholded at ``mask_threshold``.
    """

    mask_threshold: float

    def set_image(self, image: np.ndarray) -> None: ...

    def reset_image(self) -> None: ...

    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class LowResPredictor(PromptablePredictor, Protocol):
    """A ``PromptablePredictor`` that also gives the decoder's low-res logits and upsamples them on demand
    (``SamPredictor`` is one). The generator then upsamples only the masks that pass the IoU filter.

    ``predict_low_res(point_coords, point_labels, multimask_output=True)`` returns ``(low_res (B, C, h, w),
    iou_predictions (B, C))``; ``upscale_logits(low_res (k, h, w))`` returns (k, H, W) float logits at the size
    of the image given to ``set_image``, equal to what ``predict_torch(..., return_logits=True)`` returns.
    """

    def predict_low_res(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def upscale_logits(self, low_res: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class AMGConfig:
    """Settings of the automatic mask generator; the defaults are SAM's (chosen for ViT-H).

    - ``points_per_side``: grid of n x n prompts on the whole image; ``point_grids``, when given, replaces it:
      one (N, 2) array of ``(x, y)`` in [0, 1] per crop layer (``crop_n_layers + 1`` arrays).
    - ``points_per_batch``: prompts sent to the model at once (memory vs. speed).
    - ``pred_iou_thresh``: keep masks whose predicted IoU is > this (0 disables).
    - ``stability_score_thresh`` / ``stability_score_offset``: keep masks whose IoU between the masks
      thresholded at ``mask_threshold +/- offset`` (logit units) is >= this (0 disables).
    - ``box_nms_thresh``: box IoU above which a lower-scoring mask of the same crop is a duplicate.
    - ``crop_n_layers``: extra layers of crops (layer i has (2^i)^2 crops); ``crop_nms_thresh`` removes
      duplicates between crops (smaller crops win); ``crop_overlap_ratio`` is the overlap of layer-1 crops
      as a fraction of the short image side; layer i uses ``points_per_side / crop_n_points_downscale_factor**i``.
    - ``crop_edge_tolerance``: pixels within which a mask box "touches" an inner crop edge (SAM: 20).
    - ``min_mask_region_area``: if > 0, islands and holes smaller than this many pixels are removed/filled.
    - ``output_mode``: form of ``segmentation`` in ``generate_records``: 'binary_mask' or 'uncompressed_rle'.
    """

    points_per_side: int | None = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_grids: tuple[np.ndarray, ...] | None = None
    min_mask_region_area: int = 0
    output_mode: str = "binary_mask"
    crop_edge_tolerance: float = 20.0

    def __post_init__(self) -> None:
        if self.output_mode not in OUTPUT_MODES:
            hint = " (coco_rle needs pycocotools, which this project does not use)" if self.output_mode == "coco_rle" else ""
            raise ValueError(f"AMGConfig.output_mode must be one of {OUTPUT_MODES}, got {self.output_mode!r}{hint}")
        if self.point_grids is None and self.points_per_side is None:
            raise ValueError("AMGConfig needs points_per_side or point_grids")
        if self.points_per_batch < 1 or self.crop_n_layers < 0 or self.crop_n_points_downscale_factor < 1:
            raise ValueError(
                "AMGConfig: points_per_batch and crop_n_points_downscale_factor must be >= 1 and crop_n_layers >= 0, "
                f"got {self.points_per_batch}, {self.crop_n_points_downscale_factor}, {self.crop_n_layers}"
            )
        if self.point_grids is not None:
            object.__setattr__(self, "point_grids", tuple(_checked_grid(g, i) for i, g in enumerate(self.point_grids)))
            if len(self.point_grids) != self.crop_n_layers + 1:
                raise ValueError(
                    f"AMGConfig.point_grids has {len(self.point_grids)} grids for crop_n_layers={self.crop_n_layers} "
                    f"(needs {self.crop_n_layers + 1})"
                )

    def layer_grids(self) -> list[np.ndarray]:
        """The normalised (N, 2) point grid of each crop layer."""
        if self.point_grids is not None:
            return list(self.point_grids)
        return build_all_layer_point_grids(self.points_per_side, self.crop_n_layers, self.crop_n_points_downscale_factor)


def _checked_grid(grid, index: int) -> np.ndarray:
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 2 or grid.shape[1] != 2 or grid.shape[0] == 0 or np.any((grid < 0) | (grid > 1)):
        raise ValueError(f"AMGConfig.point_grids[{index}] must be a non-empty (N, 2) array in [0, 1], got shape {grid.shape}")
    return grid


class AutomaticMaskGenerator:
    """Masks for a whole image from a promptable model, with SAM's filtering (see the module docstring).

    ``logit_chunk`` (attribute, default 4): masks upsampled and thresholded at once; it bounds the float
    temporary to ``logit_chunk x H x W`` and does not change the result.
    """

    name = "amg"

    def __init__(self, predictor: PromptablePredictor, config: AMGConfig | None = None, **overrides) -> None:
        if not isinstance(predictor, PromptablePredictor):
            raise TypeError(
                f"predictor must have mask_threshold, set_image, reset_image and predict_torch, got {type(predictor).__name__}"
            )
        self.predictor = predictor
        self.config = replace(config or AMGConfig(), **overrides)
        self._grids = self.config.layer_grids()
        # masks upsampled and thresholded at once: bounds the float temporary (k x H x W) and keeps it in cache
        self.logit_chunk = 4

    @torch.inference_mode()
    def generate(self, image_or_frame) -> MaskSet:
        """MaskSet of the kept masks, best first; ``scores`` = predicted IoU clipped to [0, 1].

        ``extra``: ``predicted_iou`` (unclipped), ``stability_score`` (float32), ``point_coords`` (N x 2 float32,
        the prompt in full-image pixels xy), ``crop_box`` (N x 4 int32 XYXY of the crop that produced the mask).
        """
        data = self._generate_mask_data(_as_image(image_or_frame))
        iou = data["iou_preds"].numpy().astype(np.float32)
        extra = {
            "predicted_iou": iou,
            "stability_score": data["stability_score"].numpy().astype(np.float32),
            "point_coords": data["points"].numpy().astype(np.float32),
            "crop_box": data["crop_boxes"].numpy().astype(np.int32),
        }
        return MaskSet(data["masks"].numpy(), np.clip(iou, 0.0, 1.0), data["boxes"].numpy(), extra)

    @torch.inference_mode()
    def generate_records(self, image_or_frame) -> list[dict]:
        """SAM's output: one dict per mask with ``segmentation`` (H x W bool, or an uncompressed RLE dict
        ``{'size': [H, W], 'counts': [...]}`` when ``output_mode='uncompressed_rle'``), ``area`` (pixels),
        ``bbox`` (XYWH, pixel extents), ``predicted_iou``, ``point_coords`` ([[x, y]]), ``stability_score``
        and ``crop_box`` (XYWH)."""
        data = self._generate_mask_data(_as_image(image_or_frame))
        if self.config.output_mode == "uncompressed_rle":
            segmentations = mask_to_rle(data["masks"])
        else:
            segmentations = list(data["masks"].numpy())
        areas = count_pixels(data["masks"]).tolist()
        boxes = box_xyxy_to_xywh(data["boxes"].numpy())
        crops = box_xyxy_to_xywh(data["crop_boxes"].numpy())
        return [
            {
                "segmentation": segmentations[i],
                "area": int(areas[i]),
                "bbox": boxes[i].tolist(),
                "predicted_iou": float(data["iou_preds"][i]),
                "point_coords": [data["points"][i].tolist()],
                "stability_score": float(data["stability_score"][i]),
                "crop_box": crops[i].tolist(),
            }
            for i in range(len(data))
        ]

    # ------------------------------------------------------------ the pipeline

    def _generate_mask_data(self, image: np.ndarray) -> MaskData:
        """All kept masks of the image as CPU tensors: masks (N, H, W) bool, boxes, iou_preds, stability_score,
        points (full-image xy), crop_boxes."""
        cfg = self.config
        height, width = image.shape[:2]
        crop_boxes, layers = generate_crop_boxes((height, width), cfg.crop_n_layers, cfg.crop_overlap_ratio)
        data = MaskData.concatenate([self._process_crop(image, box, int(layer)) for box, layer in zip(crop_boxes, layers)])
        if len(crop_boxes) > 1 and len(data) > 0:
            smaller_crop_first = 1.0 / box_area(data["crop_boxes"].to(torch.float32))
            data.filter(nms(data["boxes"], smaller_crop_first, cfg.crop_nms_thresh))
        if cfg.min_mask_region_area > 0 and len(data) > 0:
            postprocess_small_regions(data, cfg.min_mask_region_area, max(cfg.box_nms_thresh, cfg.crop_nms_thresh))
        return data

    def _process_crop(self, image: np.ndarray, crop_box: np.ndarray, layer: int) -> MaskData:
        x0, y0, x1, y1 = (int(v) for v in crop_box)
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        self.predictor.set_image(crop)
        points = self._grids[layer] * np.array([[x1 - x0, y1 - y0]], dtype=np.float64)
        try:
            batches = batch_slices(len(points), self.config.points_per_batch)
            data = MaskData.concatenate([self._process_batch(points[b], crop_box, image.shape[:2]) for b in batches])
        finally:
            self.predictor.reset_image()
        data.filter(nms(data["boxes"], data["iou_preds"], self.config.box_nms_thresh))
        data["masks"] = uncrop_masks(data["masks"], crop_box, image.shape[0], image.shape[1])
        data["boxes"] = uncrop_boxes(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.as_tensor(crop_box, dtype=torch.int64).repeat(len(data), 1)
        return data

    def _process_batch(self, points: np.ndarray, crop_box: np.ndarray, image_size: tuple[int, int]) -> MaskData:
        """Prompt with one batch of points (crop pixels); return the masks that pass the per-mask filters.

        Same filters, order and results as SAM's batch step, but the predicted-IoU filter runs first on the
        scores alone and only its survivors are upsampled (with a ``LowResPredictor``) and thresholded, a few
        at a time, into bool masks: no batch of full-resolution float masks is ever held or copied.
        """
        cfg = self.config
        crop_size = (int(crop_box[3] - crop_box[1]), int(crop_box[2] - crop_box[0]))
        iou_preds, fetch_logits = self._prompt(points, crop_size)
        n_out = iou_preds.shape[1]
        iou_flat = iou_preds.flatten().to(torch.float32)
        candidates = torch.arange(iou_flat.numel(), device=iou_flat.device)
        if cfg.pred_iou_thresh > 0.0:
            candidates = candidates[iou_flat > cfg.pred_iou_thresh]
        threshold = float(self.predictor.mask_threshold)
        masks, stability = threshold_logits(
            fetch_logits, candidates, crop_size, threshold, cfg.stability_score_offset, self.logit_chunk
        )
        point_rows = torch.as_tensor(points, dtype=torch.float32, device=iou_flat.device)
        data = MaskData(
            masks=masks, iou_preds=iou_flat[candidates], stability_score=stability, points=point_rows[candidates // n_out]
        )
        if cfg.stability_score_thresh > 0.0:
            _filter_if_any_dropped(data, data["stability_score"] >= cfg.stability_score_thresh)
        data["boxes"] = masks_to_boxes(data["masks"])
        image_box = [0, 0, image_size[1], image_size[0]]
        _filter_if_any_dropped(data, ~is_box_near_crop_edge(data["boxes"], crop_box, image_box, cfg.crop_edge_tolerance))
        return MaskData(**{k: data[k].cpu() for k in ("masks", "boxes", "iou_preds", "stability_score", "points")})

    def _prompt(self, points: np.ndarray, crop_size: tuple[int, int]):
        """(B x C IoU predictions, fetch) where ``fetch(rows)`` gives the k x h x w float logits of the flat
        mask indices ``rows`` (row = point * C + mask) at the crop's size."""
        device = torch.device(getattr(self.predictor, "device", "cpu"))
        coords = torch.as_tensor(points, dtype=torch.float32, device=device)[:, None, :]
        labels = torch.ones((len(points), 1), dtype=torch.int64, device=device)
        if isinstance(self.predictor, LowResPredictor):
            low_res, iou_preds = self.predictor.predict_low_res(coords, labels, multimask_output=True)
            _check_low_res(low_res, iou_preds, len(points))
            flat = low_res.flatten(0, 1)
            return iou_preds, lambda rows: self.predictor.upscale_logits(flat[rows])
        logits, iou_preds, _ = self.predictor.predict_torch(coords, labels, multimask_output=True, return_logits=True)
        _check_prediction(logits, iou_preds, len(points), crop_size)
        n_out = logits.shape[1]
        return iou_preds, lambda rows: logits[rows // n_out, rows % n_out]


def threshold_logits(fetch, rows: torch.Tensor, size: tuple[int, int], threshold: float, offset: float, chunk: int):
    """Bool masks and stability scores of the masks ``rows``, fetched ``chunk`` at a time.

    ``fetch(rows)`` returns their (k, H, W) float logits. Returns ``(masks (N, H, W) bool, stability (N,)
    float32)``, equal to ``logits > threshold`` and ``calculate_stability_score`` on the whole batch; small
    chunks keep each float block in cache for its three passes.
    """
    n = int(rows.numel())
    masks = torch.empty((n, *size), dtype=torch.bool, device=rows.device)
    high = torch.empty(n, dtype=torch.int64, device=rows.device)
    low = torch.empty(n, dtype=torch.int64, device=rows.device)
    for start in range(0, n, chunk):
        part = slice(start, min(start + chunk, n))
        logits = fetch(rows[part])
        if tuple(logits.shape[1:]) != tuple(size):
            raise ValueError(f"predictor returned masks of shape {tuple(logits.shape[1:])}, expected {tuple(size)} (the crop)")
        torch.gt(logits, threshold, out=masks[part])
        high[part] = count_pixels(logits > threshold + offset)
        low[part] = count_pixels(logits > threshold - offset)
    return masks, stability_from_counts(high, low)


def _filter_if_any_dropped(data: MaskData, keep: torch.Tensor) -> None:
    if not bool(keep.all()):
        data.filter(keep)


def postprocess_small_regions(data: MaskData, min_area: int, nms_thresh: float) -> None:
    """Fill holes and remove islands under ``min_area`` pixels in ``data['masks']``, then drop new duplicates.

    Edits ``data`` in place: masks and boxes are replaced; box NMS at ``nms_thresh`` prefers masks that needed
    no change (score 1) over changed ones (score 0), as SAM does.
    """
    cleaned, unchanged = [], []
    for mask in data["masks"].numpy():
        filled, holes_changed = remove_small_regions(mask, min_area, mode="holes")
        cleaned_mask, islands_changed = remove_small_regions(filled, min_area, mode="islands")
        cleaned.append(cleaned_mask)
        unchanged.append(not (holes_changed or islands_changed))
    data["masks"] = torch.from_numpy(np.stack(cleaned))
    data["boxes"] = masks_to_boxes(data["masks"])
    data.filter(nms(data["boxes"], torch.tensor(unchanged, dtype=torch.float32), nms_thresh))


def _as_image(image_or_frame) -> np.ndarray:
    image = image_or_frame.color if isinstance(image_or_frame, Frame) else image_or_frame
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        described = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image_or_frame must be a Frame or an H x W x 3 uint8 RGB image, got {described}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image_or_frame is empty: shape {image.shape}")
    return image


def _check_low_res(low_res: torch.Tensor, iou_preds: torch.Tensor, n_points: int) -> None:
    if low_res.ndim != 4 or low_res.shape[0] != n_points or tuple(iou_preds.shape) != tuple(low_res.shape[:2]):
        raise ValueError(
            f"predictor.predict_low_res returned logits {tuple(low_res.shape)} and iou_predictions {tuple(iou_preds.shape)}"
            f" for {n_points} points, expected ({n_points}, C, h, w) and ({n_points}, C)"
        )


def _check_prediction(logits: torch.Tensor, iou_preds: torch.Tensor, n_points: int, size: tuple[int, int]) -> None:
    if logits.ndim != 4 or logits.shape[0] != n_points or tuple(logits.shape[2:]) != size:
        raise ValueError(
            f"predictor.predict_torch returned masks of shape {tuple(logits.shape)}, expected ({n_points}, C, {size[0]}, {size[1]})"
        )
    if tuple(iou_preds.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"predictor.predict_torch returned iou_predictions {tuple(iou_preds.shape)} for masks {tuple(logits.shape)}")
    if not torch.is_floating_point(logits):
        raise ValueError("predictor.predict_torch returned non-float masks although return_logits=True was asked")


class SamMaskGenerator:
    """The ``sam`` generator: a SAM / MobileSAM (or HQ-SAM) checkpoint driven by ``AutomaticMaskGenerator``.

    ``checkpoint``: path of a released SAM, MobileSAM or HQ-SAM state dict; ``model_type``: 'vit_b' | 'vit_l' |
    'vit_h' | 'vit_t' (or one of them + '_hq') or None to infer it; ``device``: torch device, 'auto' for CUDA when
    available else CPU; ``encoder_dtype``: 'float32' | 'bfloat16' | 'float16' (or a torch dtype) for the image
    encoder, 'auto' for bfloat16 on CUDA and float32 on CPU. Further keywords are ``AMGConfig`` fields.
    """

    name = "sam"

    def __init__(
        self,
        checkpoint,
        model_type: str | None = None,
        device: str = "auto",
        encoder_dtype: str | torch.dtype = "auto",
        config: AMGConfig | None = None,
        hq_token_only: bool = False,
        **amg_options,
    ) -> None:
        from segment2d.build import load_sam
        from segment2d.predictor import SamPredictor

        device = resolve_device(device)
        model = load_sam(checkpoint, model_type=model_type, device=device)
        self._check_model(model, checkpoint)
        dtype = resolve_encoder_dtype(encoder_dtype, device)
        predictor = SamPredictor(model, device=device, encoder_dtype=dtype, hq_token_only=hq_token_only)
        self.generator = AutomaticMaskGenerator(predictor, config, **amg_options)

    def _check_model(self, model, checkpoint) -> None:
        """Hook for generators that accept only some SAM variants."""

    def generate(self, image_or_frame) -> MaskSet:
        return self.generator.generate(image_or_frame)

    def generate_records(self, image_or_frame) -> list[dict]:
        return self.generator.generate_records(image_or_frame)


class SamHQMaskGenerator(SamMaskGenerator):
    """The ``sam-hq`` generator: an HQ-SAM checkpoint (``sam_hq_vit_{b,l,h,tiny}.pth``) in the automatic mask
    generator: each point gives HQ-SAM's mask (the best of SAM's three plus the HQ token's, or with
    ``hq_token_only`` the HQ token's alone). Same options as ``sam``, plus ``hq_token_only``."""

    name = "sam-hq"

    def _check_model(self, model, checkpoint) -> None:
        if not model.is_hq:
            raise ValueError(
                f"{checkpoint}: a {model.model_type} SAM checkpoint without HQ-SAM's weights "
                "(no mask_decoder.hf_token); use --segmenter sam for it, or an sam_hq_vit_*.pth file"
            )


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else as torch.device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_encoder_dtype(value: str | torch.dtype, device: torch.device) -> torch.dtype:
    """'auto' -> bfloat16 on CUDA (float16 where the GPU has no bfloat16), float32 elsewhere; else ``torch_dtype``."""
    if str(value) != "auto":
        return torch_dtype(value)
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def torch_dtype(value: str | torch.dtype) -> torch.dtype:
    """A torch dtype from its name ('float32', 'bf16', ...) or itself."""
    if isinstance(value, torch.dtype):
        return value
    try:
        return _DTYPES[str(value).lower()]
    except KeyError:
        raise ValueError(f"encoder_dtype must be one of {sorted(_DTYPES)}, got {value!r}") from None


AMG_OPTION_NAMES = tuple(f.name for f in fields(AMGConfig))
