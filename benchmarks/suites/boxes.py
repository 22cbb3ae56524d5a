"""Section "boxes": class-agnostic 3D box AP25 / AP50 on the ScanNet scenes (``scene.eval.box_ap``).

Scenes: scene0448_01 (11 GT boxes) and scene0113_00 (4), each scored on its own and pooled (the
detections of both scenes ranked together, each matched in its own scene, as ScanNet's evaluation
pools scenes; ``scene.eval.evaluate_box_scenes``). GT: the boxes of ``gt_boxes.json`` (ScanNet's 18
benchmark classes), axis-aligned in ScanNet's aligned frame (centre +- size / 2). Predictions: every map object's points are moved by ``axis_align_matrix`` and
their axis-aligned box taken; score = object confidence. Reported for the online and the refined map,
with all objects and with the objects not flagged as structure (walls and floor are no GT boxes, so
they can only count as false positives).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.harness import markdown_table
from benchmarks.suites.common import BenchContext, SuiteSkipped, aligned_boxes
from benchmarks.suites.sequences import SCANNET_SCENES, real_run

NAME = "boxes"
TITLE = "3D box AP on ScanNet scenes (per scene and pooled)"


def read_gt_boxes(path: Path) -> tuple[np.ndarray, np.ndarray, list]:
    """(G x 6 min/max boxes in the aligned frame, 4 x 4 axis_align_matrix, labels) from ``gt_boxes.json``."""
    try:
        data = json.loads(Path(path).read_text())
        align = np.asarray(data["axis_align_matrix"], np.float64)
        centres = np.array([b["center_aligned"] for b in data["boxes"]], np.float64).reshape(-1, 3)
        extents = np.array([b["size"] for b in data["boxes"]], np.float64).reshape(-1, 3)
        labels = [str(b.get("label", "")) for b in data["boxes"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SuiteSkipped(f"{path}: cannot read the GT boxes ({exc})") from None
    if align.shape != (4, 4):
        raise SuiteSkipped(f"{path}: axis_align_matrix must be 4 x 4, got {align.shape}")
    return np.concatenate([centres - extents / 2, centres + extents / 2], axis=1), align, labels


MODES = ("online", "online+global")
SUBSETS = (("all objects", None), ("non-structure", False))


def run(ctx: BenchContext) -> dict:
    from scene.eval import SceneBoxes

    scenes, skipped = {}, {}  # name -> {(mode, subset): SceneBoxes}
    frames, labels = {}, {}
    for name in SCANNET_SCENES:
        try:
            gt, align, labels[name] = read_gt_boxes(ctx.data_set(name) / "gt_boxes.json")
            mapped = real_run(ctx, name)
        except SuiteSkipped as exc:
            skipped[name] = str(exc)
            ctx.log(f"  {name}: skipped ({exc})")
            continue
        frames[name] = mapped.num_frames
        scenes[name] = {}
        for mode, imap in zip(MODES, (mapped.online_map, mapped.final_map)):
            for subset, structure in SUBSETS:
                boxes, scores = aligned_boxes(imap, align, structure)
                scenes[name][(mode, subset)] = SceneBoxes(gt, boxes, scores, name)
    if not scenes:
        raise SuiteSkipped("; ".join(skipped.values()))
    rows = []
    for mode in MODES:
        for subset, _ in SUBSETS:
            for name in scenes:
                rows.append(_row(name, mode, subset, [scenes[name][(mode, subset)]], ctx))
            if len(scenes) > 1:
                rows.append(_row("pooled", mode, subset, [scenes[n][(mode, subset)] for n in scenes], ctx))
    return {"protocol": __doc__.split("\n\n", 1)[1].strip(), "frames": frames, "gt_labels": labels,
            "skipped": skipped, "rows": rows}


def _row(scene: str, mode: str, subset: str, scenes: list, ctx: BenchContext) -> dict:
    from scene.eval import evaluate_box_scenes

    result = evaluate_box_scenes(scenes)
    ctx.log(f"  {scene}, {mode}, {subset}: box AP25 {result.ap25:.3f}, AP50 {result.ap50:.3f} "
            f"({result.num_pred} boxes, {result.num_gt} GT)")
    return {"scene": scene, "mode": mode, "predictions": subset, "ap25": result.ap25, "ap50": result.ap50,
            "recall25": float(result.max_recall[0]), "recall50": float(result.max_recall[1]),
            "num_gt": result.num_gt, "num_pred": result.num_pred}


def markdown(data: dict) -> str:
    columns = ["scene", "mode", "predictions", "ap25", "ap50", "recall25", "recall50", "num_gt", "num_pred"]
    headers = ["scene", "map", "predictions", "AP25", "AP50", "recall@0.25", "recall@0.5", "GT", "pred"]
    frames = ", ".join(f"{name} {count}" for name, count in data["frames"].items())
    skipped = "".join(f" Skipped {name}: {why}." for name, why in data["skipped"].items())
    return f"Frames: {frames}.{skipped} {data['protocol']}\n\n" + markdown_table(data["rows"], columns, headers)
