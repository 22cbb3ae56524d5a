"""Prompted SAM 2.1 inference on one image: encode once (``set_image``), then decode masks for any
number of point / box / mask prompts. The same interface as ``segment2d.predictor.SamPredictor`` (so the
automatic mask generator drives either): prompt coordinates are pixels (x, y) of the ORIGINAL image,
masks come back at its size (H, W). SAM 2 squashes the image to the square input (no padding), so
coordinates scale by S/W and S/H, and low-res logits are resized to (H, W) in one bilinear step.
"""
from __future__ import annotations

import numpy as np
import torch

from ..modeling.upsample import bilinear_matrix
from ..predictor import _ENCODER_DTYPES, _check_prompt_batch
from .model import FrameFeatures, Sam2Model


class Sam2ImagePredictor:
    mask_threshold: float = 0.0

    def __init__(self, model: Sam2Model, device: str | torch.device | None = None, encoder_dtype: torch.dtype = torch.float32) -> None:
        """``device``: where the model runs (default: where it is); ``encoder_dtype``: float32, or bfloat16 /
        float16 to run the image encoder under autocast (prompt encoder and decoder stay float32)."""
        if encoder_dtype not in _ENCODER_DTYPES:
            raise ValueError(f"encoder_dtype: expected one of {_ENCODER_DTYPES}, got {encoder_dtype}")
        self.device = torch.device(device) if device is not None else model.device
        self.model = model.to(self.device).eval()
        self.encoder_dtype = encoder_dtype
        self._last: tuple[np.ndarray, FrameFeatures] | None = None
        self.reset_image()

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features: FrameFeatures | None = None
        self.image_embed: torch.Tensor | None = None
        self.original_size: tuple[int, int] | None = None
        self._rows = self._cols_t = None

    def set_image(self, image: np.ndarray) -> None:
        """Encode an H x W x 3 uint8 RGB image of any size."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image: expected H x W x 3 uint8 RGB, got shape {image.shape} dtype {image.dtype}")
        if min(image.shape[:2]) < 1:
            raise ValueError(f"image: empty image of shape {image.shape}")
        size = (int(image.shape[0]), int(image.shape[1]))
        if self._last is not None and np.array_equal(self._last[0], image):
            # the same image again (the keyframe generator encodes once for the AMG and the video memory)
            self._set_features(self._last[1], size)
            return
        pixels = torch.as_tensor(np.ascontiguousarray(image), device=self.device).permute(2, 0, 1)[None]
        self.reset_image()
        self.set_input(self.model.preprocess(pixels), size)
        self._last = (image.copy(), self.features)

    @torch.inference_mode()
    def set_input(self, normalised: torch.Tensor, original_size: tuple[int, int]) -> None:
        """Encode an already normalised 1 x 3 x S x S input that shows an image of ``original_size``."""
        self._set_features(encode_features(self.model, normalised.to(self.device), self.encoder_dtype), original_size)
        self._last = None

    def _set_features(self, features: FrameFeatures, original_size: tuple[int, int]) -> None:
        self.features = features
        self.image_embed = self.model.image_only_embedding(features)
        self.original_size = (int(original_size[0]), int(original_size[1]))
        low = self.model.sam_prompt_encoder.mask_input_size
        self._rows = bilinear_matrix(low[0], self.original_size[0]).to(self.device, torch.float32)
        self._cols_t = bilinear_matrix(low[1], self.original_size[1]).T.contiguous().to(self.device, torch.float32)
        self.is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        """1 x 256 x 64 x 64 stride-16 embedding of the current image (no-memory embedding added)."""
        self._require_image()
        return self.image_embed

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt set: N x 2 points (x, y original pixels) with N labels (1 fg, 0 bg), a
        length-4 xyxy box, and/or a 1 x 256 x 256 low-res logit mask from an earlier call.
        Returns (C x H x W bool masks or float32 logits, C IoU predictions, C x 256 x 256 logits)."""
        self._require_image()
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        coords = labels = boxes = masks = None
        if point_coords is not None:
            coords = _tensor(point_coords, "point_coords", (-1, 2), torch.float32, self.device)[None]
            labels = _tensor(point_labels, "point_labels", (coords.shape[1],), torch.int64, self.device)[None]
        if box is not None:
            boxes = _tensor(box, "box", (4,), torch.float32, self.device)[None]
        if mask_input is not None:
            size = self.model.sam_prompt_encoder.mask_input_size
            masks = _tensor(mask_input, "mask_input", (1, *size), torch.float32, self.device)[None]
        out = self.predict_torch(coords, labels, boxes, masks, multimask_output, return_logits)
        return tuple(t[0].cpu().numpy() for t in out)

    @torch.inference_mode()
    def predict_torch(self, point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True, return_logits=False):
        """Batched prompts (B rows, ORIGINAL pixels). Returns (B x C x H x W bool masks or logits, B x C IoU,
        B x C x 256 x 256 low-res logits clamped to +-32 as the official predictor returns them)."""
        low_res, iou = self.predict_low_res(point_coords, point_labels, boxes, mask_input, multimask_output)
        masks = self.upscale_logits(low_res)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, iou, low_res.clamp(-32.0, 32.0)

    @torch.inference_mode()
    def predict_low_res(self, point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True):
        """(B x C x 256 x 256 low-res logits, B x C IoU predictions) without upsampling."""
        self._require_image()
        _check_prompt_batch(point_coords, point_labels, boxes, mask_input, self.model.sam_prompt_encoder.mask_input_size)
        points = None
        if point_coords is not None:
            points = (self.to_input_coords(point_coords), point_labels.to(self.device))
        if boxes is not None:
            corners = self.to_input_coords(boxes.reshape(-1, 2, 2))
            corner_labels = torch.tensor([[2, 3]], device=self.device).expand(corners.shape[0], -1)
            points = (corners, corner_labels) if points is None else (torch.cat([corners, points[0]], 1), torch.cat([corner_labels, points[1]], 1))
        if mask_input is not None:
            mask_input = mask_input.to(self.device, torch.float32)
        return self.predict_input_frame(points, mask_input, multimask_output)

    @torch.inference_mode()
    def predict_input_frame(self, points, mask_input=None, multimask_output=True):
        """Decoder on prompts already in model-input pixels: points = (B x N x 2, B x N labels with box
        corners as labels 2 and 3, first). Returns (low-res logits, IoU)."""
        out = self.model.decode(self.image_embed, self.features.high_res, points, mask_input, multimask_output)
        return out.masks, out.iou

    def to_input_coords(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 2) original-pixel (x, y) -> model-input pixels."""
        h, w = self.original_size
        size = self.model.image_size
        scale = torch.tensor([size / w, size / h], dtype=torch.float32, device=self.device)
        return coords.to(self.device, torch.float32) * scale

    @torch.inference_mode()
    def upscale_logits(self, low_res: torch.Tensor) -> torch.Tensor:
        """... x 256 x 256 low-res logits -> ... x H x W float32 logits (one bilinear resize, align_corners
        False, as two matrix products)."""
        self._require_image()
        low_res = low_res.to(self.device, torch.float32)
        return (self._rows @ low_res) @ self._cols_t

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("Sam2ImagePredictor: call set_image(...) before predicting")


def encode_features(model: Sam2Model, normalised: torch.Tensor, dtype: torch.dtype = torch.float32) -> FrameFeatures:
    """Image encoder (under autocast for bf16 / fp16) -> float32 FrameFeatures."""
    device = normalised.device
    with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32):
        features = model.encode_image(normalised)
    return FrameFeatures(
        features.image_embed.float(), [f.float() for f in features.high_res], features.position.float()
    )


def _tensor(value, name: str, shape: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor:
    array = np.asarray(value)
    if array.ndim != len(shape) or any(s not in (-1, a) for s, a in zip(shape, array.shape)):
        raise ValueError(f"{name}: expected shape {tuple('N' if s == -1 else s for s in shape)}, got {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected finite numbers, got dtype {array.dtype}")
    return torch.as_tensor(array, dtype=dtype, device=device)
