"""Section "boxes": class-agnostic 3D box AP25 / AP50 on ScanNet scene0448_01 (``scene.eval.box_ap``).

GT: the 11 boxes of ``gt_boxes.json`` (ScanNet's 18 benchmark classes), axis-aligned in ScanNet's aligned
frame (centre +- size / 2). Predictions: every map object's points are moved by ``axis_align_matrix`` and
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
from benchmarks.suites.sequences import SCANNET, real_run

NAME = "boxes"
TITLE = "3D box AP on ScanNet scene0448_01"


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


def run(ctx: BenchContext) -> dict:
    from scene.eval import box_ap

    gt_path = ctx.data_set(SCANNET) / "gt_boxes.json"
    gt, align, labels = read_gt_boxes(gt_path)
    mapped = real_run(ctx, SCANNET)
    rows = []
    for mode, imap in (("online", mapped.online_map), ("online+global", mapped.final_map)):
        for subset, structure in (("all objects", None), ("non-structure", False)):
            boxes, scores = aligned_boxes(imap, align, structure)
            result = box_ap(gt, boxes, scores)
            rows.append({"mode": mode, "predictions": subset, "ap25": result.ap25, "ap50": result.ap50,
                         "recall25": float(result.max_recall[0]), "recall50": float(result.max_recall[1]),
                         "num_gt": result.num_gt, "num_pred": result.num_pred})
            ctx.log(f"  {mode}, {subset}: box AP25 {result.ap25:.3f}, AP50 {result.ap50:.3f} "
                    f"({result.num_pred} boxes)")
    return {"protocol": __doc__.split("\n\n", 1)[1].strip(), "frames": mapped.num_frames,
            "gt_labels": labels, "rows": rows}


def markdown(data: dict) -> str:
    columns = ["mode", "predictions", "ap25", "ap50", "recall25", "recall50", "num_gt", "num_pred"]
    headers = ["map", "predictions", "AP25", "AP50", "recall@0.25", "recall@0.5", "GT", "pred"]
    return f"{data['frames']} frames. {data['protocol']}\n\n" + markdown_table(data["rows"], columns, headers)
