"""Time SAM's automatic mask generator (AMG) per 640 x 480 frame on CPU.

Cases (each printed as median wall and process-CPU seconds over ``--runs`` frames):

- ``fake``: a label-image fake model (full-resolution logits, no network), so the time is the generator's
  own work (plus a fast fake, timed separately);
- ``vit_t``: MobileSAM with the random-weight reference state dict (``../shared/sam_reference``), once with
  SAM's thresholds (random weights pass few masks) and once ``relaxed`` (pred-IoU and stability thresholds
  lowered so the filters see many masks); the image encoder is timed separately.

``--agreement`` also compares bf16-encoder masks with fp32 masks (tiny SAM and vit_t): for each fp32 mask the
best IoU among the bf16 masks, and the ratio of mask counts.

    python benchmarks/bench_amg.py                        # fake + vit_t, 32 x 32 points
    python benchmarks/bench_amg.py --cases fake --runs 3
    python benchmarks/bench_amg.py --cases vit_t --points-per-side 8 --agreement
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segment2d.automatic import AMGConfig, AutomaticMaskGenerator
from segment2d.build import load_sam
from segment2d.predictor import SamPredictor

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REF = SHARED / "sam_reference"
KITCHEN = SHARED / "data" / "7scenes_redkitchen" / "frame-000000.color.jpg"
# random weights give logits within about +/-0.4 and predicted IoUs in about [-0.2, 0.25]: SAM's thresholds keep
# nothing, these keep a good share (and the stability offset must shrink with the logits)
RELAXED = dict(pred_iou_thresh=0.1, stability_score_thresh=0.6, stability_score_offset=0.02)


class LabelFake:
    """Fake promptable model: every mask of a point is the region of the label under it (red channel).

    Logits +10 inside, -10 outside; labels divisible by 5 are unstable (-0.5 outside) and labels divisible
    by 3 get a predicted IoU of 0.8 (dropped by SAM's 0.88), so every filter has work to do.
    """

    mask_threshold = 0.0

    def __init__(self) -> None:
        self.table: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.seconds = 0.0

    def set_image(self, image: np.ndarray) -> None:
        labels = torch.from_numpy(image[..., 0].astype(np.int64))
        ids = torch.arange(int(labels.max()) + 1)
        outside = torch.where(ids % 5 == 0, -0.5, -10.0)
        self.table = torch.where(labels[None] == ids[:, None, None], 10.0, outside[:, None, None]).to(torch.float32)
        self.labels = labels

    def reset_image(self) -> None:
        self.table = self.labels = None

    def predict_torch(self, point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True, return_logits=False):
        start = time.perf_counter()
        h, w = self.labels.shape
        x = point_coords[:, 0, 0].floor().long().clamp(0, w - 1)
        y = point_coords[:, 0, 1].floor().long().clamp(0, h - 1)
        ids = self.labels[y, x]
        logits = self.table[ids][:, None].expand(-1, 3, -1, -1)
        iou = torch.where(ids % 3 == 0, 0.8, 0.95).to(torch.float32)[:, None].expand(-1, 3)
        self.seconds += time.perf_counter() - start
        return logits, iou, torch.zeros(len(ids), 3, 1, 1).expand(-1, -1, 256, 256)


def voronoi_labels(height: int = 480, width: int = 640, n: int = 60, seed: int = 0) -> np.ndarray:
    """H x W uint8 labels 0..n-1 of the nearest of n random seeds (an over-segmented-looking image)."""
    rng = np.random.default_rng(seed)
    seeds = rng.uniform([0, 0], [height, width], size=(n, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    d = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    return d.argmin(-1).astype(np.uint8)


def timed(fn, runs: int) -> tuple[list[float], list[float], object]:
    walls, cpus, out = [], [], None
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return walls, cpus, out


def report(name: str, walls: list[float], cpus: list[float], extra: str = "") -> None:
    print(f"{name:<34} wall {statistics.median(walls):8.3f} s   cpu {statistics.median(cpus):8.3f} s   {extra}", flush=True)


def bench_fake(points_per_side: int, runs: int) -> None:
    labels = voronoi_labels()
    image = np.stack([labels, labels, labels], axis=-1)
    fake = LabelFake()
    generator = AutomaticMaskGenerator(fake, AMGConfig(points_per_side=points_per_side))
    walls, cpus, result = timed(lambda: generator.generate(image), runs)
    report("fake amg (generator + fake)", walls, cpus, f"{len(result)} masks, fake model {fake.seconds / runs:.3f} s/frame")


def kitchen_image() -> np.ndarray:
    if KITCHEN.is_file():
        return np.asarray(Image.open(KITCHEN).convert("RGB"))
    return np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)


def bench_vit_t(points_per_side: int, runs: int, dtype: torch.dtype) -> None:
    model = load_sam(REF / "vit_t_state_dict_fp16.pt")
    predictor = SamPredictor(model, encoder_dtype=dtype)
    image = kitchen_image()
    walls, cpus, _ = timed(lambda: predictor.set_image(image), runs)
    report(f"vit_t encoder {dtype}", walls, cpus)
    for label, options in (("sam thresholds", {}), ("relaxed", RELAXED)):
        generator = AutomaticMaskGenerator(predictor, AMGConfig(points_per_side=points_per_side, **options))
        walls, cpus, result = timed(lambda: generator.generate(image), runs)
        report(f"vit_t amg {label}", walls, cpus, f"{len(result)} masks, {points_per_side}^2 points, incl. encoder")


def best_iou(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each reference mask, its best IoU with any of the other masks."""
    if len(reference) == 0 or len(other) == 0:
        return np.zeros(len(reference))
    a = reference.reshape(len(reference), -1).astype(np.float32)
    b = other.reshape(len(other), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return (inter / np.maximum(union, 1)).max(1)


def agreement(checkpoint: Path, points_per_side: int) -> None:
    model = load_sam(checkpoint)
    image = kitchen_image()
    # filters and NMS off: every mask of every prompt is compared, whatever the random weights predict
    config = AMGConfig(points_per_side=points_per_side, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    results = {
        dtype: AutomaticMaskGenerator(SamPredictor(model, encoder_dtype=dtype), config).generate(image)
        for dtype in (torch.float32, torch.bfloat16)
    }
    fp32, bf16 = results[torch.float32], results[torch.bfloat16]
    ious = best_iou(fp32.masks, bf16.masks)
    print(
        f"bf16 vs fp32 {checkpoint.name}: {len(fp32)} fp32 / {len(bf16)} bf16 masks; best IoU per fp32 mask "
        f"median {np.median(ious) if len(ious) else float('nan'):.3f}, mean {ious.mean() if len(ious) else float('nan'):.3f}, "
        f">0.9: {np.mean(ious > 0.9) if len(ious) else float('nan'):.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["fake", "vit_t"], choices=["fake", "vit_t"])
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--agreement", action="store_true", help="compare bf16-encoder masks with fp32 masks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; timings on a shared machine are noisy")
    if "fake" in args.cases:
        bench_fake(args.points_per_side, args.runs)
    if "vit_t" in args.cases:
        if not REF.is_dir():
            print(f"vit_t skipped: {REF} not found")
        else:
            bench_vit_t(args.points_per_side, args.runs, getattr(torch, args.dtype))
    if args.agreement and REF.is_dir():
        agreement(REF / "tiny_sam_state_dict.pt", args.points_per_side)
        agreement(REF / "vit_t_state_dict_fp16.pt", args.points_per_side)


if __name__ == "__main__":
    main()
