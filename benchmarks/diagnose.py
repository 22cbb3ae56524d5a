"""``python -m benchmarks.diagnose``: what a map gets wrong, object by object.

    python -m benchmarks.diagnose room [--seed 1] [--clean] [--frames 48] [--map online|refined] [--top 40]
    python -m benchmarks.diagnose scannet [--data ../shared/data] [--stride 1] [--map refined]

Maps the sequence with the default pipeline (``Mapper(MapperConfig())``) and prints the predictions in
rank order (by confidence), each with its best GT match: for a synthetic preset the GT instance's kind and
the point IoU on the observed GT surface (the accuracy section's protocol), for ScanNet scene0448_01 the
GT box's label and the 3D box IoU (the boxes section's protocol, non-structure objects). A prediction is a
true positive when it is the first, in rank order, to reach the threshold (0.5 synthetic, 0.25 ScanNet)
on a GT object no earlier one took, as the AP computation counts it. Each row also shows the object's id,
size, detection and ranked confidence and attached share (``scene.parts``). Then the GT objects no
prediction took, with the map objects that hold most of their points (synthetic) or overlap them most.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCANNET = "scannet_scene0448_01"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.diagnose", description=__doc__.splitlines()[0])
    parser.add_argument("scene", help="a synthetic preset base (room, tabletop, cluttered) or 'scannet'")
    parser.add_argument("--seed", type=int, default=0, help="synthetic seed (default 0)")
    parser.add_argument("--clean", action="store_true", help="synthetic: the clean sensor instead of the noisy one")
    parser.add_argument("--frames", type=int, default=48, help="synthetic: frames (default 48)")
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"),
                        help="synthetic: frame size (default 640 480)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared real data (default: %(default)s)")
    parser.add_argument("--stride", type=int, default=1, help="scannet: use every n-th frame")
    parser.add_argument("--map", choices=("online", "refined"), default="refined", help="which map (default refined)")
    parser.add_argument("--top", type=int, default=40, help="rows of false positives to show (true positives: all)")
    return parser.parse_args(argv)


def greedy_matches(iou: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """P x G IoUs and P scores -> (rank order of the predictions, per prediction the GT index it takes or -1):
    in rank order, each prediction takes its best GT not yet taken when that reaches ``threshold``."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    taken = np.full(iou.shape[0], -1, np.int64)
    free = np.ones(iou.shape[1], bool)
    for p in order:
        candidates = np.where(free, iou[p], -1.0)
        if candidates.size and candidates.max() >= threshold:
            g = int(candidates.argmax())
            taken[p], free[g] = g, False
    return order, taken


def _map(frames, online: bool):
    from scene.config import MapperConfig
    from scene.pipeline import Mapper

    mapper = Mapper(MapperConfig())
    for frame in frames:
        mapper.integrate(frame)
    return mapper.map if online else mapper.finalize()


def _row(rank: int, obj, label: str, iou: float, tp: bool) -> str:
    from scene.parts import ATTACHED_SHARE, detection_confidence

    share = obj.attributes.get(ATTACHED_SHARE, 0.0)
    return (f"{rank:4d}  {'TP' if tp else 'fp'}  id {obj.id:4d}  conf {obj.confidence:.2f} "
            f"(detected {detection_confidence(obj):.2f}, attached {share:.2f})  {obj.num_points:6d} pts"
            f"{'  structure' if obj.is_structure else ''}  best: {label} IoU {iou:.2f}")


def _print_ranked(objects: list, iou: np.ndarray, labels: list, threshold: float, top: int, out) -> np.ndarray:
    scores = np.array([o.confidence for o in objects])
    order, taken = greedy_matches(iou, scores, threshold)
    shown_fp = 0
    for rank, p in enumerate(order):
        best = int(iou[p].argmax()) if iou.shape[1] else -1
        tp = taken[p] >= 0
        if not tp:
            shown_fp += 1
            if shown_fp > top:
                continue
        g = int(taken[p]) if tp else best
        print(_row(rank, objects[p], labels[g] if g >= 0 else "-", float(iou[p, g]) if g >= 0 else 0.0, tp), file=out)
    return taken


def _missed(taken: np.ndarray, num_gt: int, out) -> list[int]:
    """GT indices no prediction took, after printing their heading."""
    missed = sorted(set(range(num_gt)) - set(taken[taken >= 0].tolist()))
    print(f"missed ({len(missed)}):", file=out)
    return missed


def _counts(taken: np.ndarray, num_gt: int, missed: list[int]) -> dict:
    return {"predictions": len(taken), "gt": num_gt, "tp": int((taken >= 0).sum()), "missed": len(missed)}


def diagnose_synthetic(args, out=None) -> dict:
    out = sys.stdout if out is None else out
    from benchmarks.suites.common import point_predictions
    from scene.datasets.synthetic import make_scene

    scene = make_scene(args.scene, seed=args.seed, noisy=not args.clean, num_frames=args.frames,
                       width=args.size[0], height=args.size[1])
    imap = _map(scene.source(), args.map == "online")
    gt = scene.gt_points()
    seen = scene.gt_observed(gt, stride=4)
    xyz, ids = gt.xyz[seen], gt.ids[seen].astype(np.int64)
    kinds = {o.id: o.kind for o in scene.gt_objects()}
    masks, _, pred_ids = point_predictions(imap, xyz, imap.metadata.voxel_size)
    holder = np.full(len(ids), -1, np.int64)  # the map object each GT point is labelled with (-1: none)
    for mask, obj_id in zip(masks, pred_ids):
        holder[mask] = obj_id
    gt_ids = [int(g) for g in np.unique(ids) if (ids == g).sum() >= 100]  # the protocol's minimum region
    keep = masks.sum(1) >= 100  # smaller predictions do not count either
    masks, pred_ids = masks[keep], pred_ids[keep]
    gt_masks = np.stack([ids == g for g in gt_ids]) if gt_ids else np.zeros((0, len(ids)), bool)
    inter = masks.astype(np.float64) @ gt_masks.T.astype(np.float64)
    union = masks.sum(1)[:, None] + gt_masks.sum(1)[None, :] - inter
    iou = inter / np.maximum(union, 1)
    objects = [imap.get(int(i)) for i in pred_ids]
    labels = [f"{kinds[g]} #{g}" for g in gt_ids]
    print(f"{args.scene} seed {args.seed} ({'clean' if args.clean else 'noisy'}), {args.map} map: "
          f"{len(objects)} predictions, {len(gt_ids)} GT objects; TP at point IoU 0.5", file=out)
    taken = _print_ranked(objects, iou, labels, 0.5, args.top, out)
    missed = _missed(taken, len(gt_ids), out)
    for g in missed:
        holders, counts = np.unique(holder[gt_masks[g]], return_counts=True)
        top = np.argsort(-counts)[:3]
        held = ", ".join(f"{'unmapped' if holders[k] < 0 else f'id {holders[k]}'} {counts[k] / gt_masks[g].sum():.2f}"
                         for k in top)
        print(f"  {labels[g]}: {gt_masks[g].sum()} points; held by {held}", file=out)
    return _counts(taken, len(gt_ids), missed)


def diagnose_scannet(args, out=None) -> dict:
    out = sys.stdout if out is None else out
    from benchmarks.suites.boxes import read_gt_boxes
    from benchmarks.suites.common import aligned_boxes
    from scene.datasets import open_dataset
    from scene.eval.box_ap import box_iou_3d

    root = args.data / SCANNET
    gt, align, gt_labels = read_gt_boxes(root / "gt_boxes.json")
    imap = _map(open_dataset(root, stride=args.stride), args.map == "online")
    boxes, _ = aligned_boxes(imap, align, False)
    objects = [o for o in imap if not o.is_structure]
    iou = box_iou_3d(boxes, gt)
    labels = [f"{label} #{g}" for g, label in enumerate(gt_labels)]
    print(f"{SCANNET}, frame stride {args.stride}, {args.map} map: {len(objects)} non-structure predictions, "
          f"{len(gt)} GT boxes; TP at box IoU 0.25", file=out)
    taken = _print_ranked(objects, iou, labels, 0.25, args.top, out)
    missed = _missed(taken, len(gt), out)
    for g in missed:
        best = np.argsort(-iou[:, g])[:3]
        print(f"  {labels[g]}: best " + ", ".join(f"id {objects[p].id} IoU {iou[p, g]:.2f}" for p in best), file=out)
    return _counts(taken, len(gt), missed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.scene == "scannet":
        if not (args.data / SCANNET / "gt_boxes.json").is_file():
            print(f"diagnose: no {SCANNET}/gt_boxes.json under {args.data}", file=sys.stderr)
            return 2
        diagnose_scannet(args)
    else:
        from scene.datasets.synthetic.presets import PRESET_NAMES

        if f"{args.scene}-noisy" not in PRESET_NAMES:
            print(f"diagnose: unknown scene {args.scene!r}: a synthetic preset base "
                  f"({', '.join(sorted({p.split('-')[0] for p in PRESET_NAMES}))}) or 'scannet'", file=sys.stderr)
            return 2
        diagnose_synthetic(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
