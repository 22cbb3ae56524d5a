"""Positional codes of SAM 2: 2-D sine codes of feature maps, 1-D sine codes of frame distances, and
the axial rotary code (RoPE) that the memory attention applies to image-token queries and keys."""
from __future__ import annotations

import math

import torch


def sine_code_2d(height: int, width: int, channels: int, device=None, temperature: float = 10000.0) -> torch.Tensor:
    """channels x H x W code of a feature map: (y code, x code), each sin/cos-interleaved over ``channels/2``
    frequencies of the cell index normalised to (0, 2 pi] (DETR's normalised sine code, eps 1e-6)."""
    half = channels // 2
    ys = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    xs = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    ys = ys / (ys[-1] + 1e-6) * 2 * math.pi
    xs = xs / (xs[-1] + 1e-6) * 2 * math.pi
    code_y = _interleaved_sin_cos(ys[:, None] / _frequencies(half, temperature, device))  # H x half
    code_x = _interleaved_sin_cos(xs[:, None] / _frequencies(half, temperature, device))  # W x half
    code = torch.cat([code_y[:, None, :].expand(-1, width, -1), code_x[None].expand(height, -1, -1)], dim=-1)
    return code.permute(2, 0, 1)


def _frequencies(n: int, temperature: float, device) -> torch.Tensor:
    index = torch.arange(n, dtype=torch.float32, device=device)
    return temperature ** (2 * (index // 2) / n)


def _interleaved_sin_cos(angles: torch.Tensor) -> torch.Tensor:
    """(..., n) angles -> (..., n): sin of the even columns and cos of the odd ones, interleaved."""
    return torch.stack([angles[..., 0::2].sin(), angles[..., 1::2].cos()], dim=-1).flatten(-2)


def sine_code_1d(positions: torch.Tensor, channels: int, temperature: float = 10000.0) -> torch.Tensor:
    """(N,) positions -> N x channels: [sin | cos] of ``channels/2`` frequencies (object-pointer time code)."""
    half = channels // 2
    angles = positions.to(torch.float32)[:, None] / _frequencies(half, temperature, positions.device)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def axial_rope(head_dim: int, width: int, height: int, theta: float = 10000.0, device=None) -> torch.Tensor:
    """(width*height) x head_dim/2 complex rotations for tokens in row-major order: the first half of the
    frequencies turn with the token's column, the second half with its row."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 4, device=device)[: head_dim // 4].float() / head_dim))
    index = torch.arange(width * height, dtype=torch.float32, device=device)
    cols, rows = index % width, torch.div(index, width, rounding_mode="floor")
    angles = torch.cat([torch.outer(cols, freqs), torch.outer(rows, freqs)], dim=-1)
    return torch.polar(torch.ones_like(angles), angles)


def rotate(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """B x heads x N x d real tensor, consecutive channel pairs read as complex numbers and multiplied by
    ``rotations`` (M x d/2, N a multiple of M: repeated along the tokens, one copy per memory frame)."""
    if x.shape[-2] == 0:
        return x
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    repeats = pairs.shape[-2] // rotations.shape[0]
    if repeats > 1:
        rotations = rotations.repeat(repeats, 1)
    return torch.view_as_real(pairs * rotations).flatten(-2).type_as(x)
