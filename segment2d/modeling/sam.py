"""The SAM module: image encoder + prompt encoder + mask decoder, with SAM's input normalisation
and mask post-processing. With a ``MaskDecoderHQ`` it is HQ-SAM."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .mask_decoder_hq import MaskDecoderHQ
from .prompt_encoder import PromptEncoder
from .tiny_vit import TinyViT

PIXEL_MEAN = (123.675, 116.28, 103.53)  # RGB, 0..255
PIXEL_STD = (58.395, 57.12, 57.375)


class Sam(nn.Module):
    mask_threshold: float = 0.0

    def __init__(
        self,
        image_encoder: ImageEncoderViT | TinyViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        model_type: str = "custom",
        pixel_mean: tuple[float, float, float] = PIXEL_MEAN,
        pixel_std: tuple[float, float, float] = PIXEL_STD,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.model_type = model_type
        # Plain tuples, not buffers: the model then has no tensors outside its state_dict, so a
        # meta-device build filled with load_state_dict(assign=True) is complete.
        self.pixel_mean = tuple(pixel_mean)
        self.pixel_std = tuple(pixel_std)

    @property
    def img_size(self) -> int:
        """Side of the square model input in pixels (1024 for every released model)."""
        return self.image_encoder.img_size

    @property
    def is_hq(self) -> bool:
        """True for HQ-SAM (an HQ mask decoder, fed the encoder's early feature as well)."""
        return isinstance(self.mask_decoder, MaskDecoderHQ)

    @property
    def device(self) -> torch.device:
        return self.mask_decoder.iou_token.weight.device

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x h x w RGB in 0..255 (h, w <= img_size) -> normalised, zero-padded B x 3 x S x S float32."""
        mean = torch.tensor(self.pixel_mean, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.pixel_std, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        x = (x.to(torch.float32) - mean) / std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.img_size - w, 0, self.img_size - h))

    def postprocess_masks(
        self, masks: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
    ) -> torch.Tensor:
        """B x C x 256 x 256 logits -> B x C x H x W logits at the original image size.

        Upsample to the padded input (S x S), crop the padding to ``input_size`` (the resized image,
        (h, w)), then resize to ``original_size`` (H, W); bilinear, align_corners=False, as SAM does.
        """
        masks = F.interpolate(masks, (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)
