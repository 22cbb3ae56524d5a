"""MobileSAM's image encoder: TinyViT-5M (conv stage + three windowed-attention stages) with SAM's neck.

Input: B x 3 x 1024 x 1024 normalised, padded image. Output: B x 256 x 64 x 64 image embedding.
Module names follow the released MobileSAM checkpoint (``patch_embed.seq``, ``layers.i.blocks.j``,
``c``/``bn`` conv-batchnorm pairs, and the unused ImageNet ``norm_head``/``head`` it still carries).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .common import LayerNorm2d


class ConvBN(nn.Sequential):
    """Conv2d without bias followed by BatchNorm2d (named ``c`` and ``bn`` as in the checkpoint)."""

    def __init__(self, in_chans: int, out_chans: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_chans, out_chans, kernel, stride, kernel // 2, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_chans))


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 conv-BN layers: B x 3 x S x S -> B x C x S/4 x S/4."""

    def __init__(self, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, 3, 2), nn.GELU(), ConvBN(embed_dim // 2, embed_dim, 3, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU (B x C x H x W)."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """B x C x H x W (or B x HW x C at ``resolution``) -> B x H'W' x out_dim tokens."""

    def __init__(self, resolution: tuple[int, int], dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = tokens_to_map(x, self.resolution)
        x = self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks on B x C x H x W, then patch merging to tokens."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, downsample: PatchMerging) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class Mlp(nn.Module):
    """Pre-norm MLP on tokens: LayerNorm -> fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """Pre-norm window self-attention with a learned bias per head and per |dy|, |dx| offset."""

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.window = window
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))

    def bias_table(self) -> torch.Tensor:
        """heads x N x N biases; offset (|dy|, |dx|) is stored at column |dy| * window + |dx|."""
        idx = torch.arange(self.window * self.window, device=self.attention_biases.device)
        row, col = idx // self.window, idx % self.window
        offsets = (row[:, None] - row[None, :]).abs() * self.window + (col[:, None] - col[None, :]).abs()
        return self.attention_biases[:, offsets]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.head_dim, dim=3)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.bias_table()
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, -1)
        return self.proj(x)


class TinyViTBlock(nn.Module):
    """Window attention (zero-padded windows), 3x3 depthwise conv-BN, MLP; on B x HW x C tokens."""

    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.attn = Attention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, 3, groups=dim)

    def windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), win = self.resolution, self.window
        b, _, c = x.shape
        pad_b, pad_r = (-h) % win, (-w) % win
        grid = F.pad(x.view(b, h, w, c), (0, 0, 0, pad_r, 0, pad_b))
        nh, nw = (h + pad_b) // win, (w + pad_r) // win
        windows = grid.view(b, nh, win, nw, win, c).transpose(2, 3).reshape(b * nh * nw, win * win, c)
        out = self.attn(windows).view(b, nh, nw, win, win, c).transpose(2, 3).reshape(b, nh * win, nw * win, c)
        return out[:, :h, :w].reshape(b, h * w, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.windowed_attention(x)
        x = self.local_conv(tokens_to_map(x, self.resolution)).flatten(2).transpose(1, 2)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """Attention stage: TinyViT blocks at a fixed token grid, then optional patch merging."""

    def __init__(self, blocks: list[TinyViTBlock], downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """TinyViT backbone as configured by MobileSAM; every merge halves the grid except the last,
    which keeps it (MobileSAM's change, so the final stage runs at img_size / 16)."""

    def __init__(
        self,
        img_size: int = 1024,
        embed_dims: tuple[int, ...] = (64, 128, 160, 320),
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (2, 4, 5, 10),
        window_sizes: tuple[int, ...] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        num_classes: int = 1000,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_embed = PatchEmbed(embed_dims[0])
        strides = [2] * (len(embed_dims) - 2) + [1]
        side = img_size // 4
        self.layers = nn.ModuleList()
        for i, dim in enumerate(embed_dims):
            res = (side, side)
            merge = None
            if i < len(embed_dims) - 1:
                merge = PatchMerging(res, dim, embed_dims[i + 1], strides[i])
                side //= strides[i]
                if i == 1:  # HQ-SAM's early feature: the second stage's merged output
                    self.interm_resolution, self.interm_channels = (side, side), embed_dims[2]
            if i == 0:
                self.layers.append(ConvLayer(dim, depths[0], mbconv_expand_ratio, merge))
            else:
                blocks = [TinyViTBlock(dim, res, num_heads[i], window_sizes[i], mlp_ratio) for _ in range(depths[i])]
                self.layers.append(BasicLayer(blocks, merge))
        self.out_resolution = (side, side)
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(tokens_to_map(x, self.out_resolution))

    def forward_with_interm(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B x 256 x h x w embedding, B x h x w x C tokens after the second stage, HQ-SAM's early feature)."""
        x = self.patch_embed(x)
        interm = None
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == 1:
                interm = x.reshape(x.shape[0], *self.interm_resolution, x.shape[-1])
        return self.neck(tokens_to_map(x, self.out_resolution)), interm


def tokens_to_map(x: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
    """B x HW x C tokens -> B x C x H x W map."""
    b, _, c = x.shape
    return x.transpose(1, 2).reshape(b, c, *resolution)
