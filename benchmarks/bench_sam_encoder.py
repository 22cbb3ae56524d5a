"""Time the SAM ViT-B and MobileSAM (vit_t) image encoders on one 1024 x 1024 input.

Random weights (the cost does not depend on their values). Prints the median of ``--runs`` timed
runs per model and dtype (fp32, and bf16 / fp16 autocast). Optionally also times the prompt
encoder + mask decoder + post-processing for a batch of single-point prompts (``--decoder-batch``).

    python benchmarks/bench_sam_encoder.py                       # CPU, 2 threads, vit_b + vit_t
    python benchmarks/bench_sam_encoder.py --models vit_t --runs 5
    python benchmarks/bench_sam_encoder.py --device cuda --dtypes fp32 bf16 fp16
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import numpy as np
import torch

from segment2d.build import build_sam
from segment2d.predictor import SamPredictor

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_encoder(model, device: torch.device, dtype: torch.dtype, runs: int, warmup: int) -> list[float]:
    x = torch.randn(1, 3, model.img_size, model.img_size, device=device)
    autocast = nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)
    times = []
    with torch.no_grad(), autocast:
        for i in range(warmup + runs):
            synchronize(device)
            start = time.perf_counter()
            model.image_encoder(x)
            synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def time_decoder(model, device: torch.device, batch: int, runs: int) -> list[float]:
    predictor = SamPredictor(model, device=device)
    predictor.set_image(np.zeros((480, 640, 3), np.uint8))
    points = torch.rand(batch, 1, 2, device=device) * torch.tensor([640.0, 480.0], device=device)
    labels = torch.ones(batch, 1, dtype=torch.int64, device=device)
    times = []
    for _ in range(runs + 1):
        synchronize(device)
        start = time.perf_counter()
        predictor.predict_torch(points, labels)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vit_b", "vit_t"])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (ViT-B on CPU: ~10 s each)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--decoder-batch", type=int, default=0, help="also time decoding this many point prompts")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"SAM image encoder, 1 x 3 x 1024 x 1024, {name}, torch {torch.__version__}, median of {args.runs}")
    print(f"{'model':8} {'dtype':6} {'median s':>9} {'min s':>7} {'max s':>7}")
    for model_type in args.models:
        torch.manual_seed(0)
        model = build_sam(model_type).to(device)
        for dtype_name in args.dtypes:
            times = time_encoder(model, device, DTYPES[dtype_name], args.runs, args.warmup)
            print(f"{model_type:8} {dtype_name:6} {statistics.median(times):9.3f} {min(times):7.3f} {max(times):7.3f}", flush=True)
        if args.decoder_batch:
            times = time_decoder(model, device, args.decoder_batch, args.runs)
            per_prompt = statistics.median(times) / args.decoder_batch
            print(f"{model_type:8} decoder, {args.decoder_batch} prompts: median {statistics.median(times):.3f} s "
                  f"({1000 * per_prompt:.1f} ms / prompt, masks at 480 x 640)", flush=True)


if __name__ == "__main__":
    main()
