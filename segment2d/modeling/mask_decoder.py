"""SAM's mask decoder: 1 IoU token + 4 mask tokens run through the two-way transformer; the
mask tokens become per-mask hypernetwork weights over a 4x-upscaled image embedding.

Mask 0 is the single-mask answer; masks 1-3 are the multimask (ambiguity-aware) answers.
"""
from __future__ import annotations

import torch
from torch import nn

from .common import MLP, LayerNorm2d
from .transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    def __init__(
        self,
        transformer: TwoWayTransformer,
        transformer_dim: int = 256,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer = transformer
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """B x C x 4h x 4w mask logits and B x C IoU predictions (C = 3 if multimask else 1).

        image_embeddings: 1 x 256 x h x w (shared by all B prompts) or B x 256 x h x w.
        """
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, chosen], iou_pred[:, chosen]

    def predict_masks(
        self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All 4 masks (B x 4 x 4h x 4w) and IoU predictions (B x 4)."""
        hs, upscaled = self.run_transformer(image_embeddings, image_pe, sparse, dense)
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens]
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        return apply_hypernetwork(hyper_in, upscaled), self.iou_prediction_head(hs[:, 0])

    def output_tokens(self) -> torch.Tensor:
        """The learned output tokens put before the prompt tokens: the IoU token, then the mask tokens."""
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)

    def run_transformer(
        self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B x T x C output + prompt tokens after the two-way transformer, B x C/8 x 4h x 4w upscaled image
        features; T = the output tokens, then the prompt tokens)."""
        batch = sparse.shape[0]
        tokens = torch.cat([self.output_tokens()[None].expand(batch, -1, -1), sparse], dim=1)
        if image_embeddings.shape[0] == 1 and _is_batch_invariant(dense):
            # Every prompt sees the same image tokens until the first image->token update: pass one
            # copy and let the attention layers broadcast (saves 3 of the decoder's 10 big projections).
            src = image_embeddings + dense[:1]
        else:
            src = image_embeddings.expand(batch, -1, -1, -1) + dense
        _, c, h, w = src.shape

        hs, keys = self.transformer(src, image_pe, tokens)
        # The image tokens (B, h*w, C) already are a channels-last B x C x h x w map: upscale it as one (no copy)
        # and read the result channels-last too, so the hypernetwork product needs no transposed copy either.
        return hs, self.output_upscaling(keys.reshape(batch, h, w, c).permute(0, 3, 1, 2))


def apply_hypernetwork(hyper_in: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """B x K x c per-mask weights . B x c x H x W features -> B x K x H x W mask logits."""
    b, c, h, w = features.shape
    pixels = features.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view when features are channels-last
    return (hyper_in @ pixels.transpose(1, 2)).view(b, -1, h, w)


def _is_batch_invariant(x: torch.Tensor) -> bool:
    """True when all rows of x are one row (batch of 1, or expanded with stride 0, as the
    prompt encoder's no-mask embedding is)."""
    return x.shape[0] == 1 or x.stride(0) == 0
