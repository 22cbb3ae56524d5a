"""Section "accuracy": class-agnostic 3D instance AP / AP50 / AP25 on synthetic scenes.

Protocol: ScanNet's (``scene.eval``) on the scene's GT surface points that the sequence observed
(``gt_observed`` over every 4th true pose; unseen points are dropped). Each GT point takes the label of
the nearest map point within two voxels (``InstanceMap.label_points``); one prediction per map object,
scored by its confidence. "all": every instance incl. floor/walls/ceiling; "objects": structure made
void. Maps: the online map before ``finalize`` and the refined map after it (online + global). Rows
marked "GT 2D masks" map the same frames with their ground-truth instance masks instead of the
geometric generator's: the ceiling of lifting, association and refinement. Seeds
are pooled into one precision-recall curve per (preset, variant), as ScanNet pools scenes.
"""
from __future__ import annotations

import numpy as np

from benchmarks.harness import markdown_table
from benchmarks.suites.common import BenchContext, scene_predictions
from benchmarks.suites.sequences import sizes, synthetic_run

NAME = "accuracy"
TITLE = "3D instance AP on synthetic scenes (geometric generator)"
MODES = ("online", "online+global")
# (preset, noisy) also mapped with the frames' ground-truth 2D masks: the ceiling of lifting + association.
CEILING = (("room", True),)
OBSERVED_STRIDE = 4


def run(ctx: BenchContext) -> dict:
    from scene.eval import evaluate_scenes

    size = sizes(ctx)
    pooled = {}  # (preset, variant, mode, protocol) -> [ScenePredictions]
    per_scene = []
    runs = [(preset, noisy, "geometric") for preset in size.accuracy_presets for noisy in size.accuracy_noise]
    runs += [(preset, noisy, "ground-truth") for preset, noisy in CEILING if preset in size.accuracy_presets]
    for preset, noisy, generator in runs:
        variant = ("noisy" if noisy else "clean") + ("" if generator == "geometric" else ", GT 2D masks")
        for seed in size.seeds:
            done = synthetic_run(ctx, preset, noisy, seed, generator)
            scored = _score_run(done, f"{preset}-{variant}-s{seed}")
            for (mode, protocol), prediction in scored.items():
                pooled.setdefault((preset, variant, mode, protocol), []).append(prediction)
                result = evaluate_scenes([prediction])
                per_scene.append({"preset": preset, "variant": variant, "seed": seed, "mode": mode,
                                  "protocol": protocol, **result.as_dict()})
            ctx.log(f"  {preset}-{variant} seed {seed}: objects AP50 online "
                    f"{_find(per_scene, preset, variant, seed, 'online'):.3f}, online+global "
                    f"{_find(per_scene, preset, variant, seed, 'online+global'):.3f}")
    rows = [_pooled_row(key, evaluate_scenes(scenes)) for key, scenes in pooled.items()]
    return {"protocol": __doc__.split("\n\n", 1)[1].strip(), "frames_per_sequence": size.synthetic_frames,
            "resolution": [size.width, size.height], "seeds": list(size.seeds), "pooled": _merge_rows(rows),
            "per_scene": per_scene}


def _score_run(done, name: str) -> dict:
    scene, run = done.scene, done.run
    gt = scene.gt_points()
    seen = scene.gt_observed(gt, stride=OBSERVED_STRIDE)
    xyz, ids = gt.xyz[seen], gt.ids[seen].astype(np.int64)
    structure = [o.id for o in scene.gt_objects() if o.is_structure]
    voxel = run.final_map.metadata.voxel_size
    out = {}
    for mode, imap in zip(MODES, (run.online_map, run.final_map)):
        for protocol, prediction in scene_predictions(imap, xyz, ids, structure, voxel, name).items():
            out[(mode, protocol)] = prediction
    return out


def _find(rows: list, preset: str, variant: str, seed: int, mode: str) -> float:
    for row in rows:
        if (row["preset"], row["variant"], row["seed"], row["mode"], row["protocol"]) == (preset, variant, seed, mode, "objects"):
            return row["ap50"]
    return float("nan")


def _pooled_row(key: tuple, result) -> dict:
    preset, variant, mode, protocol = key
    values = result.as_dict()
    return {"preset": preset, "variant": variant, "mode": mode, "protocol": protocol,
            "ap": values["ap"], "ap50": values["ap50"], "ap25": values["ap25"],
            "num_gt": values["num_gt"], "num_pred": values["num_pred"]}


def _merge_rows(rows: list) -> list:
    """One row per (preset, variant, mode) with the "all" and "objects" numbers side by side."""
    merged = {}
    for row in rows:
        key = (row["preset"], row["variant"], row["mode"])
        target = merged.setdefault(key, {"preset": key[0], "variant": key[1], "mode": key[2]})
        for name in ("ap", "ap50", "ap25", "num_gt", "num_pred"):
            target[f"{row['protocol']}_{name}"] = row[name]
    return list(merged.values())


def markdown(data: dict) -> str:
    columns = ["preset", "variant", "mode", "all_ap", "all_ap50", "all_ap25", "objects_ap", "objects_ap50",
               "objects_ap25", "objects_num_gt", "objects_num_pred"]
    headers = ["preset", "variant", "map", "AP (all)", "AP50 (all)", "AP25 (all)", "AP (obj)", "AP50 (obj)",
               "AP25 (obj)", "GT obj", "pred"]
    notes = (f"{data['frames_per_sequence']} frames per sequence at {data['resolution'][0]}x{data['resolution'][1]}, "
             f"seeds {data['seeds']} pooled. {data['protocol']}")
    return notes + "\n\n" + markdown_table(data["pooled"], columns, headers)
