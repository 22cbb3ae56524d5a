"""Reference outputs of the official HQ-SAM (``segment-anything-hq``), for tests/test_sam_hq_equivalence.py.

Run by ``scripts/build_references.py hq``, which installs the official package into a throwaway folder and
puts it on the path (never a dependency of this project); imports nothing of this project:

    PYTHONPATH=FOLDER python scripts/reference_hq.py --out OUT_DIR

Writes into OUT_DIR:
- ``layouts.json``: every state_dict key and shape of the official builder's vit_b, vit_l, vit_h and
  vit_tiny HQ-SAM (what the released sam_hq_vit_{b,l,h,tiny}.pth hold);
- ``<name>_state_dict.pt`` + ``<name>_reference.npz`` for two models at seeded random weights: ``tiny_vit``
  (a small ViT: embed 64, depth 4, heads 2, global attention at blocks 1 and 3; the rest as released) and
  ``vit_tiny`` (the released TinyViT-5M size): an input image, prompts, and the official image embedding,
  early ViT feature, fused HQ features, low-res logits and IoU for point / box / point+box / mask prompts and
  a batch of points, with multimask on and off and hq_token_only on and off;
- ``manifest.json``: what each array is, the package and torch versions.
With ``--full-size`` (opt-in: minutes and GBs) it writes instead, one model at a time, ``<name>_state_dict.pt``
+ ``<name>_reference.npz`` of the released vit_b, vit_l and vit_h HQ-SAMs at seeded random weights.

The official package's ``__init__`` imports its predictor and mask generator, which import torchvision (not
installable with CPU torch here), so only its ``build_sam`` and ``modeling`` modules are loaded, under a bare
package module. Its TinyViT imports three helpers from ``timm`` (which pulls in torchvision too); they are
replaced by the plain equivalents below (drop path is off in every HQ-SAM model, so DropPath is never used).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

SEED = 0
IMAGE_HW = (768, 1024)  # the resized input (long side 1024); the model pads it to 1024 x 1024
TINY_VIT = dict(encoder_embed_dim=64, encoder_depth=4, encoder_num_heads=2, encoder_global_attn_indexes=[1, 3])


def import_official():
    """``segment_anything_hq.build_sam`` without the package ``__init__`` (torchvision) and without timm."""
    spec = importlib.util.find_spec("segment_anything_hq")
    if spec is None:
        raise SystemExit("segment_anything_hq is not installed in this environment")
    package = types.ModuleType("segment_anything_hq")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["segment_anything_hq"] = package

    class DropPath(nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath = DropPath
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    layers.trunc_normal_ = nn.init.trunc_normal_
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda fn: fn
    for name, module in {"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"),
                         "timm.models.layers": layers, "timm.models.registry": registry}.items():
        sys.modules[name] = module
    from segment_anything_hq import build_sam

    return build_sam


def randomise(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Seeded random values for every tensor whose default init is a constant (zeros, ones: biases,
    norms, positional tables, attention biases), so that each one changes the outputs; batch-norm
    statistics get plausible values. Loads them into ``model`` and returns its state_dict."""
    generator = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    for name, value in state.items():
        if not value.is_floating_point():
            continue
        noise = torch.randn(value.shape, generator=generator)
        if name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(value.shape, generator=generator)
        elif name.endswith("running_mean") or value.numel() == 1 or float(value.std()) == 0.0:
            state[name] = value + 0.1 * noise
    model.load_state_dict(state)
    return {k: v.clone() for k, v in model.state_dict().items()}


def smooth_image(seed: int) -> np.ndarray:
    """3 x H x W uint8: random colours at 1/32 resolution, bilinearly enlarged (structure at many scales)."""
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, IMAGE_HW[0] // 32, IMAGE_HW[1] // 32, generator=generator) * 255
    image = nn.functional.interpolate(low, size=IMAGE_HW, mode="bilinear", align_corners=False)[0]
    image = image + 20 * torch.rand(image.shape, generator=generator)
    return image.clamp(0, 255).to(torch.uint8).numpy()


def prompts() -> dict[str, dict[str, np.ndarray]]:
    """Prompts in the 1024 x 1024 model-input frame."""
    points = np.array([[[300.5, 200.0], [620.0, 410.25], [812.0, 95.0]]], np.float32)
    labels = np.array([[1, 0, 1]], np.int64)
    box = np.array([[250.0, 150.0, 700.0, 520.0]], np.float32)
    batch_points = np.array([[[60.0, 40.0]], [[512.0, 384.0]], [[1000.0, 700.0]], [[333.0, 600.0]]], np.float32)
    return {
        "points": {"points": points, "labels": labels},
        "box": {"box": box},
        "points_box": {"points": points, "labels": labels, "box": box},
        "batch": {"points": batch_points, "labels": np.ones((4, 1), np.int64)},
    }


@torch.no_grad()
def reference_outputs(model, seed: int) -> dict[str, np.ndarray]:
    image = smooth_image(seed)
    x = model.preprocess(torch.from_numpy(image)[None].to(torch.float32))
    embedding, interm = model.image_encoder(x)
    decoder = model.mask_decoder
    out = {
        "image_chw_uint8": image,
        "image_embedding": embedding.numpy(),
        "interm_embedding": interm[0].numpy(),
        "hq_features": (decoder.embedding_encoder(embedding) + decoder.compress_vit_feat(interm[0].permute(0, 3, 1, 2))).numpy(),
    }
    pe = model.prompt_encoder.get_dense_pe()

    def decode(prompt, mask_input, multimask, hq_only):
        points = None if "points" not in prompt else (torch.from_numpy(prompt["points"]), torch.from_numpy(prompt["labels"]))
        box = None if "box" not in prompt else torch.from_numpy(prompt["box"])
        sparse, dense = model.prompt_encoder(points=points, boxes=box, masks=mask_input)
        return decoder(image_embeddings=embedding, image_pe=pe, sparse_prompt_embeddings=sparse,
                       dense_prompt_embeddings=dense, multimask_output=multimask, hq_token_only=hq_only,
                       interm_embeddings=interm)

    for name, prompt in prompts().items():
        for key, value in prompt.items():
            out[f"{name}_{key}"] = value
        for multimask in (1, 0):
            for hq_only in (1, 0):
                logits, iou = decode(prompt, None, bool(multimask), bool(hq_only))
                tag = f"{name}_multimask{multimask}_hqonly{hq_only}"
                out[f"{tag}_lowres_logits"], out[f"{tag}_iou"] = logits.numpy(), iou.numpy()
    # a mask prompt: the single-mask answer to the points, fed back with the points (SAM's refinement loop)
    mask_input = torch.from_numpy(out["points_multimask0_hqonly0_lowres_logits"])
    out["mask_input"] = mask_input.numpy()
    for multimask in (1, 0):
        for hq_only in (1, 0):
            logits, iou = decode(prompts()["points"], mask_input, bool(multimask), bool(hq_only))
            tag = f"points_mask_multimask{multimask}_hqonly{hq_only}"
            out[f"{tag}_lowres_logits"], out[f"{tag}_iou"] = logits.numpy(), iou.numpy()
    return out


def build_reference(build_sam, name: str, builder, seed: int, out_dir: Path) -> None:
    torch.manual_seed(seed)
    model = builder()
    state = randomise(model, seed)
    model.eval()  # the official TinyViT caches its attention-bias table in eval(): refresh it after loading
    torch.save(state, out_dir / f"{name}_state_dict.pt")
    np.savez_compressed(out_dir / f"{name}_reference.npz", **reference_outputs(model, seed))
    print(f"[hq] {name}: {sum(v.numel() for v in state.values()) / 1e6:.1f} M values", flush=True)


def layouts(build_sam) -> dict[str, dict[str, list[int]]]:
    shapes = {}
    for name in ("vit_b", "vit_l", "vit_h", "vit_tiny"):
        if name == "vit_tiny":  # its builder calls .item() at build time: no meta device, but it is small
            model = build_sam.sam_model_registry[name]()
        else:
            with torch.device("meta"):
                model = build_sam.sam_model_registry[name]()
        shapes[name] = {k: list(v.shape) for k, v in model.state_dict().items()}
    return shapes


FULL_SIZES = ("vit_b", "vit_l", "vit_h")


def full_size_references(build_sam, out_dir: Path) -> None:
    for seed, name in enumerate(FULL_SIZES, start=10):
        build_reference(build_sam, name, build_sam.sam_model_registry[name], seed, out_dir)
    manifest = {"package": f"segment-anything-hq {importlib.metadata.version('segment-anything-hq')}",
                "torch": torch.__version__, "sizes": {name: {"seed": seed} for seed, name in enumerate(FULL_SIZES, start=10)}}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--full-size", action="store_true", help="only the released vit_b / l / h references")
    args = parser.parse_args()
    out_dir = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    build_sam = import_official()
    if args.full_size:
        full_size_references(build_sam, out_dir)
        return
    (out_dir / "layouts.json").write_text(json.dumps(layouts(build_sam)))
    build_reference(build_sam, "tiny_vit", lambda: build_sam._build_sam(**TINY_VIT), SEED, out_dir)
    build_reference(build_sam, "vit_tiny", build_sam.sam_model_registry["vit_tiny"], SEED + 1, out_dir)
    manifest = {
        "package": f"segment-anything-hq {importlib.metadata.version('segment-anything-hq')}",
        "torch": torch.__version__,
        "tiny_vit": {"config": TINY_VIT, "seed": SEED},
        "vit_tiny": {"config": "the released TinyViT-5M HQ-SAM (sam_hq_vit_tiny.pth)", "seed": SEED + 1},
        "arrays": {
            "image_chw_uint8": "3 x 768 x 1024 resized input image (RGB, 0..255); the model pads it to 1024",
            "image_embedding": "1 x 256 x 64 x 64 official image encoder output",
            "interm_embedding": "1 x 64 x 64 x C early feature (first global-attention block / TinyViT stage 2)",
            "hq_features": "1 x 32 x 256 x 256 embedding_encoder(embedding) + compress_vit_feat(early feature)",
            "<prompt>_<points|labels|box>": "prompts in the 1024 input frame (prompt: points, box, points_box, batch)",
            "<prompt>_multimask<0|1>_hqonly<0|1>_lowres_logits / _iou": "official mask decoder outputs",
            "mask_input": "1 x 1 x 256 x 256 mask prompt (points_multimask0_hqonly0 logits), used with the points",
            "points_mask_multimask<0|1>_hqonly<0|1>_lowres_logits / _iou": "points + mask_input",
        },
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
