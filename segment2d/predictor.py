"""Prompted SAM inference on one image: encode once (``set_image``), then decode masks for any
number of point / box / mask prompts (``predict``, or batched ``predict_torch``).

All prompt coordinates are pixels (x, y) in the ORIGINAL image; masks come back at its size (H, W).
With an HQ-SAM model the encoder's early feature is fused into HQ features once per image, and every
prompt gives one mask (HQ-SAM's answer, see ``MaskDecoderHQ.forward``).
"""
from __future__ import annotations

import numpy as np
import torch

from .modeling import Sam
from .modeling.upsample import MaskUpsampler
from .transforms import ResizeLongestSide

_ENCODER_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class SamPredictor:
    mask_threshold: float = 0.0

    def __init__(
        self,
        model: Sam,
        device: str | torch.device | None = None,
        encoder_dtype: torch.dtype = torch.float32,
        hq_token_only: bool = False,
    ) -> None:
        """``device``: where the model runs (it is moved there; default: where it already is).
        ``encoder_dtype``: float32, or bfloat16 / float16 to run the image encoder under autocast;
        the prompt encoder and mask decoder always run in float32.
        ``hq_token_only`` (HQ-SAM only): the HQ token's mask alone instead of HQ-SAM's default, SAM's mask
        plus the HQ token's (HQ-SAM's authors recommend it for fine, single objects)."""
        if encoder_dtype not in _ENCODER_DTYPES:
            raise ValueError(f"encoder_dtype: expected one of {_ENCODER_DTYPES}, got {encoder_dtype}")
        if hq_token_only and not model.is_hq:
            raise ValueError(f"hq_token_only needs an HQ-SAM model, got {model.model_type!r}")
        self.hq_token_only = bool(hq_token_only)
        self.device = torch.device(device) if device is not None else model.device
        self.model = model.to(self.device).eval()
        self.encoder_dtype = encoder_dtype
        self.transform = ResizeLongestSide(model.img_size)
        self.mask_threshold = float(model.mask_threshold)
        self.reset_image()

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features: torch.Tensor | None = None
        self.interm_features: torch.Tensor | None = None  # HQ-SAM: early encoder feature, 1 x h x w x C
        self.hq_features: torch.Tensor | None = None  # HQ-SAM: fused features, 1 x 32 x 4h x 4w
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None
        self.upsampler: MaskUpsampler | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Encode an H x W x 3 uint8 RGB image of any size (resized so its longest side is 1024)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image: expected H x W x 3 uint8 RGB, got shape {image.shape} dtype {image.dtype}")
        if min(image.shape[:2]) < 1:
            raise ValueError(f"image: empty image of shape {image.shape}")
        resized = self.transform.apply_image(np.ascontiguousarray(image))
        pixels = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)[None]
        self.reset_image()
        self.features, self.interm_features, self.hq_features = self._encode(pixels)
        self.original_size = (int(image.shape[0]), int(image.shape[1]))
        self.input_size = (int(resized.shape[0]), int(resized.shape[1]))
        low_res_size = self.model.prompt_encoder.mask_input_size
        self.upsampler = MaskUpsampler(low_res_size, self.model.img_size, self.input_size, self.original_size, self.device)
        self.is_image_set = True

    @torch.inference_mode()
    def _encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """1 x 3 x h x w uint8 resized image -> (1 x 256 x 64 x 64 float32 embedding, and for HQ-SAM the
        early feature and the fused HQ features, else None)."""
        x = self.model.preprocess(pixels)
        autocast = self.encoder_dtype != torch.float32
        with torch.autocast(device_type=self.device.type, dtype=self.encoder_dtype, enabled=autocast):
            if self.model.is_hq:
                features, interm = self.model.image_encoder.forward_with_interm(x)
            else:
                features, interm = self.model.image_encoder(x), None
        features = features.to(torch.float32).contiguous()
        if interm is None:
            return features, None, None
        interm = interm.to(torch.float32)
        return features, interm, self.model.mask_decoder.hq_features(features, interm)

    def get_image_embedding(self) -> torch.Tensor:
        """1 x 256 x 64 x 64 embedding of the current image."""
        self._require_image()
        return self.features

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt set: N x 2 points (x, y original pixels) with N labels (1 fg, 0 bg),
        a length-4 xyxy box, and/or a 1 x 256 x 256 low-res logit mask from an earlier call.

        Returns (C x H x W bool masks or float32 logits, C IoU predictions, C x 256 x 256 logits),
        C = 3 with multimask_output else 1 (always 1 for HQ-SAM).
        """
        self._require_image()
        coords = labels = boxes = masks = None
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        if point_coords is not None:
            coords = self._tensor(point_coords, "point_coords", (-1, 2), torch.float64)[None]
            labels = self._tensor(point_labels, "point_labels", (coords.shape[1],), torch.int64)[None]
        if box is not None:
            boxes = self._tensor(box, "box", (4,), torch.float64)[None]
        if mask_input is not None:
            masks = self._tensor(mask_input, "mask_input", (1, 256, 256), torch.float32)[None]
        out = self.predict_torch(coords, labels, boxes, masks, multimask_output, return_logits)
        return tuple(t[0].cpu().numpy() for t in out)

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prompts, one prompt set per row: B x N x 2 points (x, y ORIGINAL pixels) with B x N
        labels, B x 4 xyxy boxes (original pixels), B x 1 x 256 x 256 mask logits.

        Returns (B x C x H x W bool masks or float32 logits at the original size, B x C IoU
        predictions, B x C x 256 x 256 low-res logits).
        """
        low_res, iou = self.predict_low_res(point_coords, point_labels, boxes, mask_input, multimask_output)
        masks = self.upscale_logits(low_res)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, iou, low_res

    @torch.inference_mode()
    def predict_low_res(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``predict_torch`` without the upsampling: (B x C x 256 x 256 low-res logits, B x C IoU predictions).

        The IoU predictions do not depend on the upsampled masks, so a caller can filter on them first and
        upsample only the masks it keeps (``upscale_logits``).
        """
        self._require_image()
        _check_prompt_batch(point_coords, point_labels, boxes, mask_input, self.model.prompt_encoder.mask_input_size)
        points = None
        if point_coords is not None:
            coords = self.transform.apply_coords_torch(point_coords.to(self.device), self.original_size)
            points = (coords, point_labels.to(self.device))
        if boxes is not None:
            boxes = self.transform.apply_boxes_torch(boxes.to(self.device), self.original_size)
        if mask_input is not None:
            mask_input = mask_input.to(self.device, torch.float32)
        sparse, dense = self.model.prompt_encoder(points, boxes, mask_input)
        image_pe = self.model.prompt_encoder.get_dense_pe()
        if self.model.is_hq:
            return self.model.mask_decoder(
                self.features, image_pe, sparse, dense, multimask_output, self.hq_features, self.hq_token_only
            )
        return self.model.mask_decoder(self.features, image_pe, sparse, dense, multimask_output)

    @torch.inference_mode()
    def upscale_logits(self, low_res: torch.Tensor) -> torch.Tensor:
        """... x 256 x 256 low-res logits -> ... x H x W float32 logits at the original image size.

        ``Sam.postprocess_masks`` (upsample to the padded input, crop, resize) as two matrix products:
        equal to it up to float rounding (~1e-5), several times faster and without its 1024 x 1024 temporary.
        """
        self._require_image()
        return self.upsampler(low_res.to(self.device))

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("SamPredictor: call set_image(...) before predicting")

    def _tensor(self, value, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        array = np.asarray(value)
        if array.ndim != len(shape) or any(s not in (-1, a) for s, a in zip(shape, array.shape)):
            raise ValueError(f"{name}: expected shape {tuple('N' if s == -1 else s for s in shape)}, got {array.shape}")
        if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
            raise ValueError(f"{name}: expected finite numbers, got dtype {array.dtype}")
        return torch.as_tensor(array, dtype=dtype, device=self.device)


def _check_prompt_batch(point_coords, point_labels, boxes, mask_input, mask_size: tuple[int, int]) -> int:
    """The common batch size B of the given prompts, or ValueError naming the argument at fault."""
    if (point_coords is None) != (point_labels is None):
        raise ValueError("point_coords and point_labels must be given together")
    if point_coords is None and boxes is None and mask_input is None:
        raise ValueError("predict_torch: give at least one of point_coords, boxes, mask_input")
    sizes = {}
    if point_coords is not None:
        if point_coords.ndim != 3 or point_coords.shape[2] != 2:
            raise ValueError(f"point_coords: expected B x N x 2, got {tuple(point_coords.shape)}")
        if tuple(point_labels.shape) != tuple(point_coords.shape[:2]):
            raise ValueError(f"point_labels: expected {tuple(point_coords.shape[:2])}, got {tuple(point_labels.shape)}")
        sizes["point_coords"] = point_coords.shape[0]
    if boxes is not None:
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes: expected B x 4, got {tuple(boxes.shape)}")
        sizes["boxes"] = boxes.shape[0]
    if mask_input is not None:
        if mask_input.ndim != 4 or tuple(mask_input.shape[1:]) != (1, *mask_size):
            expected = f"B x 1 x {mask_size[0]} x {mask_size[1]}"
            raise ValueError(f"mask_input: expected {expected}, got {tuple(mask_input.shape)}")
        sizes["mask_input"] = mask_input.shape[0]
    if len(set(sizes.values())) > 1:
        raise ValueError(f"prompt batch sizes differ: {sizes}")
    return next(iter(sizes.values()))
