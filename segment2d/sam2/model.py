"""The SAM 2.1 model: image encoder, SAM-style prompt encoder and mask decoder on stride-16 features
with high-resolution skips, and the video parts (memory encoder, memory attention, object pointers).

Module and parameter names match the released ``sam2.1_hiera_*.pt`` checkpoints (under "model"), so they
load with ``strict=True``. The image predictor and video predictor (``predictor.py``, ``video.py``) drive
it; this module holds the per-frame steps. Coordinates are pixels of the square model input
(``image_size`` x ``image_size``), images are RGB normalised with ImageNet mean/std after resizing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ..modeling.common import MLP
from ..modeling.prompt_encoder import PromptEncoder
from .hiera import HieraConfig
from .image_encoder import ImageEncoder
from .mask_decoder import Sam2MaskDecoder
from .memory_attention import MemoryAttention
from .memory_encoder import MemoryEncoder

NO_OBJECT_SCORE = -1024.0  # mask logit of an object predicted absent
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Sam2Config:
    """Everything that shapes a SAM 2.1 model; the released sizes are in ``build.SAM2_CONFIGS``.
    ``image_size``: side of the square input (1024 released); ``num_maskmem``: memory frames per object
    (1 prompted + 6 previous); ``max_obj_ptrs``: object pointers attended (SAM 2.1: 16)."""

    trunk: HieraConfig = field(default_factory=HieraConfig)
    image_size: int = 1024
    d_model: int = 256
    mem_dim: int = 64
    num_maskmem: int = 7
    max_obj_ptrs: int = 16
    memory_attention_layers: int = 4
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0

    @property
    def embedding_size(self) -> int:
        return self.image_size // 16


@dataclass
class FrameFeatures:
    """One image's encoder output for the heads: ``image_embed`` B x C x h x w (stride 16, before any
    memory), ``high_res`` [stride-4 B x C/8 map, stride-8 B x C/4 map] (already through conv_s0/s1),
    ``position`` the stride-16 sine code B x C x h x w."""

    image_embed: torch.Tensor
    high_res: list[torch.Tensor]
    position: torch.Tensor


@dataclass
class HeadOutput:
    """What the prompt encoder + mask decoder say about B objects on one frame.
    ``multimask_logits`` B x M x 4h x 4w, ``iou`` B x M; ``low_res`` / ``high_res``: the chosen mask's
    logits (B x 1 x 4h x 4w and B x 1 x S x S); ``obj_ptr`` B x C; ``object_score`` B x 1 logit."""

    multimask_logits: torch.Tensor
    iou: torch.Tensor
    low_res: torch.Tensor
    high_res: torch.Tensor
    obj_ptr: torch.Tensor
    object_score: torch.Tensor


class Sam2Model(nn.Module):
    def __init__(self, config: Sam2Config, model_type: str = "custom") -> None:
        super().__init__()
        self.config = config
        self.model_type = model_type
        d, grid = config.d_model, config.embedding_size
        self.image_encoder = ImageEncoder(config.trunk, d)
        self.memory_attention = MemoryAttention(d, config.mem_dim, config.memory_attention_layers)
        self.memory_encoder = MemoryEncoder(d, config.mem_dim)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, config.mem_dim))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, d))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, d))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, d))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, config.mem_dim))
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.sam_prompt_encoder = PromptEncoder(d, (grid, grid), (config.image_size, config.image_size), mask_in_chans=16)
        self.sam_mask_decoder = Sam2MaskDecoder(d)
        self.obj_ptr_proj = MLP(d, d, d, 3)
        self.obj_ptr_tpos_proj = nn.Linear(d, config.mem_dim)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W RGB in 0..255 -> B x 3 x S x S: squashed to the square input (bilinear,
        antialiased, as the official predictor) and normalised with ImageNet mean/std."""
        x = image.to(torch.float32) / 255.0
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode_image(self, images: torch.Tensor) -> FrameFeatures:
        """Normalised B x 3 x S x S input -> encoder features (no memory conditioning yet)."""
        out = self.image_encoder(images)
        high_res = [self.sam_mask_decoder.conv_s0(out.features[0]), self.sam_mask_decoder.conv_s1(out.features[1])]
        return FrameFeatures(out.features[2], high_res, out.position_codes[2])

    def image_only_embedding(self, features: FrameFeatures) -> torch.Tensor:
        """The stride-16 embedding for single-image use: the learned no-memory embedding added."""
        return features.image_embed + self.no_mem_embed.view(1, -1, 1, 1)

    def decode(
        self,
        image_embed: torch.Tensor,
        high_res: list[torch.Tensor],
        points: tuple[torch.Tensor, torch.Tensor] | None,
        mask_prompt: torch.Tensor | None,
        multimask: bool,
    ):
        """Prompt encoder + decoder. points: (B x N x 2 input pixels, B x N labels 0/1, 2/3 box corners,
        -1 padding); mask_prompt: B x 1 x 4h x 4w logits or None."""
        sparse, dense = self.sam_prompt_encoder(points, None, mask_prompt)
        return self.sam_mask_decoder(image_embed, self.sam_prompt_encoder.get_dense_pe(), sparse, dense, multimask, high_res)

    def prompt_heads(
        self,
        image_embed: torch.Tensor,
        high_res: list[torch.Tensor],
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask_inputs: torch.Tensor | None = None,
        multimask: bool = False,
    ) -> HeadOutput:
        """The tracking head (official ``_forward_sam_heads``): absent objects get NO_OBJECT_SCORE logits
        and the no-object pointer; with several masks the one with the best predicted IoU is chosen."""
        batch = image_embed.shape[0]
        if points is None:  # no prompt: one padding point, as the official model is trained
            points = (torch.zeros(batch, 1, 2, device=image_embed.device), -torch.ones(batch, 1, dtype=torch.int32, device=image_embed.device))
        mask_prompt = None
        if mask_inputs is not None:
            mask_prompt = mask_inputs.float()
            if mask_prompt.shape[-2:] != self.sam_prompt_encoder.mask_input_size:
                mask_prompt = F.interpolate(mask_prompt, size=self.sam_prompt_encoder.mask_input_size, mode="bilinear", align_corners=False, antialias=True)
        out = self.decode(image_embed, high_res, points, mask_prompt, multimask)
        present = out.object_score > 0
        logits = torch.where(present[:, None, None], out.masks, NO_OBJECT_SCORE).float()
        high = F.interpolate(logits, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        token = out.tokens[:, 0]
        if multimask:
            best = out.iou.argmax(dim=-1)
            rows = torch.arange(batch, device=logits.device)
            low_res, high_res_mask = logits[rows, best][:, None], high[rows, best][:, None]
            if out.tokens.shape[1] > 1:
                token = out.tokens[rows, best]
        else:
            low_res, high_res_mask = logits, high
        present_f = present.float()
        obj_ptr = present_f * self.obj_ptr_proj(token) + (1 - present_f) * self.no_obj_ptr
        return HeadOutput(logits, out.iou, low_res, high_res_mask, obj_ptr, out.object_score)

    def mask_as_output(self, image_embed: torch.Tensor, high_res: list[torch.Tensor], masks: torch.Tensor) -> HeadOutput:
        """A given B x 1 x S x S mask taken as the output (logits +-10); the decoder only makes its pointer."""
        masks = masks.float()
        high = masks * 20.0 - 10.0
        low = F.interpolate(high, size=(high.shape[-2] // 4, high.shape[-1] // 4), mode="bilinear", align_corners=False, antialias=True)
        pointer = self.prompt_heads(image_embed, high_res, mask_inputs=self.mask_downsample(masks)).obj_ptr
        present = (masks.flatten(1) > 0).any(dim=1, keepdim=True).float()
        obj_ptr = present * pointer + (1 - present) * self.no_obj_ptr
        iou = masks.new_ones(masks.shape[0], 1)
        return HeadOutput(low, iou, low, high, obj_ptr, present * 20.0 - 10.0)

    def encode_memory(
        self, image_embed: torch.Tensor, high_res_masks: torch.Tensor, object_score: torch.Tensor, binarize: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A frame's memory from its stride-16 features (before memory conditioning) and its output mask
        logits at S x S: (B x mem_dim x h x w features, their sine code). Absent objects get the learned
        no-object embedding added."""
        prob = (high_res_masks > 0).float() if binarize else torch.sigmoid(high_res_masks)
        mask_for_mem = prob * self.config.sigmoid_scale_for_mem_enc + self.config.sigmoid_bias_for_mem_enc
        features, code = self.memory_encoder(image_embed, mask_for_mem)
        absent = (object_score <= 0).float()[..., None, None]
        return features + absent * self.no_obj_embed_spatial[..., None, None], code

    def condition_on_memory(
        self, features: FrameFeatures, memory: torch.Tensor, memory_pos: torch.Tensor, n_pointer_tokens: int
    ) -> torch.Tensor:
        """Stride-16 features (1 or B x C x h x w) attended to the memory bank (B x M x mem_dim) ->
        B x C x h x w."""
        batch = memory.shape[0]
        _, c, h, w = features.image_embed.shape
        current = features.image_embed.flatten(2).transpose(1, 2).expand(batch, -1, -1)
        current_pos = features.position.flatten(2).transpose(1, 2).expand(batch, -1, -1)
        out = self.memory_attention(current, current_pos, memory, memory_pos, n_pointer_tokens)
        return out.transpose(1, 2).reshape(batch, c, h, w)
