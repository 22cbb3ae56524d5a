"""Section "recall": 2D mask-proposal recall of each available mask generator on synthetic frames.

``scene.eval.mask_recall`` against each frame's GT instance image: recall@0.5, average recall over IoU
0.5:0.95 and mean best IoU, instances pooled over frames (COCO-style). GT instances under
``MIN_AREA_640`` pixels at 640x480 (scaled with the resolution) are skipped. Frames: evenly spaced over
seed 0 of each preset and variant. Generators: "geometric" always; "sam" only with ``--sam-checkpoint``
(on at most ``SAM_FRAMES`` frames per scene: seconds per frame on a CPU). The tiny reference SAM in
``../shared/sam_reference`` has random weights, so it is never measured here.
"""
from __future__ import annotations

import numpy as np

from benchmarks.harness import MemoryProbe, markdown_table, summarize, timed
from benchmarks.suites.common import BenchContext, SuiteSkipped
from benchmarks.suites.sequences import sizes, synthetic_scene

NAME = "recall"
TITLE = "2D mask recall on synthetic frames"
MIN_AREA_640 = 200
SAM_FRAMES = 2


def generators(ctx: BenchContext) -> list[tuple[str, object, int]]:
    """(name, generator, frames per scene) for every generator measured in this run."""
    try:
        from segment2d.factory import make_generator
    except ImportError as exc:
        raise SuiteSkipped(f"segment2d.factory is not available ({exc})") from None
    out = [("geometric", make_generator("geometric"), sizes(ctx).recall_frames)]
    if ctx.sam_checkpoint:
        out.append(("sam", make_generator("sam", checkpoint=ctx.sam_checkpoint),
                    min(SAM_FRAMES, sizes(ctx).recall_frames)))
    return out


def frame_picks(num_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``num_frames`` (distinct, sorted)."""
    if num_frames < 1 or count < 1:
        raise ValueError(f"frame_picks: need >= 1 frame and count, got {num_frames} and {count}")
    return sorted({int(i) for i in np.linspace(0, num_frames - 1, min(count, num_frames)).round()})


def run(ctx: BenchContext) -> dict:
    from scene.eval import MaskRecall, mask_recall

    size = sizes(ctx)
    min_area = int(round(MIN_AREA_640 * size.width * size.height / (640 * 480)))
    measured = generators(ctx)
    results = {name: {"recalls": [], "times": [], "counts": [], "by_scene": {}} for name, _, _ in measured}
    for preset in size.accuracy_presets:
        for noisy in size.accuracy_noise:
            scene = synthetic_scene(ctx, preset, noisy, seed=0)
            label = f"{preset}-{'noisy' if noisy else 'clean'}"
            frames = [scene.frame(i) for i in frame_picks(len(scene), size.recall_frames)]
            for name, generator, count in measured:
                scene_recalls = []
                for frame in frames[:count]:
                    masks, seconds = timed(lambda: generator.generate(frame))
                    scene_recalls.append(mask_recall(frame.instance_ids, masks, min_area=min_area))
                    results[name]["times"].append(seconds)
                    results[name]["counts"].append(len(masks))
                results[name]["recalls"] += scene_recalls
                results[name]["by_scene"][label] = MaskRecall.concatenate(scene_recalls)
                ctx.log(f"  {name} on {label}: recall@0.5 {results[name]['by_scene'][label].recall[0]:.3f}")
    rows = []
    for name, generator, _ in measured:
        rows += _rows(name, results[name])
        rows[-1]["heap_peak_mib"] = _traced_peak(generator, frames[0]) / 2**20
    return {"protocol": __doc__.split("\n\n", 1)[1].strip(), "min_area_pixels": min_area,
            "resolution": [size.width, size.height], "rows": rows}


def _rows(name: str, result: dict) -> list[dict]:
    from scene.eval import MaskRecall

    rows = [_row(name, label, recall) for label, recall in result["by_scene"].items()]
    overall = _row(name, "all", MaskRecall.concatenate(result["recalls"]))
    overall["median_ms"] = 1e3 * summarize(result["times"])["median"]
    overall["p95_ms"] = 1e3 * summarize(result["times"])["p95"]
    overall["masks_per_frame"] = float(np.mean(result["counts"]))
    overall["frames"] = len(result["times"])
    return rows + [overall]


def _row(name: str, scenes: str, recall) -> dict:
    return {"generator": name, "scenes": scenes, "num_gt": recall.num_gt, "recall50": float(recall.recall[0]),
            "average_recall": recall.average_recall, "mean_best_iou": recall.mean_best_iou}


def _traced_peak(generator, frame) -> int:
    """Python-heap peak (bytes, tracemalloc) of one ``generate`` call, measured apart from the timings."""
    with MemoryProbe(trace=True) as probe:
        generator.generate(frame)
    return probe.report.traced_peak


def markdown(data: dict) -> str:
    columns = ["generator", "scenes", "num_gt", "recall50", "average_recall", "mean_best_iou", "masks_per_frame",
               "median_ms", "p95_ms", "heap_peak_mib"]
    headers = ["generator", "scenes", "GT instances", "recall@0.5", "AR 0.5:0.95", "mean best IoU", "masks/frame",
               "median ms/frame", "p95 ms", "heap peak MiB (1 frame, traced)"]
    return (f"{data['resolution'][0]}x{data['resolution'][1]}, GT instances >= {data['min_area_pixels']} px. "
            f"{data['protocol']}\n\n" + markdown_table(data["rows"], columns, headers))
