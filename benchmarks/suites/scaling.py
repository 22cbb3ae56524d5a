"""Section "scaling": does the per-frame cost stay flat as the map grows?

- Against frames: the ScanNet scene0448_01 pass cut at 50, 100, 200 and 296 frames, and the 7-Scenes
  redkitchen pass cut at 50, 100 and 200. Per window of frames
  between two cuts: median per-frame pipeline time (every stage but read); at each cut: process RSS,
  online objects, and the time of a global refinement of the map so far (that one grows with the
  recorded segments by design; it runs once at the end, or every N frames).
- Against objects: seed 0 of the clean synthetic presets (tabletop 10-20, room 15-25, cluttered 30-40
  objects): median per-frame pipeline time, association and map-update time, RSS growth.
``ratio`` = last / first (1.0 is flat); ``slope`` = least-squares change per 100 frames or per object.
"""
from __future__ import annotations

import numpy as np

from benchmarks.harness import linear_slope, markdown_table, ratio_last_first
from benchmarks.suites.common import BenchContext, SuiteSkipped
from benchmarks.suites.sequences import PRESETS, SCANNET, SEVENSCENES, real_run, synthetic_run

NAME = "scaling"
TITLE = "Scaling with frames and objects"
_MIB = 2**20


def run(ctx: BenchContext) -> dict:
    return {"protocol": __doc__.split("\n", 1)[1].strip(), "frames": frames_scaling(ctx),
            "objects": objects_scaling(ctx)}


def frames_scaling(ctx: BenchContext) -> dict:
    """Per real sequence (ScanNet first; an absent one is listed under "skipped") the cut table."""
    out, skipped = {}, {}
    for name in (SCANNET, SEVENSCENES):
        try:
            out[name] = _frame_cuts(real_run(ctx, name))
        except SuiteSkipped as exc:
            skipped[name] = str(exc)
            continue
        ctx.log(f"  frames ({name}): per-frame ms last/first {out[name]['ratio_ms']:.2f}, "
                f"RSS last/first {out[name]['ratio_rss']:.2f}")
    if not out:
        raise SuiteSkipped("; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return {"sequences": out, "skipped": skipped}


def _frame_cuts(mapped) -> dict:
    per_frame = mapped.pipeline_seconds
    rows, start = [], 0
    for cut in sorted(mapped.checkpoints):
        mark = mapped.checkpoints[cut]
        rows.append({"frames": cut, "window": f"{start + 1}-{cut}",
                     "median_ms": 1e3 * float(np.median(per_frame[start:cut])),
                     "p95_ms": 1e3 * float(np.percentile(per_frame[start:cut], 95)),
                     "rss_mib": mark["rss_bytes"] / _MIB, "objects": mark["objects_online"],
                     "refine_s": mark["refine_s"]})
        start = cut
    ms = [r["median_ms"] for r in rows]
    return {"rows": rows, "ratio_ms": ratio_last_first(ms),
            "slope_ms_per_100_frames": 100 * linear_slope([r["frames"] for r in rows], ms),
            "ratio_rss": ratio_last_first([r["rss_mib"] for r in rows])}


def objects_scaling(ctx: BenchContext) -> dict:
    rows = []
    for preset in PRESETS:
        done = synthetic_run(ctx, preset, noisy=False, seed=0)
        run = done.run
        rows.append({
            "preset": preset, "gt_objects": sum(not o.is_structure for o in done.scene.gt_objects()),
            "map_objects": len(run.final_map), "frames": run.num_frames,
            "median_ms": 1e3 * float(np.median(run.pipeline_seconds)),
            "associate_ms": 1e3 * float(np.median(run.stages["associate"])),
            "map_update_ms": 1e3 * float(np.median(run.stages["map_update"])),
            "rss_growth_mib": (max(run.rss) - run.rss_start) / _MIB,
        })
    rows.sort(key=lambda r: r["gt_objects"])
    ms = [r["median_ms"] for r in rows]
    result = {"rows": rows, "ratio_ms": ratio_last_first(ms),
              "slope_ms_per_object": linear_slope([r["gt_objects"] for r in rows], ms),
              "ratio_objects": ratio_last_first([r["gt_objects"] for r in rows])}
    ctx.log(f"  objects: per-frame ms last/first {result['ratio_ms']:.2f} for "
            f"{result['ratio_objects']:.2f}x the objects")
    return result


def markdown(data: dict) -> str:
    parts = [data["protocol"]]
    for name, frames in data["frames"]["sequences"].items():
        table = markdown_table(
            frames["rows"], ["frames", "window", "median_ms", "p95_ms", "rss_mib", "objects", "refine_s"],
            ["frames", "window", "median ms/frame", "p95 ms/frame", "RSS MiB", "online objects", "refinement s"])
        parts.append(f"**Frames** ({name}): per-frame time last/first {frames['ratio_ms']:.2f}, slope "
                     f"{frames['slope_ms_per_100_frames']:.1f} ms per 100 frames, RSS last/first "
                     f"{frames['ratio_rss']:.2f}.\n\n{table}")
    for name, reason in data["frames"].get("skipped", {}).items():
        parts.append(f"**Frames** ({name}): skipped: {reason}")
    objects = data["objects"]
    table = markdown_table(
        objects["rows"], ["preset", "gt_objects", "map_objects", "frames", "median_ms", "associate_ms",
                          "map_update_ms", "rss_growth_mib"],
        ["preset", "GT objects", "map objects", "frames", "median ms/frame", "associate ms", "map update ms",
         "RSS growth MiB"])
    parts.append(f"**Objects**: per-frame time last/first {objects['ratio_ms']:.2f} for "
                 f"{objects['ratio_objects']:.2f}x the GT objects, slope {objects['slope_ms_per_object']:.2f} ms "
                 f"per object.\n\n{table}")
    return "\n\n".join(parts)
