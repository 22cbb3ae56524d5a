"""Section "speed": per-stage latency (median and p95 per frame), frames per second and memory of the
default pipeline (geometric generator, ``MapperConfig()``) on the real 7-Scenes redkitchen (200 frames)
and ScanNet scene0448_01 (296 frames with valid poses) sequences.

Stages as ``benchmarks.suites.common`` defines them; "save" statistics cover only the frames that saved.
``fps_online``: frames / summed per-frame time (read included); ``fps_end_to_end`` adds the global
refinement and the final save; "lift + associate + map update" is the per-frame sum of those three
stages (the fusion, without 2D masks). Memory: process RSS (growth during the run = largest RSS sampled after a
frame minus RSS before it; the process peak is a high-water mark over the whole benchmark so far).
"""
from __future__ import annotations

from benchmarks.harness import machine_line, markdown_table
from benchmarks.suites.common import FRAME_STAGES, BenchContext, SuiteSkipped
from benchmarks.suites.sequences import SCANNET, SEVENSCENES, real_run

NAME = "speed"
TITLE = "Per-stage speed on real sequences"
SEQUENCES = (SEVENSCENES, SCANNET)
_MIB = 2**20


def run(ctx: BenchContext) -> dict:
    out, skipped = {}, {}
    for name in SEQUENCES:
        try:
            mapped = real_run(ctx, name)
        except Exception as exc:  # one missing data set must not hide the other's numbers
            skipped[name] = f"{type(exc).__name__}: {exc}"
            ctx.log(f"  {name}: skipped ({skipped[name]})")
            continue
        out[name] = mapped.speed_summary()
        ctx.log(f"  {name}: {out[name]['fps_online']:.2f} frames/s online, "
                f"refinement {out[name]['global_refinement_s']:.2f} s")
    if not out:
        raise SuiteSkipped("; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return {"protocol": __doc__.split("\n\n", 1)[1].strip(), "sequences": out, "skipped": skipped}


def markdown(data: dict) -> str:
    parts = [data["protocol"]]
    for name, summary in data["sequences"].items():
        rows = [{"stage": s, "median_ms": 1e3 * summary["stages"][s]["median"],
                 "p95_ms": 1e3 * summary["stages"][s]["p95"], "n": summary["stages"][s]["n"]}
                for s in FRAME_STAGES]
        rows[-1] = {"stage": "save (frames that saved)", "median_ms": 1e3 * summary["saves"]["median"],
                    "p95_ms": 1e3 * summary["saves"]["p95"], "n": summary["saves"]["n"]}
        if "per_frame_fusion" in summary:
            rows.append({"stage": "lift + associate + map update", "median_ms": 1e3 * summary["per_frame_fusion"]["median"],
                         "p95_ms": 1e3 * summary["per_frame_fusion"]["p95"], "n": summary["per_frame_fusion"]["n"]})
        rows.append({"stage": "per frame, total", "median_ms": 1e3 * summary["per_frame_total"]["median"],
                     "p95_ms": 1e3 * summary["per_frame_total"]["p95"], "n": summary["per_frame_total"]["n"]})
        rows.append({"stage": "global refinement (once)", "median_ms": 1e3 * summary["global_refinement_s"], "n": 1})
        rows.append({"stage": "final save (once)", "median_ms": 1e3 * summary["final_save_s"], "n": 1})
        parts.append(
            f"**{name}**: {summary['frames']} frames, {summary['fps_online']:.2f} frames/s online, "
            f"{summary['fps_end_to_end']:.2f} frames/s end to end; {summary['objects_online']} online / "
            f"{summary['objects_final']} refined objects; RSS growth {summary['rss_growth_bytes'] / _MIB:.0f} MiB, "
            f"process peak {summary['peak_rss_process_bytes'] / _MIB:.0f} MiB. {_measured(summary)}\n\n"
            + markdown_table(rows, ["stage", "median_ms", "p95_ms", "n"], ["stage", "median ms", "p95 ms", "frames"]))
    for name, reason in data.get("skipped", {}).items():
        parts.append(f"**{name}**: skipped: {reason}")
    return "\n\n".join(parts)


def _measured(summary: dict) -> str:
    measured = summary.get("measured_on") or {}
    if not measured:
        return ""
    return f"Mapped from {measured['timestamp']} on {machine_line(measured['machine'])}."

