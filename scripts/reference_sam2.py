"""SAM 2.1 references from Meta's official ``sam2`` package (run by ``scripts/build_references.py``,
which puts the package on the path; never imported by the project).

Writes to ``--out``:
- ``checkpoint_keys.json``: every state-dict key and shape of the released sizes (hiera_t/s/b+/l) as the
  official builder makes them.
- ``hiera_test.pt`` + ``hiera_test_image.npz`` + ``hiera_test_video.npz``: a small model (Hiera width 32,
  blocks (1, 2, 3, 1), 256 x 256 input, memory parts at the released sizes) with seeded random weights;
  its image features, low-res logits and IoU for point / box / point+box / mask prompts, and a 6-frame
  propagation of three objects (a click, a box, a mask) with every frame's masks, object pointers and
  object scores.
- ``hiera_t.pt`` + ``hiera_t_image.npz``: the released tiny size at 1024 x 1024 with seeded random
  weights, the full-size numeric check of the image path.
With ``--full-size`` (opt-in: minutes and GBs) it writes instead, one model at a time, ``<size>.pt`` +
``<size>_image.npz`` of the other released sizes (hiera_s, hiera_b+, hiera_l) at 1024 x 1024, the same
check as hiera_t's.
Weights are the official initialisation plus N(0, 0.02) noise on every parameter (so zero-initialised
positional tables and layer scales matter too), and an object-score bias that keeps objects visible.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from hydra import compose
from hydra.utils import instantiate
from omegaconf import OmegaConf

import sam2
import sam2.sam2_video_predictor as video_module

CONFIGS = {
    "hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
TEST_OVERRIDES = [
    "++model.image_size=256",
    "model.image_encoder.trunk.embed_dim=32",
    "model.image_encoder.trunk.stages=[1,2,3,1]",
    "model.image_encoder.trunk.global_att_blocks=[5]",
    "model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
]
# what build_sam2 / build_sam2_video_predictor add (fill_hole_area 0: its CUDA kernel is skipped on CPU anyway)
IMAGE_OVERRIDES = [
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
]
VIDEO_OVERRIDES = ["++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor", *IMAGE_OVERRIDES,
                   "++model.binarize_mask_from_pts_for_mem_enc=true", "++model.fill_hole_area=0"]
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def build(config: str, overrides: list[str], seed: int | None):
    cfg = compose(config_name=config, overrides=overrides)
    OmegaConf.resolve(cfg)
    if seed is not None:
        torch.manual_seed(seed)
    model = instantiate(cfg.model, _recursive_=True).eval()
    if seed is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.02)
            model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(2.0)
    return model


def scene_frames(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """n x H x W x 3 uint8: a smooth background with three coloured shapes moving a few pixels a frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin(xx / 17.0) * np.cos(yy / 23.0)], -1) * 160 + 40
    shapes = [(0.3, 0.35, 0.18, (230, 40, 40)), (0.65, 0.6, 0.2, (40, 200, 60)), (0.5, 0.25, 0.12, (50, 60, 220))]
    frames = []
    for t in range(n):
        img = base.copy()
        for i, (cy, cx, r, colour) in enumerate(shapes):
            cy_t, cx_t = cy * height + 2.0 * t * (i - 1), cx * width + 3.0 * t
            inside = ((yy - cy_t) / (r * height)) ** 2 + ((xx - cx_t) / (r * width)) ** 2 <= 1.0
            img[inside] = colour
        img += rng.normal(0, 4, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def normalised(frames: np.ndarray, size: int) -> torch.Tensor:
    """N x H x W x 3 uint8 -> N x 3 x S x S float32, squashed bilinearly (antialiased) and normalised."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x - torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)) / torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)


def image_features(model, image: torch.Tensor):
    """What SAM2ImagePredictor.set_image computes (without its torchvision transforms)."""
    backbone = model.forward_image(image)
    _, feats, pos, sizes = model._prepare_backbone_features(backbone)
    feats[-1] = feats[-1] + model.no_mem_embed
    maps = [f.permute(1, 2, 0).view(1, -1, *s) for f, s in zip(feats, sizes)]
    return {"image_embed": maps[-1], "high_res_feats": maps[:-1]}, backbone


def predict(model, features, points=None, labels=None, box=None, mask_input=None, multimask=True):
    """SAM2ImagePredictor._predict on model-input coordinates (box corners go first, as labels 2 and 3)."""
    concat = None if points is None else (points, labels)
    if box is not None:
        box_pts, box_lbl = box.reshape(-1, 2, 2), torch.tensor([[2, 3]], dtype=torch.int32).repeat(box.shape[0], 1)
        concat = (box_pts, box_lbl) if concat is None else (torch.cat([box_pts, concat[0]], 1), torch.cat([box_lbl, concat[1]], 1))
    sparse, dense = model.sam_prompt_encoder(points=concat, boxes=None, masks=mask_input)
    low_res, iou, _, _ = model.sam_mask_decoder(
        image_embeddings=features["image_embed"], image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
        repeat_image=concat is not None and concat[0].shape[0] > 1, high_res_features=features["high_res_feats"],
    )
    return low_res, iou


def image_reference(model, size: int, seed: int) -> dict[str, np.ndarray]:
    frame = scene_frames(1, 300, 400, seed)
    image = normalised(frame, size)
    features, backbone = image_features(model, image)
    s = size / 256.0
    points = torch.tensor([[[80.0, 90.0], [170.0, 150.0]]]) * s
    labels = torch.tensor([[1, 0]], dtype=torch.int32)
    click = points[:, :1], labels[:, :1]
    box = torch.tensor([[40.0, 50.0, 150.0, 160.0]]) * s
    boxes = torch.tensor([[40.0, 50.0, 150.0, 160.0], [120.0, 100.0, 230.0, 210.0]]) * s
    out = {
        "image": image.numpy(), "image_embed": features["image_embed"].numpy(),
        "high_res_s0": features["high_res_feats"][0].numpy(), "high_res_s1": features["high_res_feats"][1].numpy(),
        "vision_pos_enc": backbone["vision_pos_enc"][-1].numpy(),
        "points": points.numpy(), "labels": labels.numpy(), "box": box.numpy(), "boxes": boxes.numpy(),
    }
    prompts = {
        "click": dict(points=click[0], labels=click[1]),
        "points": dict(points=points, labels=labels),
        "box": dict(box=box),
        "points_box": dict(points=points, labels=labels, box=box),
        "two_boxes": dict(box=boxes),
    }
    for name, kwargs in prompts.items():
        for multimask in (True, False):
            low, iou = predict(model, features, multimask=multimask, **kwargs)
            out[f"{name}_mm{int(multimask)}_low_res"], out[f"{name}_mm{int(multimask)}_iou"] = low.numpy(), iou.numpy()
    # a mask prompt: the previous answer's logits fed back with the click
    mask_input = torch.from_numpy(out["click_mm0_low_res"])
    low, iou = predict(model, features, points=click[0], labels=click[1], mask_input=mask_input, multimask=False)
    out["click_mask_mm0_low_res"], out["click_mask_mm0_iou"] = low.numpy(), iou.numpy()
    return out


def video_reference(model, size: int, seed: int, n_frames: int = 6) -> dict[str, np.ndarray]:
    height, width = 120, 160
    frames = scene_frames(n_frames, height, width, seed)
    images = normalised(frames, size)
    video_module.load_video_frames = lambda **kwargs: (images, height, width)
    state = model.init_state(video_path="<in memory>")
    click, click_labels = np.array([[48.0, 42.0]], np.float32), np.array([1], np.int32)
    box = np.array([90.0, 55.0, 135.0, 100.0], np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    mask = ((yy - 30) / 15.0) ** 2 + ((xx - 80) / 20.0) ** 2 <= 1.0
    out = {"frames": frames, "images": images.numpy(), "click": click, "click_labels": click_labels, "box": box, "mask": mask}
    _, _, m1 = model.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=click, labels=click_labels)
    _, _, m2 = model.add_new_points_or_box(state, frame_idx=0, obj_id=2, box=box)
    _, _, m3 = model.add_new_mask(state, frame_idx=0, obj_id=3, mask=mask)
    out["prompt_video_res_masks"] = m3.numpy()  # after all three prompts: every object's logits
    video_res = []
    for frame_idx, obj_ids, masks in model.propagate_in_video(state):
        assert list(obj_ids) == [1, 2, 3]
        video_res.append(masks.numpy())
    out["video_res_masks"] = np.stack(video_res)
    per_frame = {"pred_masks": [], "obj_ptr": [], "object_score_logits": [], "maskmem_features": []}
    for t in range(n_frames):
        outs = []
        for obj_idx in range(3):
            d = state["output_dict_per_obj"][obj_idx]
            outs.append(d["cond_frame_outputs"].get(t) or d["non_cond_frame_outputs"][t])
        for key in per_frame:
            per_frame[key].append(torch.cat([o[key].float() for o in outs]).numpy())
    for key, values in per_frame.items():
        out[key] = np.stack(values)
    return out


FULL_SIZES = ("hiera_s", "hiera_b+", "hiera_l")


def full_size_references(out_dir: Path) -> None:
    for seed, name in enumerate(FULL_SIZES, start=10):
        model = build(CONFIGS[name], IMAGE_OVERRIDES, seed=seed)
        torch.save({"model": model.state_dict()}, out_dir / f"{name}.pt")
        np.savez_compressed(out_dir / f"{name}_image.npz", **image_reference(model, 1024, seed=seed + 100))
        print(f"{name}: full-size image reference written", flush=True)
        del model
    versions = {"sam2": getattr(sam2, "__version__", "1.1.0"), "torch": torch.__version__}
    (out_dir / "manifest.json").write_text(json.dumps({"versions": versions, "sizes": list(FULL_SIZES)}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--full-size", action="store_true", help="only the full-size references of hiera_s / b+ / l")
    args = parser.parse_args()
    out_dir = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    if args.full_size:
        full_size_references(out_dir)
        return
    keys = {}
    for name, config in CONFIGS.items():
        model = build(config, [], seed=None)
        keys[name] = {k: list(v.shape) for k, v in model.state_dict().items()}
        print(f"{name}: {len(keys[name])} keys, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters", flush=True)
        del model
    (out_dir / "checkpoint_keys.json").write_text(json.dumps(keys))

    test_model = build(CONFIGS["hiera_t"], TEST_OVERRIDES + IMAGE_OVERRIDES, seed=0)
    torch.save({"model": test_model.state_dict()}, out_dir / "hiera_test.pt")
    np.savez_compressed(out_dir / "hiera_test_image.npz", **image_reference(test_model, 256, seed=1))
    video_model = build(CONFIGS["hiera_t"], TEST_OVERRIDES + VIDEO_OVERRIDES, seed=None)
    video_model.load_state_dict(test_model.state_dict())
    np.savez_compressed(out_dir / "hiera_test_video.npz", **video_reference(video_model.eval(), 256, seed=2))
    print("hiera_test: image and video references written", flush=True)

    full = build(CONFIGS["hiera_t"], IMAGE_OVERRIDES, seed=3)
    torch.save({"model": full.state_dict()}, out_dir / "hiera_t.pt")
    np.savez_compressed(out_dir / "hiera_t_image.npz", **image_reference(full, 1024, seed=4))
    print("hiera_t: full-size image reference written", flush=True)
    versions = {"sam2": getattr(sam2, "__version__", "1.1.0"), "torch": torch.__version__}
    (out_dir / "manifest.json").write_text(json.dumps({"versions": versions}, indent=1))


if __name__ == "__main__":
    main()
