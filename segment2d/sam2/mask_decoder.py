"""SAM 2's mask decoder: SAM's decoder plus an object-score token (is the object visible at all?),
high-resolution skip features (strides 4 and 8) added while upscaling, sigmoid IoU predictions, and
an optional fall-back from the single-mask answer to the best multimask answer when it is unstable.
Token order into the two-way transformer: object score, IoU, 4 mask tokens, then the prompt tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..modeling.common import MLP, LayerNorm2d
from ..modeling.transformer import TwoWayTransformer


@dataclass
class DecoderOutput:
    """``masks``: B x M x 4h x 4w logits; ``iou``: B x M; ``tokens``: B x M' x C output tokens of the
    chosen masks (used for object pointers); ``object_score``: B x 1 logit that the object is visible."""

    masks: torch.Tensor
    iou: torch.Tensor
    tokens: torch.Tensor
    object_score: torch.Tensor


def two_layer_mlp(dim: int, hidden: int) -> nn.Module:
    return MLP(dim, hidden, dim, 2)


class Sam2MaskDecoder(nn.Module):
    def __init__(
        self,
        transformer_dim: int = 256,
        num_multimask_outputs: int = 3,
        dynamic_multimask_via_stability: bool = True,
        stability_delta: float = 0.05,
        stability_thresh: float = 0.98,
        use_multimask_token_for_obj_ptr: bool = True,
    ) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(2, transformer_dim, 8, 2048, mlp_factory=two_layer_mlp)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, 256, self.num_mask_tokens, 3)
        self.pred_obj_score_head = MLP(transformer_dim, transformer_dim, 1, 3)
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.stability_delta = stability_delta
        self.stability_thresh = stability_thresh
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        multimask_output: bool,
        high_res_features: list[torch.Tensor],
    ) -> DecoderOutput:
        """image_embeddings: 1 or B x C x h x w (stride 16); high_res_features: [stride-4 map after
        conv_s0, stride-8 map after conv_s1] (1 or B batch); sparse: B x N x C; dense: B x C x h x w."""
        masks, iou, mask_tokens, object_score = self.predict_masks(image_embeddings, image_pe, sparse, dense, high_res_features)
        if multimask_output:
            masks, iou = masks[:, 1:], iou[:, 1:]
        elif self.dynamic_multimask_via_stability:
            masks, iou = self._stable_single_mask(masks, iou)
        else:
            masks, iou = masks[:, :1], iou[:, :1]
        # the pointer token: the multimask tokens when several masks are returned, else the single-mask token
        tokens = mask_tokens[:, 1:] if multimask_output and self.use_multimask_token_for_obj_ptr else mask_tokens[:, :1]
        return DecoderOutput(masks, iou, tokens, object_score)

    def predict_masks(self, image_embeddings, image_pe, sparse, dense, high_res_features):
        batch = sparse.shape[0]
        output_tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens[None].expand(batch, -1, -1), sparse], dim=1)
        src = image_embeddings.expand(batch, -1, -1, -1) + dense
        _, c, h, w = src.shape
        hs, keys = self.transformer(src, image_pe, tokens)
        mask_tokens_out = hs[:, 2 : 2 + self.num_mask_tokens]
        src = keys.transpose(1, 2).reshape(batch, c, h, w)
        feat_s0, feat_s1 = high_res_features
        deconv1, norm1, act1, deconv2, act2 = self.output_upscaling
        upscaled = act1(norm1(deconv1(src) + feat_s1))
        upscaled = act2(deconv2(upscaled) + feat_s0)
        hyper_in = torch.stack([mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h * w)).view(b, -1, h, w)
        iou = torch.sigmoid(self.iou_prediction_head(hs[:, 1]))
        return masks, iou, mask_tokens_out, self.pred_obj_score_head(hs[:, 0])

    def _stable_single_mask(self, masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The single-mask answer where it is stable (IoU of its masks at logit +-delta >= thresh), else the
        multimask answer with the highest predicted IoU."""
        best = iou[:, 1:].argmax(dim=-1)
        rows = torch.arange(masks.shape[0], device=masks.device)
        best_masks, best_iou = masks[:, 1:][rows, best][:, None], iou[:, 1:][rows, best][:, None]
        single = masks[:, :1].flatten(-2)
        inner = (single > self.stability_delta).sum(-1).float()
        outer = (single > -self.stability_delta).sum(-1).float()
        stable = torch.where(outer > 0, inner / outer, 1.0) >= self.stability_thresh  # B x 1
        chosen = torch.where(stable[..., None, None], masks[:, :1], best_masks)
        return chosen, torch.where(stable, iou[:, :1], best_iou)
