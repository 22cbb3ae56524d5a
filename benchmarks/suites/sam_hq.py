"""Section "sam_hq" (optional: ``python -m benchmarks --only sam_hq``): per-frame time of HQ-SAM's model
sizes at 1024 x 1024, and the cost of its HQ decoder per prompt against SAM's.

Random weights (the cost does not depend on their values). ``encode``: ``SamPredictor.set_image`` of a
1024 x 1024 frame (normalisation, image encoder with its early feature, and the HQ feature fusion; wall
seconds, and the process's CPU seconds over all threads, less sensitive to other jobs' load), fp32 and
bf16 autocast on the encoder, median of ``runs`` after one untimed warm-up (vit_l / vit_h: one run, no
warm-up, their fp32 pass alone takes a minute or more on 2 cores). ``decode``: ``predict_low_res`` of a
batch of 64 single-point prompts (the automatic generator's batch), per prompt; the automatic generator at
its default 32 x 32 points decodes 1024 prompts a frame (times 1 + crop layers), so ``frame_estimate`` is
encode + 1024 x decode per prompt, before the masks that pass the IoU filter are upsampled.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from benchmarks.harness import markdown_table, summarize, timed
from benchmarks.suites.common import BenchContext, SuiteSkipped

NAME = "sam_hq"
TITLE = "HQ-SAM per-frame speed at 1024 x 1024 (random weights)"
MODELS = ("vit_t_hq", "vit_b_hq", "vit_l_hq", "vit_h_hq")
SLOW = ("vit_l_hq", "vit_h_hq")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
AMG_PROMPTS = 32 * 32
DECODE_BATCH = 64


def run(ctx: BenchContext) -> dict:
    try:
        from segment2d.build import build_sam
        from segment2d.predictor import SamPredictor
    except ImportError as exc:
        raise SuiteSkipped(f"segment2d's SAM code is not available ({exc})") from None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtypes = dict(DTYPES, fp16=torch.float16) if device.type == "cuda" else DTYPES
    models = ("vit_t_hq",) if ctx.quick else MODELS
    image = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    rows = []
    for model_type in models:
        torch.manual_seed(0)
        model = build_sam(model_type).to(device)
        runs, warmup = (1, 0) if ctx.quick or model_type in SLOW else (3, 1)
        for dtype_name, dtype in dtypes.items():
            predictor = SamPredictor(model, device=device, encoder_dtype=dtype)
            wall, cpu = zip(*[_timed_set_image(predictor, image, device) for _ in range(warmup + runs)][warmup:])
            rows.append({"model": model_type, "dtype": dtype_name, "device": device.type, "runs": runs,
                         **{f"encode_{k}_s": v for k, v in summarize(wall).items() if k in ("median", "min", "max")},
                         "encode_cpu_median_s": float(np.median(cpu))})
            ctx.log(f"  {model_type} {dtype_name}: encode {rows[-1]['encode_median_s']:.2f} s "
                    f"({rows[-1]['encode_cpu_median_s']:.2f} CPU s)")
        del model, predictor
    decode = _decode_costs(models[0], device, 1 if ctx.quick else 5)
    ctx.log(f"  decoder: HQ {decode['hq_ms_per_prompt']:.2f} ms / prompt, SAM {decode['sam_ms_per_prompt']:.2f} ms")
    for row in rows:
        row["frame_estimate_s"] = row["encode_median_s"] + AMG_PROMPTS * decode["hq_ms_per_prompt"] / 1e3
    return {"protocol": __doc__.split("\n\n", 1)[1].strip(), "threads": torch.get_num_threads(),
            "rows": rows, "decode": decode}


def _timed_set_image(predictor, image: np.ndarray, device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one ``set_image``."""
    _sync(device)
    cpu = time.process_time()
    _, seconds = timed(lambda: (predictor.set_image(image), _sync(device)))
    return seconds, time.process_time() - cpu


def _decode_costs(model_type: str, device: torch.device, runs: int) -> dict:
    """ms per prompt of the HQ decoder (hq_token_only off and on) and of SAM's decoder (the same model type
    without HQ); the decoders do not depend on the encoder's size."""
    from segment2d.build import build_sam
    from segment2d.predictor import SamPredictor

    points = torch.rand(DECODE_BATCH, 1, 2, device=device) * 1024
    labels = torch.ones(DECODE_BATCH, 1, dtype=torch.int64, device=device)
    image = np.zeros((1024, 1024, 3), np.uint8)
    out = {"batch": DECODE_BATCH, "model": model_type}
    hq = SamPredictor(build_sam(model_type), device=device)
    hq.set_image(image)
    for name, hq_only in (("hq", False), ("hq_token_only", True)):
        hq.hq_token_only = hq_only
        out[f"{name}_ms_per_prompt"] = _per_prompt_ms(hq, points, labels, device, runs)
    plain = SamPredictor(build_sam(model_type.removesuffix("_hq")), device=device)
    plain.set_image(image)
    out["sam_ms_per_prompt"] = _per_prompt_ms(plain, points, labels, device, runs)
    out["hq_over_sam"] = out["hq_ms_per_prompt"] / out["sam_ms_per_prompt"]
    return out


def _per_prompt_ms(predictor, points, labels, device, runs: int) -> float:
    def once():
        predictor.predict_low_res(points, labels, multimask_output=True)
        _sync(device)

    once()
    return 1e3 * summarize([timed(once)[1] for _ in range(runs)])["median"] / DECODE_BATCH


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def markdown(data: dict) -> str:
    decode = data["decode"]
    columns = ["model", "dtype", "device", "runs", "encode_median_s", "encode_min_s", "encode_max_s",
               "encode_cpu_median_s", "frame_estimate_s"]
    headers = ["model", "encoder dtype", "device", "runs", "encode median s", "min s", "max s",
               "encode CPU s (all threads)", "frame estimate s (encode + 1024 prompts)"]
    return (f"{data['protocol']}\n\nTorch threads: {data['threads']}. Decoder per prompt (batch {decode['batch']}): "
            f"HQ {decode['hq_ms_per_prompt']:.2f} ms, HQ token only {decode['hq_token_only_ms_per_prompt']:.2f} ms, "
            f"SAM's decoder {decode['sam_ms_per_prompt']:.2f} ms (HQ / SAM {decode['hq_over_sam']:.1f}x).\n\n"
            + markdown_table(data["rows"], columns, headers))
