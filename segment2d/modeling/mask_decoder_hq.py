"""HQ-SAM's mask decoder: SAM's decoder plus one learned HQ output token whose mask is read from
high-quality features, a fusion of the early ViT feature (fine detail) and the final image embedding
(global context) with the decoder's own upscaled features.

Only the HQ parts are new (``hf_token``, ``hf_mlp``, ``compress_vit_feat``, ``embedding_encoder``,
``embedding_maskfeature``, named as in the released ``sam_hq_vit_*.pth``); SAM's weights are reused as they are.
"""
from __future__ import annotations

import torch
from torch import nn

from .common import MLP, LayerNorm2d
from .mask_decoder import MaskDecoder, apply_hypernetwork
from .transformer import TwoWayTransformer


class MaskDecoderHQ(MaskDecoder):
    def __init__(
        self,
        transformer: TwoWayTransformer,
        transformer_dim: int = 256,
        vit_dim: int = 1024,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        """``vit_dim``: channels of the image encoder's early feature (the ViT width; 160 for TinyViT-5M)."""
        super().__init__(transformer, transformer_dim, num_multimask_outputs, iou_head_depth, iou_head_hidden_dim)
        self.vit_dim = vit_dim
        self.hf_token = nn.Embedding(1, transformer_dim)
        self.hf_mlp = MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
        self.compress_vit_feat = nn.Sequential(
            nn.ConvTranspose2d(vit_dim, transformer_dim, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 8, kernel_size=2, stride=2),
        )
        self.embedding_encoder = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
        )
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(transformer_dim // 8, transformer_dim // 4, kernel_size=3, padding=1),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.Conv2d(transformer_dim // 4, transformer_dim // 8, kernel_size=3, padding=1),
        )

    def hq_features(self, image_embeddings: torch.Tensor, interm_embeddings: torch.Tensor) -> torch.Tensor:
        """The global-local fusion: B x 256 x h x w embedding and B x h x w x vit_dim early ViT tokens ->
        B x 32 x 4h x 4w. It depends on the image only, so a predictor computes it once per image."""
        early = interm_embeddings.permute(0, 3, 1, 2)
        return self.embedding_encoder(image_embeddings) + self.compress_vit_feat(early)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        hq_features: torch.Tensor | None = None,
        hq_token_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """B x 1 x 4h x 4w mask logits and B x 1 IoU predictions.

        The SAM part is the single-mask answer, or with ``multimask_output`` the multimask answer with the
        highest predicted IoU (HQ-SAM's choice); the HQ token's logits are added to it, or are the whole answer
        with ``hq_token_only``. ``hq_features``: ``self.hq_features(...)`` of the image (required).
        """
        if hq_features is None:
            raise ValueError("MaskDecoderHQ needs hq_features (MaskDecoderHQ.hq_features(embedding, interm_embeddings))")
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, hq_features
        )
        if multimask_output:
            iou_pred, best = torch.max(iou_pred[:, 1:], dim=1, keepdim=True)
            sam_masks = torch.take_along_dim(masks[:, 1:-1], best[:, :, None, None], dim=1)
        else:
            iou_pred, sam_masks = iou_pred[:, :1], masks[:, :1]
        hq_masks = masks[:, -1:]
        return (hq_masks if hq_token_only else sam_masks + hq_masks), iou_pred

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        hq_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's 4 masks then the HQ mask (B x 5 x 4h x 4w) and SAM's 4 IoU predictions (B x 4)."""
        if hq_features is None:
            raise ValueError("MaskDecoderHQ.predict_masks needs hq_features")
        hs, upscaled = self.run_transformer(image_embeddings, image_pe, sparse, dense)
        mask_tokens_out = hs[:, 1 : 2 + self.num_mask_tokens]
        hyper_sam = torch.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        hyper_hq = self.hf_mlp(mask_tokens_out[:, -1])[:, None]
        hq_maps = self.embedding_maskfeature(upscaled) + hq_features
        masks = torch.cat([apply_hypernetwork(hyper_sam, upscaled), apply_hypernetwork(hyper_hq, hq_maps)], dim=1)
        return masks, self.iou_prediction_head(hs[:, 0])

    def output_tokens(self) -> torch.Tensor:
        """SAM's output tokens, then the HQ output token."""
        return torch.cat([super().output_tokens(), self.hf_token.weight], dim=0)
