"""SAM 2's memory encoder: a frame's stride-16 features fused with its (scaled-sigmoid) output mask,
compressed to ``out_dim`` channels. These per-frame memories are what later frames attend to."""
from __future__ import annotations

import torch
from torch import nn

from ..modeling.common import LayerNorm2d
from .position import sine_code_2d


class MaskDownSampler(nn.Module):
    """1024 x 1024 mask -> 64 x 64 x embed_dim: four stride-2 3x3 convs (x4 channels each), LayerNorm2d,
    GELU, then a 1x1 projection."""

    def __init__(self, embed_dim: int = 256, total_stride: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for _ in range(total_stride.bit_length() - 1):
            layers += [nn.Conv2d(channels, channels * 4, kernel_size=3, stride=2, padding=1), LayerNorm2d(channels * 4), nn.GELU()]
            channels *= 4
        layers.append(nn.Conv2d(channels, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depth-wise 7x7 conv, LayerNorm, pointwise MLP (x4, GELU), layer scale, residual."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    def __init__(self, dim: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    def __init__(self, in_dim: int = 256, out_dim: int = 64) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)
        self.out_dim = out_dim

    def forward(self, pix_feat: torch.Tensor, mask_for_mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pix_feat: B x in_dim x h x w; mask_for_mem: B x 1 x 16h x 16w (already scaled, no sigmoid here).
        Returns (B x out_dim x h x w memory, its sine code)."""
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(mask_for_mem)
        x = self.out_proj(self.fuser(x))
        code = sine_code_2d(x.shape[-2], x.shape[-1], self.out_dim, x.device).to(x.dtype)
        return x, code[None].expand(x.shape[0], -1, -1, -1)
