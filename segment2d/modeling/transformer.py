"""SAM's two-way transformer: prompt tokens and image tokens attend to each other in turn.

The cross-attentions between the 7 prompt tokens and the 4096 image tokens are computed with the
projections of the image side folded into the prompt side (see ``Attention``): the same function up to
float rounding (~1e-7 on the decoder's logits here), with about half the multiply-adds per prompt.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .common import MLPBlock


class Attention(nn.Module):
    """Multi-head attention whose internal width is ``embedding_dim / downsample_rate``."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads
        internal_dim = embedding_dim // downsample_rate
        if internal_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the internal width {internal_dim}")
        self.q_proj = nn.Linear(embedding_dim, internal_dim)
        self.k_proj = nn.Linear(embedding_dim, internal_dim)
        self.v_proj = nn.Linear(embedding_dim, internal_dim)
        self.out_proj = nn.Linear(internal_dim, embedding_dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q: Bq x Nq x C, k and v: Bk x Nk x C (a batch of 1 is shared by all). Returns B x Nq x C."""
        heads_by_tokens = self.num_heads * min(q.shape[1], k.shape[1])
        if heads_by_tokens < self.q_proj.out_features and q.shape[1] != k.shape[1]:
            # Few tokens on one side (the decoder's 7 prompt tokens against 4096 image tokens): fold the
            # projections of the many-token side into the few tokens instead of projecting every image token.
            if q.shape[1] < k.shape[1] and max(k.shape[0], v.shape[0]) > 1:
                return self._few_queries(q, k, v)
            if q.shape[1] > k.shape[1]:
                return self._few_keys(q, k, v)
        return self._projected(q, k, v)

    def _head_weights(self, linear: nn.Linear) -> torch.Tensor:
        """A projection's weight as heads x head_dim x C."""
        return linear.weight.view(self.num_heads, -1, linear.in_features)

    def _few_queries(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of few query tokens over many keys without projecting the keys and values:
        q_h . (W_k x + b_k) = (W_k^T q_h) . x + const (a per-query constant, which softmax ignores), and
        softmax-weighted sums of W_v x + b_v are W_v (weighted sums of x) + b_v (the weights sum to 1)."""
        heads, n_q = self.num_heads, q.shape[1]
        batch = max(q.shape[0], k.shape[0], v.shape[0])
        q_heads = self._split_heads(self.q_proj(q))  # Bq x heads x Nq x d
        folded = (q_heads @ self._head_weights(self.k_proj)).expand(batch, -1, -1, -1)  # B x heads x Nq x C
        scores = folded.reshape(batch, heads * n_q, -1) @ k.expand(batch, -1, -1).transpose(1, 2)
        weights = torch.softmax(scores * q_heads.shape[-1] ** -0.5, dim=-1)  # B x heads*Nq x Nk
        mixed = (weights @ v.expand(batch, -1, -1)).view(batch, heads, n_q, -1)  # B x heads x Nq x C
        out = mixed @ self._head_weights(self.v_proj).transpose(1, 2) + self.v_proj.bias.view(heads, 1, -1)
        return self.out_proj(out.transpose(1, 2).reshape(batch, n_q, -1))

    def _few_keys(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of many query tokens over few keys without projecting the queries or the output per
        query: scores are x . (W_q^T k_h) + b_q . k_h, and out_proj(sum_h p_h v_h) = sum_h p_h (W_o,h v_h) + b_o."""
        heads, n_q, n_k = self.num_heads, q.shape[1], k.shape[1]
        batch = max(q.shape[0], k.shape[0], v.shape[0])
        k_heads = self._split_heads(self.k_proj(k)).expand(batch, -1, -1, -1)  # B x heads x Nk x d
        v_heads = self._split_heads(self.v_proj(v)).expand(batch, -1, -1, -1)
        w_q = self._head_weights(self.q_proj)  # heads x d x C
        folded_keys = (w_q.transpose(1, 2) @ k_heads.transpose(2, 3)).permute(0, 2, 1, 3)  # B x C x heads x Nk
        key_bias = (self.q_proj.bias.view(heads, 1, -1) @ k_heads.transpose(2, 3)).reshape(batch, 1, heads * n_k)
        scores = self._image_scores(q, folded_keys.reshape(batch, -1, heads * n_k)) + key_bias
        scale = k_heads.shape[-1] ** -0.5
        weights = _softmax_over_few((scores * scale).view(batch, n_q, heads, n_k))
        w_out = self.out_proj.weight.view(-1, heads, k_heads.shape[-1]).permute(1, 2, 0)  # heads x d x C
        # each head's weights sum to 1, so the output bias split over the heads' values adds up to it once
        values_out = v_heads @ w_out + self.out_proj.bias / heads  # B x heads x Nk x C
        return weights.view(batch, n_q, heads * n_k) @ values_out.reshape(batch, heads * n_k, -1)

    @staticmethod
    def _image_scores(q: torch.Tensor, folded_keys: torch.Tensor) -> torch.Tensor:
        """q (Bq x N x C) @ folded_keys (B x C x M) -> B x N x M; a shared q (Bq = 1) is one matrix product
        over all B, instead of B products on a broadcast (copied) q."""
        if q.shape[0] == 1 and folded_keys.shape[0] > 1:
            batch, c, m = folded_keys.shape
            flat = q[0] @ folded_keys.permute(1, 0, 2).reshape(c, batch * m)  # N x B*M
            return flat.view(-1, batch, m).transpose(0, 1)
        return q @ folded_keys

    def _projected(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self._split_heads(self.q_proj(q))
        k = self._split_heads(self.k_proj(k))
        v = self._split_heads(self.v_proj(v))
        batch = max(q.shape[0], k.shape[0])  # a shared (batch 1) image side is broadcast
        q, k, v = (t.expand(batch, -1, -1, -1) for t in (q, k, v))
        # Fused softmax(q k^T / sqrt(d)) v: SAM's attention to ~1e-6, 2-6x faster on CPU here
        # (the explicit softmax over 8 prompt tokens is slow).
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        return self.out_proj(out.reshape(out.shape[0], out.shape[1], -1))


def _softmax_over_few(x: torch.Tensor) -> torch.Tensor:
    """Softmax over a short last axis (7 prompt tokens), in place on ``x``; ~7x faster on CPU here than
    torch.softmax, whose kernel is slow for rows this short."""
    x.sub_(x.amax(-1, keepdim=True)).exp_()
    return x.div_(x.sum(-1, keepdim=True))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image cross-attention, token MLP, image->token cross-attention."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        downsample_rate: int,
        skip_first_layer_pe: bool,
        mlp_factory: Callable[[int, int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        # SAM names the token MLP's layers lin1/lin2, SAM 2 layers.0/layers.1 (same function)
        self.mlp = mlp_factory(embedding_dim, mlp_dim) if mlp_factory else MLPBlock(embedding_dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:  # first layer: the tokens are still their own positional code
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(
        self,
        depth: int = 2,
        embedding_dim: int = 256,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        downsample_rate: int = 2,
        mlp_factory: Callable[[int, int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim, num_heads, mlp_dim, downsample_rate, skip_first_layer_pe=i == 0, mlp_factory=mlp_factory
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embedding, image_pe: B x C x h x w, or 1 x C x h x w shared by all B prompts (the
        attention layers broadcast it); point_embedding: B x N x C.
        Returns (B x N x C tokens, B x hw x C image tokens)."""
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        attn_out = self.final_attn_token_to_image(queries + point_embedding, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn_out), keys
