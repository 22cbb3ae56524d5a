"""SAM 2's memory attention: the current frame's stride-16 tokens self-attend, then cross-attend to the
memory bank (spatial memories of past/prompted frames, then object-pointer tokens), both with axial
rotary codes on the image tokens (object pointers are not rotated). Four pre-norm layers.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .position import axial_rope, rotate


class RoPEAttention(nn.Module):
    """Multi-head attention whose queries and the first ``len(keys) - n_unrotated`` keys are rotated by the
    axial RoPE of a square token grid (keys may be several grids long: the rotation repeats per grid)."""

    def __init__(self, embedding_dim: int = 256, num_heads: int = 1, kv_in_dim: int | None = None, theta: float = 10000.0) -> None:
        super().__init__()
        kv_in_dim = kv_in_dim or embedding_dim
        self.num_heads = num_heads
        self.theta = theta
        self.q_proj = nn.Linear(embedding_dim, embedding_dim)
        self.k_proj = nn.Linear(kv_in_dim, embedding_dim)
        self.v_proj = nn.Linear(kv_in_dim, embedding_dim)
        self.out_proj = nn.Linear(embedding_dim, embedding_dim)
        self._rotations: dict[tuple, torch.Tensor] = {}

    def _rope(self, n_tokens: int, head_dim: int, device) -> torch.Tensor:
        key = (n_tokens, head_dim, str(device))
        if key not in self._rotations:
            side = math.isqrt(n_tokens)
            if side * side != n_tokens:
                raise ValueError(f"RoPE attention needs a square token grid, got {n_tokens} tokens")
            self._rotations[key] = axial_rope(head_dim, side, side, self.theta, device)
        return self._rotations[key]

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_unrotated: int = 0) -> torch.Tensor:
        q, k, v = self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        rotations = self._rope(q.shape[-2], q.shape[-1], q.device)
        q = rotate(q, rotations)
        n_rotated = k.shape[-2] - n_unrotated
        k = torch.cat([rotate(k[:, :, :n_rotated], rotations), k[:, :, n_rotated:]], dim=2)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        return self.out_proj(out.reshape(out.shape[0], out.shape[1], -1))


class MemoryAttentionLayer(nn.Module):
    def __init__(self, d_model: int = 256, mem_dim: int = 64, dim_feedforward: int = 2048) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d_model)
        self.cross_attn_image = RoPEAttention(d_model, kv_in_dim=mem_dim)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor, n_pointer_tokens: int) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.self_attn(y, y, y)
        y = self.norm2(x)
        x = x + self.cross_attn_image(y, memory + memory_pos, memory, n_unrotated=n_pointer_tokens)
        return x + self.linear2(F.relu(self.linear1(self.norm3(x))))


class MemoryAttention(nn.Module):
    def __init__(self, d_model: int = 256, mem_dim: int = 64, num_layers: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MemoryAttentionLayer(d_model, mem_dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self, current: torch.Tensor, current_pos: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor, n_pointer_tokens: int
    ) -> torch.Tensor:
        """current, current_pos: B x HW x d_model; memory, memory_pos: B x M x mem_dim, its last
        ``n_pointer_tokens`` being object pointers. Returns B x HW x d_model."""
        x = current + 0.1 * current_pos
        for layer in self.layers:
            x = layer(x, memory, memory_pos, n_pointer_tokens)
        return self.norm(x)
