"""SAM's mask post-processing (256 x 256 logits -> original image size) as two small matrix products.

``Sam.postprocess_masks`` upsamples bilinearly to the padded model input (S x S, S = 1024), crops the
padding, and resizes bilinearly to the original (H, W). Every step is linear and separable, so the whole
chain is ``R_y @ logits @ R_x^T`` with an H x 256 and a W x 256 matrix: the same values up to float
rounding (the weights are composed in float64), without the S x S intermediate (4 MB a mask). At 480 x 640
that is ~110 M multiply-adds a mask, done by BLAS, instead of two memory-bound interpolation passes.
"""
from __future__ import annotations

import torch


def bilinear_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """(out_size, in_size) float64 matrix of 1-D bilinear resizing with ``align_corners=False``.

    Same sampling as ``F.interpolate(..., mode='bilinear', align_corners=False)`` given a target size
    (scale in/out, source coordinate clamped at 0, last index repeated at the far edge).
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"bilinear_matrix: sizes must be >= 1, got in_size={in_size}, out_size={out_size}")
    # source coordinates and weights in float32 exactly as PyTorch's CPU kernel computes them, so the
    # only difference left is the order of accumulation
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    src = ((torch.arange(out_size, dtype=torch.float32) + 0.5) * scale - 0.5).clamp(min=0.0)
    lower = src.floor().to(torch.int64).clamp(max=in_size - 1)
    upper = (lower + 1).clamp(max=in_size - 1)
    frac32 = (src - lower.to(torch.float32)).clamp(0.0, 1.0)
    frac, keep = frac32.to(torch.float64), (1.0 - frac32).to(torch.float64)
    rows = torch.arange(out_size)
    matrix = torch.zeros((out_size, in_size), dtype=torch.float64)
    matrix.index_put_((rows, lower), keep, accumulate=True)
    matrix.index_put_((rows, upper), frac, accumulate=True)
    return matrix


def postprocess_matrix(low_res: int, padded: int, valid: int, original: int) -> torch.Tensor:
    """(original, low_res) float64: upsample ``low_res`` -> ``padded``, keep the first ``valid``, resize to ``original``."""
    if not 1 <= valid <= padded:
        raise ValueError(f"postprocess_matrix: valid size {valid} must be in [1, padded size {padded}]")
    return bilinear_matrix(valid, original) @ bilinear_matrix(low_res, padded)[:valid]


class MaskUpsampler:
    """Low-res SAM logits (..., h, w) -> logits at the original image size (..., H, W), float32.

    ``low_res_size``: (h, w) of the decoder output (256, 256); ``padded_size``: the model input side S;
    ``input_size``: (h, w) of the resized image inside the padded input; ``original_size``: (H, W) pixels.
    """

    def __init__(
        self,
        low_res_size: tuple[int, int],
        padded_size: int,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
        device: torch.device | str = "cpu",
    ) -> None:
        self.original_size = (int(original_size[0]), int(original_size[1]))
        rows = postprocess_matrix(int(low_res_size[0]), padded_size, int(input_size[0]), self.original_size[0])
        cols = postprocess_matrix(int(low_res_size[1]), padded_size, int(input_size[1]), self.original_size[1])
        self.rows = rows.to(device=device, dtype=torch.float32)
        self.cols_t = cols.T.contiguous().to(device=device, dtype=torch.float32)

    def __call__(self, low_res: torch.Tensor) -> torch.Tensor:
        low_res = low_res.to(torch.float32)
        # rows first: H x h x w then x W costs less than the other order when H <= W (the usual landscape frame)
        if self.original_size[0] <= self.original_size[1]:
            return (self.rows @ low_res) @ self.cols_t
        return self.rows @ (low_res @ self.cols_t)
