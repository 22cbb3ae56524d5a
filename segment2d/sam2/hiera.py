"""Hiera, SAM 2's hierarchical image encoder (trunk): a 7x7 stride-4 patch embedding, then stages of
transformer blocks; the first block of every later stage halves the resolution by max-pooling its queries
and doubles the width. Blocks attend within windows except a few global ones. Tensors are channels-last
(B x H x W x C) inside the trunk; ``forward`` returns the last block of every stage as B x C x H x W,
finest first (strides 4, 8, 16, 32 of the input).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..modeling.common import MLP


@dataclass(frozen=True)
class HieraConfig:
    """Trunk sizes: ``stages`` blocks per stage, ``window_spec`` window side per stage (tokens),
    ``global_att_blocks`` block indices with global attention, ``pos_embed_size`` the side of the
    background positional embedding (bicubically resized to the token grid)."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    pos_embed_size: tuple[int, int] = (7, 7)

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Output widths, coarsest stage first (the order of the FPN neck's convs)."""
        return tuple(self.embed_dim * 2**i for i in reversed(range(len(self.stages))))


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """B x H x W x C -> (B*nW) x window x window x C, zero-padding H and W up to multiples of ``window``."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Inverse of ``window_partition``: back to B x H x W x C with the padding cut off."""
    hp, wp = padded
    b = windows.shape[0] // (hp * wp // window // window)
    x = windows.reshape(b, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, : size[0], : size[1]]


def pool_channels_last(x: torch.Tensor, pool: nn.Module) -> torch.Tensor:
    return pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention on a B x H x W x C grid; with ``q_pool`` the queries (and so the output)
    are max-pooled to a coarser grid while keys and values keep the full one."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_pool: nn.Module | None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_pool = q_pool
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).unbind(2)
        if self.q_pool is not None:
            q = pool_channels_last(q.reshape(b, h, w, -1), self.q_pool)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    """Pre-norm block: (windowed, optionally query-pooled) attention + GELU MLP, each with a residual.
    When the width changes, the residual is the pooled linear projection of the normalised input."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, window_size: int, q_stride: int | None) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.pool = nn.MaxPool2d(kernel_size=q_stride, stride=q_stride) if q_stride else None
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, self.pool)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, 4 * dim_out, dim_out, 2, act=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.pool is not None:
                shortcut = pool_channels_last(shortcut, self.pool)
        window = self.window_size
        if window > 0:
            x, _ = window_partition(x, window)
        x = self.attn(x)
        if window > 0:
            if self.q_stride:  # the queries were pooled inside each window
                window //= self.q_stride
            size = shortcut.shape[1:3]
            padded = (size[0] + (-size[0]) % window, size[1] + (-size[1]) % window)
            x = window_unpartition(x, window, padded, size)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    def __init__(self, config: HieraConfig) -> None:
        super().__init__()
        if len(config.stages) != len(config.window_spec):
            raise ValueError(f"Hiera: {len(config.stages)} stages but {len(config.window_spec)} window sizes")
        self.config = config
        self.stage_ends = [sum(config.stages[: i + 1]) - 1 for i in range(len(config.stages))]
        self.patch_embed = PatchEmbed(config.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.embed_dim, *config.pos_embed_size))
        window0 = config.window_spec[0]
        self.pos_embed_window = nn.Parameter(torch.zeros(1, config.embed_dim, window0, window0))
        self.blocks = nn.ModuleList(self._blocks(config))

    def _blocks(self, config: HieraConfig) -> list[MultiScaleBlock]:
        blocks, dim, heads, stage = [], config.embed_dim, config.num_heads, 0
        first_of_stage = {end + 1 for end in self.stage_ends[:-1]}
        for i in range(sum(config.stages)):
            # the first block of a stage still uses the previous stage's window (its input grid)
            window = 0 if i in config.global_att_blocks else config.window_spec[stage]
            dim_out = dim
            if i in first_of_stage:
                dim_out, heads, stage = dim * 2, heads * 2, stage + 1
            blocks.append(MultiScaleBlock(dim, dim_out, heads, window, 2 if i in first_of_stage else None))
            dim = dim_out
        return blocks

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        window = self.pos_embed_window
        pos = pos + window.tile(1, 1, h // window.shape[2], w // window.shape[3])
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self._pos_embed(*x.shape[1:3])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
