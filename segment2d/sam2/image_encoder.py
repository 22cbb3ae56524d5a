"""SAM 2's image encoder: the Hiera trunk and an FPN neck without output convs.

The neck projects every trunk level to ``d_model`` channels with a 1x1 conv and, for the coarse
``top_down_levels``, adds the nearest-upsampled coarser result (top-down path). The coarsest level is
dropped (``scalp``), leaving three maps at strides 4, 8 and 16 of the input, each with a sine code.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .hiera import Hiera, HieraConfig
from .position import sine_code_2d


@dataclass
class BackboneOutput:
    """Feature maps finest first (strides 4, 8, 16), B x C x H x W, and their positional codes."""

    features: list[torch.Tensor]
    position_codes: list[torch.Tensor]


class FpnNeck(nn.Module):
    def __init__(self, d_model: int, backbone_channel_list: tuple[int, ...], top_down_levels: tuple[int, ...] = (2, 3)) -> None:
        super().__init__()
        self.d_model = d_model
        self.top_down_levels = tuple(top_down_levels)
        self.convs = nn.ModuleList(_LateralConv(dim, d_model) for dim in backbone_channel_list)

    def forward(self, trunk_features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Trunk maps finest first -> (neck maps finest first, their sine codes)."""
        n = len(self.convs) - 1
        out: list[torch.Tensor] = [None] * (n + 1)  # type: ignore[list-item]
        previous = None
        for level in range(n, -1, -1):  # coarse to fine; convs[0] is for the coarsest level
            lateral = self.convs[n - level](trunk_features[level])
            if level in self.top_down_levels and previous is not None:
                top_down = F.interpolate(previous.to(torch.float32), scale_factor=2.0, mode="nearest")
                previous = lateral + top_down
            else:
                previous = lateral
            out[level] = previous
        codes = [sine_code_2d(x.shape[-2], x.shape[-1], self.d_model, x.device).to(x.dtype)[None].expand(x.shape[0], -1, -1, -1) for x in out]
        return out, codes


class _LateralConv(nn.Module):
    """A named wrapper so the parameter names are ``convs.N.conv.*`` as in the released checkpoints."""

    def __init__(self, dim: int, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, d_model, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ImageEncoder(nn.Module):
    def __init__(self, trunk_config: HieraConfig, d_model: int = 256, scalp: int = 1) -> None:
        super().__init__()
        self.trunk = Hiera(trunk_config)
        self.neck = FpnNeck(d_model, trunk_config.channel_list)
        self.scalp = scalp

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        features, codes = self.neck(self.trunk(images))
        if self.scalp > 0:
            features, codes = features[: -self.scalp], codes[: -self.scalp]
        return BackboneOutput(features, codes)
