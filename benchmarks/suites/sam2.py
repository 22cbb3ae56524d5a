"""Section "sam2": CPU speed of our SAM 2.1 (random weights: speed does not depend on them).

- ``image``: the image encoder (Hiera + FPN neck + the decoder's high-res projections) on one 1024 x 1024
  input, per released size (hiera_t / s / b+ / l), float32 and bfloat16 autocast, wall seconds and the
  process's CPU seconds over all threads (less sensitive to other jobs' load); plus one prompt decode.
- ``propagation``: one frame of the video predictor at 1024 (hiera_t) with its memory full (7 spatial
  memories, 16 object pointers), for 1 and 2 objects: the tracking part (memory attention, heads, memory
  encoder), and a whole frame = that + the hiera_t fp32 encoder (frames are encoded once, so filling the
  memory costs tracking only). The tracking part does not depend on the encoder's size (memory attention,
  heads and memory encoder are the same in every released size): a frame of another size is its encoder
  time + this. With a full memory the memory attention is ~0.5 TFLOP per object and frame at 1024.
Medians of ``RUNS`` runs after one warm-up; ``SLOW`` sizes (a minute or more a pass on 2 cores): one run, no
warm-up (the ``runs`` column says which). ``--quick`` (a dry run): hiera_t image encoder, 1 run, and
propagation of the small test model (256 x 256) instead. Where a GPU is present the same numbers are
measured on "cuda" too.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from benchmarks.harness import markdown_table, summarize, timed
from benchmarks.suites.common import BenchContext, SuiteSkipped

NAME = "sam2"
TITLE = "SAM 2.1 image encoder and video propagation speed"
RUNS = 3
SIZES = ("hiera_t", "hiera_s", "hiera_b+", "hiera_l")
SLOW = ("hiera_s", "hiera_b+", "hiera_l")


def _median_ms(function, runs: int, warmup: int = 1) -> float:
    return _median_wall_cpu_ms(function, runs, warmup)[0]


def _median_wall_cpu_ms(function, runs: int, warmup: int = 1) -> tuple[float, float]:
    """(median wall ms, median CPU ms of this process over all threads)."""
    for _ in range(warmup):
        function()
    wall, cpu = [], []
    for _ in range(runs):
        start = time.process_time()
        wall.append(timed(function)[1])
        cpu.append(time.process_time() - start)
    return summarize(wall)["median"] * 1000.0, float(np.median(cpu)) * 1000.0


def image_rows(device: str, sizes, runs: int) -> list[dict]:
    from segment2d.sam2 import build_sam2
    from segment2d.sam2.predictor import encode_features

    rows = []
    for size in sizes:
        torch.manual_seed(0)
        model = build_sam2(size).to(device)
        image = torch.randn(1, 3, 1024, 1024, device=device)
        size_runs, warmup = (1, 0) if size in SLOW and device == "cpu" else (runs, 1)
        row = {"model": size, "device": device, "runs": size_runs,
               "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
        for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            with torch.inference_mode():
                row[f"{label}_ms"], row[f"{label}_cpu_ms"] = _median_wall_cpu_ms(
                    lambda: _sync(encode_features(model, image, dtype), device), size_runs, warmup)
        with torch.inference_mode():
            features = encode_features(model, image)
            embed = model.image_only_embedding(features)
            points = (torch.rand(64, 1, 2, device=device) * 1024, torch.ones(64, 1, dtype=torch.int64, device=device))
            row["decode64_ms"] = _median_ms(lambda: _sync(model.decode(embed, features.high_res, points, None, True).masks, device), size_runs)
        rows.append(row)
        del model
    return rows


def propagation_rows(device: str, model_type: str, objects: tuple[int, ...], runs: int) -> list[dict]:
    from segment2d.sam2 import build_sam2
    from segment2d.sam2.predictor import encode_features
    from segment2d.sam2.video import Sam2VideoPredictor

    torch.manual_seed(0)
    model = build_sam2(model_type).to(device)
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(5.0)  # keep the objects visible
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (2, 480, 640, 3), dtype=np.uint8)
    with torch.inference_mode():
        inputs = [model.preprocess(torch.as_tensor(f, device=device).permute(2, 0, 1)[None]) for f in frames]
        encode_ms, encode_cpu_ms = _median_wall_cpu_ms(lambda: _sync(encode_features(model, inputs[0]), device), 1, 0)
        features = [encode_features(model, x) for x in inputs]
    rows = []
    for n in objects:
        video = Sam2VideoPredictor(model, device=device)
        video.add_features(features[0], (480, 640))
        for obj in range(n):
            mask = np.zeros((480, 640), bool)
            mask[40 * obj : 40 * obj + 120, 50 * obj : 50 * obj + 160] = True
            video.add_mask(obj, mask)
        video.track()
        for t in range(1, 17):  # fill the memory: 6 recent frames, 15 pointers
            video.add_features(features[t % 2], (480, 640))
            video.track()
        video.add_features(features[0], (480, 640))
        track_ms, track_cpu_ms = _median_wall_cpu_ms(lambda: _sync(_retrack(video), device), runs)
        rows.append({"model": model_type, "objects": n, "device": device, "runs": runs, "track_ms": track_ms,
                     "track_cpu_ms": track_cpu_ms, "frame_ms": encode_ms + track_ms,
                     "frame_cpu_ms": encode_cpu_ms + track_cpu_ms})
    return rows


def _retrack(video):
    out = video.track()
    for track in video.objects.values():
        track.tracked.pop(video.frame_idx, None)
    return out.low_res


def _sync(result, device: str):
    if device == "cuda":
        torch.cuda.synchronize()
    return result


def run(ctx: BenchContext) -> dict:
    try:
        import segment2d.sam2  # noqa: F401
    except ImportError as exc:
        raise SuiteSkipped(f"segment2d.sam2 is not available ({exc})") from None
    sizes, runs, objects = (("hiera_t",), 1, (2,)) if ctx.quick else (SIZES, RUNS, (1, 2))
    video_model = "hiera_test" if ctx.quick else "hiera_t"
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    image, propagation = [], []
    for device in devices:
        ctx.log(f"[sam2] image encoder on {device}")
        image += image_rows(device, sizes, runs)
        ctx.log(f"[sam2] propagation on {device}")
        propagation += propagation_rows(device, video_model, objects, runs)
    return {"image": image, "propagation": propagation, "runs": runs, "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def markdown(data: dict) -> str:
    gpu = f"GPU: {data['gpu']}." if data.get("gpu") else "No GPU on this machine: CPU only."
    head = f"Random weights, median of {data['runs']} runs, {data['threads']} torch threads. {gpu}\n\n"
    image = markdown_table(data["image"], ["model", "device", "runs", "params_m", "fp32_ms", "fp32_cpu_ms", "bf16_ms", "bf16_cpu_ms", "decode64_ms"],
                           ["model", "device", "runs", "params (M)", "encoder fp32 ms", "fp32 CPU ms (all threads)",
                            "encoder bf16 ms", "bf16 CPU ms", "decode 64 points ms"])
    video = markdown_table(data["propagation"], ["model", "objects", "device", "runs", "frame_ms", "frame_cpu_ms", "track_ms", "track_cpu_ms"],
                           ["model", "objects", "device", "runs", "frame ms (encoder + tracking)", "frame CPU ms",
                            "tracking ms (memory attention + heads + memory)", "tracking CPU ms"])
    return head + "Image encoder at 1024 x 1024:\n\n" + image + "\n\nVideo propagation per frame (full memory):\n\n" + video
