"""Build SAM / MobileSAM / HQ-SAM models by name and load released checkpoints into them.

Model types: ``vit_b``, ``vit_l``, ``vit_h`` (SAM), ``vit_t`` (MobileSAM, TinyViT-5M encoder) and
``vit_test`` (a tiny ViT: embed 64, depth 2, heads 2, global attention at block 1, used by tests); each
with the suffix ``_hq`` is its HQ-SAM (``vit_b_hq`` is ``sam_hq_vit_b.pth``, ``vit_t_hq`` is ``sam_hq_vit_tiny.pth``).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from .modeling import ImageEncoderViT, MaskDecoder, MaskDecoderHQ, PromptEncoder, Sam, TinyViT, TwoWayTransformer

PROMPT_EMBED_DIM = 256
HQ_SUFFIX = "_hq"
HQ_KEY = "mask_decoder.hf_token.weight"  # present in every HQ-SAM checkpoint, absent from SAM's


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or is not a SAM-family state dict."""


@dataclass(frozen=True)
class ViTConfig:
    """SAM ViT image encoder: sizes in tokens/channels, image side ``img_size`` in pixels."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    img_size: int = 1024
    patch_size: int = 16
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class TinyViTConfig:
    """MobileSAM's TinyViT encoder (the released one is TinyViT-5M)."""

    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    img_size: int = 1024
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0


EncoderConfig = ViTConfig | TinyViTConfig

MODEL_CONFIGS: dict[str, EncoderConfig] = {
    "vit_h": ViTConfig(1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": ViTConfig(1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": ViTConfig(768, 12, 12, (2, 5, 8, 11)),
    "vit_t": TinyViTConfig(),
    "vit_test": ViTConfig(64, 2, 2, (1,)),
}


def model_types() -> list[str]:
    """Every name ``build_sam`` accepts: the SAM / MobileSAM presets and their HQ-SAM variants."""
    return sorted(MODEL_CONFIGS) + sorted(name + HQ_SUFFIX for name in MODEL_CONFIGS)


def split_hq(model_type: str) -> tuple[str, bool]:
    """('vit_b', True) for 'vit_b_hq'; (model_type, False) otherwise."""
    if model_type.endswith(HQ_SUFFIX):
        return model_type[: -len(HQ_SUFFIX)], True
    return model_type, False


def build_sam(model_type: str, **overrides) -> Sam:
    """A randomly initialised SAM of ``model_type`` (HQ-SAM for a ``_hq`` name); ``overrides`` replace
    encoder config fields (e.g. ``build_sam("vit_b", depth=2)``). Build inside ``with torch.device("meta"):``
    for a shape-only model. Returned in eval mode."""
    base_type, hq = split_hq(model_type)
    if base_type not in MODEL_CONFIGS:
        raise ValueError(f"model_type: unknown {model_type!r}; expected one of {model_types()}")
    base = MODEL_CONFIGS[base_type]
    unknown = set(overrides) - {f.name for f in dataclasses.fields(base)}
    if unknown:
        raise ValueError(f"build_sam({model_type!r}): unknown encoder option(s) {sorted(unknown)}")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    config = dataclasses.replace(base, **overrides)
    return build_sam_from_config(config, _preset_name(config, hq), hq=hq)


def build_sam_from_config(config: EncoderConfig, model_type: str = "custom", hq: bool = False) -> Sam:
    """A randomly initialised SAM with the given encoder and SAM's released prompt encoder and decoder
    (HQ-SAM's decoder, sized to the encoder's early feature, with ``hq``)."""
    if isinstance(config, TinyViTConfig):
        encoder = TinyViT(
            config.img_size, config.embed_dims, config.depths, config.num_heads, config.window_sizes,
            config.mlp_ratio, config.mbconv_expand_ratio, out_chans=PROMPT_EMBED_DIM,
        )
        grid = config.img_size // 16
    else:
        encoder = ImageEncoderViT(
            config.img_size, config.patch_size, config.embed_dim, config.depth, config.num_heads,
            config.mlp_ratio, PROMPT_EMBED_DIM, config.window_size, tuple(config.global_attn_indexes),
        )
        grid = config.img_size // config.patch_size
    prompt_encoder = PromptEncoder(PROMPT_EMBED_DIM, (grid, grid), (config.img_size, config.img_size), mask_in_chans=16)
    transformer = TwoWayTransformer(2, PROMPT_EMBED_DIM, 8, 2048)
    if hq:
        if isinstance(config, ViTConfig) and not config.global_attn_indexes:
            raise ValueError("HQ-SAM needs a ViT with at least one global-attention block (its early feature)")
        decoder = MaskDecoderHQ(transformer, PROMPT_EMBED_DIM, vit_dim=encoder.interm_channels)
    else:
        decoder = MaskDecoder(transformer, PROMPT_EMBED_DIM)
    return Sam(encoder, prompt_encoder, decoder, model_type=model_type).eval()


def load_sam(path: str | Path, model_type: str | None = None, device: str | torch.device = "cpu") -> Sam:
    """Load a SAM / MobileSAM / HQ-SAM checkpoint (raw state_dict, or one wrapped under 'model' / 'state_dict').

    The model type is inferred from the keys and shapes (HQ-SAM from its HQ decoder weights); if
    ``model_type`` is given it must match.
    Weights are cast to float32 and placed on ``device``. Raises CheckpointError naming the file.
    """
    path = Path(path)
    state_dict = read_state_dict(path)
    inferred, config = infer_model_config(state_dict, path)
    if model_type is not None and model_type != inferred:
        raise CheckpointError(f"{path}: model_type={model_type!r} was requested but the checkpoint is {inferred!r}")
    with torch.device("meta"):
        model = build_sam_from_config(config, inferred, hq=split_hq(inferred)[1])
    check_keys_and_shapes(model, state_dict, path)
    tensors = {
        k: v.to(device=device, dtype=torch.float32 if v.is_floating_point() else v.dtype) for k, v in state_dict.items()
    }
    model.load_state_dict(tensors, strict=True, assign=True)
    return model.eval()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict stored in ``path`` (unwrapping 'model' / 'state_dict'), or CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for foreign files
        reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({reason})") from exc
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not hold a state_dict of tensors (got {type(obj).__name__})")
    return dict(obj)


def infer_model_config(
    state_dict: Mapping[str, torch.Tensor], path: Path | str = "<state_dict>"
) -> tuple[str, EncoderConfig]:
    """(model type, encoder config) read from the checkpoint's keys and shapes; type is a
    MODEL_CONFIGS name when the config matches one, else 'custom', with the suffix '_hq' for HQ-SAM."""
    hq = HQ_KEY in state_dict
    if "image_encoder.patch_embed.seq.0.c.weight" in state_dict:
        return _preset_name(MODEL_CONFIGS["vit_t"], hq), MODEL_CONFIGS["vit_t"]
    if "image_encoder.patch_embed.proj.weight" not in state_dict:
        raise CheckpointError(
            f"{path}: not a SAM checkpoint: no image_encoder.patch_embed weights (first keys: {list(state_dict)[:5]})"
        )
    config = _infer_vit_config(state_dict, path)
    return _preset_name(config, hq), config


def _infer_vit_config(sd: Mapping[str, torch.Tensor], path: Path | str) -> ViTConfig:
    proj = sd["image_encoder.patch_embed.proj.weight"]
    embed_dim, patch = int(proj.shape[0]), int(proj.shape[-1])
    pattern = re.compile(r"image_encoder\.blocks\.(\d+)\.attn\.rel_pos_h$")
    rel_pos = {int(m.group(1)): sd[k].shape for k in sd if (m := pattern.match(k))}
    if not rel_pos or "image_encoder.pos_embed" not in sd:
        raise CheckpointError(f"{path}: not a SAM checkpoint: ViT blocks or pos_embed missing")
    grid = int(sd["image_encoder.pos_embed"].shape[1])
    depth = max(rel_pos) + 1
    head_dim = int(rel_pos[0][1])
    global_idx = tuple(sorted(i for i, s in rel_pos.items() if s[0] == 2 * grid - 1))
    windowed = [s[0] for i, s in rel_pos.items() if i not in global_idx]
    window = (int(windowed[0]) + 1) // 2 if windowed else 14
    return ViTConfig(embed_dim, depth, embed_dim // head_dim, global_idx, window, grid * patch, patch)


def check_keys_and_shapes(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], path: Path | str) -> None:
    """CheckpointError listing a few missing / unexpected / mis-shaped keys, if any."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mis_shaped = [
        f"{k} {tuple(state_dict[k].shape)} != {expected[k]}"
        for k in expected if k in state_dict and tuple(state_dict[k].shape) != expected[k]
    ]
    if missing or unexpected or mis_shaped:
        raise CheckpointError(
            f"{path}: not a {getattr(model, 'model_type', 'SAM')} checkpoint: "
            f"{len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}, {len(mis_shaped)} shape mismatches {mis_shaped[:3]}"
        )


def _preset_name(config: EncoderConfig, hq: bool = False) -> str:
    name = next((name for name, preset in MODEL_CONFIGS.items() if preset == config), "custom")
    return name + HQ_SUFFIX if hq else name
