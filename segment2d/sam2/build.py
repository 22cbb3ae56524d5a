"""Build SAM 2.1 models by name and load the released checkpoints into them.

Released checkpoints (state dict under "model"): ``sam2.1_hiera_tiny.pt``, ``sam2.1_hiera_small.pt``,
``sam2.1_hiera_base_plus.pt``, ``sam2.1_hiera_large.pt`` (the SAM 2.0 files ``sam2_hiera_*.pt`` have
the same layout minus ``no_obj_embed_spatial`` and ``obj_ptr_tpos_proj`` and are not supported). The
model type is inferred from the Hiera trunk's width and block count; ``hiera_test`` is a small model at
256 x 256 input for tests (random weights only).
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Mapping

import torch

from ..build import CheckpointError, check_keys_and_shapes, read_state_dict
from .hiera import HieraConfig
from .model import Sam2Config, Sam2Model

SAM2_CONFIGS: dict[str, Sam2Config] = {
    "hiera_t": Sam2Config(HieraConfig(96, 1, (1, 2, 7, 2), (5, 7, 9), (8, 4, 14, 7), (7, 7))),
    "hiera_s": Sam2Config(HieraConfig(96, 1, (1, 2, 11, 2), (7, 10, 13), (8, 4, 14, 7), (7, 7))),
    "hiera_b+": Sam2Config(HieraConfig(112, 2, (2, 3, 16, 3), (12, 16, 20), (8, 4, 14, 7), (14, 14))),
    "hiera_l": Sam2Config(HieraConfig(144, 2, (2, 6, 36, 4), (23, 33, 43), (8, 4, 16, 8), (7, 7))),
    "hiera_test": Sam2Config(HieraConfig(32, 1, (1, 2, 3, 1), (5,), (8, 4, 14, 7), (7, 7)), image_size=256),
}
RELEASED_FILES = {
    "hiera_t": "sam2.1_hiera_tiny.pt",
    "hiera_s": "sam2.1_hiera_small.pt",
    "hiera_b+": "sam2.1_hiera_base_plus.pt",
    "hiera_l": "sam2.1_hiera_large.pt",
}
SAM2_STATE_KEY = "image_encoder.trunk.patch_embed.proj.weight"


def build_sam2(model_type: str = "hiera_t", **overrides) -> Sam2Model:
    """A randomly initialised SAM 2.1 of ``model_type``; ``overrides`` replace Sam2Config fields
    (e.g. ``image_size=512``). Build inside ``with torch.device("meta"):`` for a shape-only model."""
    if model_type not in SAM2_CONFIGS:
        raise ValueError(f"model_type: unknown SAM 2 type {model_type!r}; expected one of {sorted(SAM2_CONFIGS)}")
    config = dataclasses.replace(SAM2_CONFIGS[model_type], **overrides)
    return Sam2Model(config, model_type).eval()


def is_sam2_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return SAM2_STATE_KEY in state_dict and "memory_attention.norm.weight" in state_dict


def infer_sam2_type(state_dict: Mapping[str, torch.Tensor], path: Path | str = "<state_dict>") -> str:
    """The SAM2_CONFIGS name whose trunk width and stage depths match the checkpoint."""
    if not is_sam2_state_dict(state_dict):
        raise CheckpointError(f"{path}: not a SAM 2 checkpoint: no {SAM2_STATE_KEY} / memory_attention weights")
    if "obj_ptr_tpos_proj.weight" not in state_dict or "no_obj_embed_spatial" not in state_dict:
        raise CheckpointError(f"{path}: a SAM 2.0 checkpoint (no obj_ptr_tpos_proj / no_obj_embed_spatial); use a SAM 2.1 file")
    width = int(state_dict[SAM2_STATE_KEY].shape[0])
    layout = (width, _stage_depths(state_dict))
    for name, config in SAM2_CONFIGS.items():
        if (config.trunk.embed_dim, config.trunk.stages) == layout:
            return name
    known = {name: (c.trunk.embed_dim, c.trunk.stages) for name, c in SAM2_CONFIGS.items()}
    raise CheckpointError(f"{path}: unknown Hiera layout (width, blocks per stage) = {layout}; known: {known}")


def _stage_depths(state_dict: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """Blocks per stage: a stage starts at every block with a width-changing ``proj``."""
    pattern = re.compile(r"image_encoder\.trunk\.blocks\.(\d+)\.")
    n_blocks = 1 + max((int(m.group(1)) for k in state_dict if (m := pattern.match(k))), default=-1)
    starts = [0] + [i for i in range(n_blocks) if f"image_encoder.trunk.blocks.{i}.proj.weight" in state_dict]
    return tuple(b - a for a, b in zip(starts, starts[1:] + [n_blocks]))


def load_sam2(path: str | Path, model_type: str | None = None, device: str | torch.device = "cpu") -> Sam2Model:
    """Load a SAM 2.1 checkpoint (the released files keep the state dict under "model"). The type is
    inferred from the keys; a given ``model_type`` must match. Raises CheckpointError naming the file
    and the mismatching keys / shapes."""
    path = Path(path)
    state_dict = read_state_dict(path)
    inferred = infer_sam2_type(state_dict, path)
    if model_type is not None and model_type != inferred:
        raise CheckpointError(f"{path}: model_type={model_type!r} was requested but the checkpoint is {inferred!r}")
    with torch.device("meta"):
        model = build_sam2(inferred)
    check_keys_and_shapes(model, state_dict, path)
    tensors = {k: v.to(device=device, dtype=torch.float32 if v.is_floating_point() else v.dtype) for k, v in state_dict.items()}
    model.load_state_dict(tensors, strict=True, assign=True)
    return model.eval()
