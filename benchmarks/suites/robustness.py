"""Section "robustness": how much 3D instance AP the fusion loses to 2D mask errors.

Synthetic scenes mapped with the default pipeline and their ground-truth 2D masks (the association
ceiling), clean and through ``segment2d.degrade`` with each error kind alone and all four together,
at the rates of issue 14: merge 5% of adjacent mask pairs, split 10% of masks, drop 15% of masks,
erode or dilate every mask by 1-3 px; drawn independently per frame (seeded by the scene's seed and the
frame index). Scored as the accuracy section scores (ScanNet protocol on the observed GT surface,
"all" instances and "objects" with structure void), seeds pooled per seed group; ``d_*`` is the
condition's value minus the clean one's (negative: AP lost).
"""
from __future__ import annotations

from benchmarks.harness import markdown_table
from benchmarks.suites.accuracy import MODES, score_run, seed_label
from benchmarks.suites.common import BenchContext
from benchmarks.suites.sequences import sizes, synthetic_run

NAME = "robustness"
TITLE = "3D instance AP under 2D mask errors (GT masks degraded)"
METRICS = ("ap", "ap50", "ap25")


def conditions() -> dict:
    """Condition name -> ``DegradeConfig`` (None: the clean GT masks)."""
    from segment2d.degrade import ISSUE14_RATES, DegradeConfig

    rates = ISSUE14_RATES
    return {
        "clean": None,
        f"merge {rates.merge_rate:.0%}": DegradeConfig(merge_rate=rates.merge_rate),
        f"split {rates.split_rate:.0%}": DegradeConfig(split_rate=rates.split_rate),
        f"drop {rates.drop_rate:.0%}": DegradeConfig(drop_rate=rates.drop_rate),
        f"boundary {rates.boundary_px[0]}-{rates.boundary_px[1]} px": DegradeConfig(
            boundary_rate=rates.boundary_rate, boundary_px=rates.boundary_px),
        "all four": rates,
    }


def run(ctx: BenchContext) -> dict:
    from scene.eval import evaluate_scenes

    size = sizes(ctx)
    rows = []
    for preset, noisy in size.robustness_scenes:
        scene_name = f"{preset} {'noisy' if noisy else 'clean'}"
        for group in size.robustness_seed_groups:
            clean = {}
            for condition, degrade in conditions().items():
                scored = {}  # (mode, protocol) -> [ScenePredictions]
                for seed in group:
                    done = synthetic_run(ctx, preset, noisy, seed, "ground-truth", degrade)
                    for key, prediction in score_run(done, f"{preset}-s{seed}-{condition}").items():
                        scored.setdefault(key, []).append(prediction)
                for mode in MODES:
                    row = {"scene": scene_name, "seeds": seed_label(group), "condition": condition, "mode": mode}
                    for protocol in ("all", "objects"):
                        values = evaluate_scenes(scored[(mode, protocol)]).as_dict()
                        for metric in METRICS:
                            row[f"{protocol}_{metric}"] = values[metric]
                        row[f"{protocol}_num_pred"] = values["num_pred"]
                    if condition == "clean":
                        clean[mode] = row
                    for protocol in ("all", "objects"):
                        for metric in METRICS:
                            name = f"{protocol}_{metric}"
                            row[f"d_{name}"] = row[name] - clean[mode][name]
                    rows.append(row)
                ctx.log(f"  {scene_name} seeds {seed_label(group)}, {condition}: AP "
                        + ", ".join(f"{r['mode']} {r['all_ap']:.3f} ({r['d_all_ap']:+.3f})" for r in rows[-2:]))
    return {"protocol": __doc__.split("\n\n", 1)[1].strip(), "frames_per_sequence": size.synthetic_frames,
            "resolution": [size.width, size.height], "conditions": {k: _describe(v) for k, v in conditions().items()},
            "rows": rows}


def _describe(config) -> dict:
    from dataclasses import asdict

    return {} if config is None else asdict(config)


def markdown(data: dict) -> str:
    columns = ["scene", "seeds", "condition", "mode", "all_ap", "all_ap50", "all_ap25", "d_all_ap", "d_all_ap50",
               "d_all_ap25", "objects_ap", "objects_ap50", "d_objects_ap", "d_objects_ap50"]
    headers = ["scene", "seeds", "2D masks", "map", "AP", "AP50", "AP25", "ΔAP", "ΔAP50", "ΔAP25",
               "AP (obj)", "AP50 (obj)", "ΔAP (obj)", "ΔAP50 (obj)"]
    notes = (f"{data['frames_per_sequence']} frames per sequence at {data['resolution'][0]}x{data['resolution'][1]}; "
             f"AP columns: all instances, Δ: against the clean GT masks of the same scenes and map. {data['protocol']}")
    return notes + "\n\n" + markdown_table(data["rows"], columns, headers)
