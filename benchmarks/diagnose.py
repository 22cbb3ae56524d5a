"""``python -m benchmarks.diagnose``: what a map gets wrong, object by object.

    python -m benchmarks.diagnose room [--seed 1] [--clean] [--frames 48] [--map online|refined] [--top 40]
    python -m benchmarks.diagnose scannet [--scene scannet_scene0113_00] [--iou 0.5] [--stride 1] [--map refined]
    python -m benchmarks.diagnose scannet --set tracking.association.grow_by_vote=true [--set ...]

Maps the sequence with the default pipeline (``Mapper(MapperConfig())``, changed by ``--set KEY=VALUE``
settings as in ``benchmarks.variants``) and prints the predictions in
rank order (by confidence), each with its best GT match: for a synthetic preset the GT instance's kind and
the point IoU on the observed GT surface (the accuracy section's protocol), for a ScanNet scene
(scene0448_01 unless ``--scene``) the GT box's label and the 3D box IoU (the boxes section's protocol,
non-structure objects). A prediction is a true positive when it is the first, in rank order, to reach the
threshold (``--iou``; default 0.5 synthetic, 0.25 ScanNet) on a GT object no earlier one took, as the AP
computation counts it. Each row also shows the object's id, size, observing frames, detection and ranked
confidence and attached share (``scene.parts``), and the multi-view evidence of the refined map
(``multiview_evidence``): the frames whose observed surface shows the object, and over those frames the
mean IoU of the object's visible voxels with the frame's best-matching mask ("view IoU": 1 when one mask
held it whole and nothing else), the mean share of that mask lying on the object ("purity": low when the
object was a piece of larger masks) and the share of its masks the 2D generator voted structure ("plane").
Then the GT objects no prediction took, with the map objects that hold most of their points (synthetic) or
overlap them most. For a synthetic scene also why each found no match (``failure_kind``: dropped, merged
with a neighbour, too small for the protocol, split into pieces, or partial) and, for a merge or a split,
what the views' 2D masks said (``view_pair_evidence``: in how many of the frames seeing both sides one
mask held both, and in how many a mask held one without the other), a tally of those kinds and
the AP with the predictions that are pieces of one GT object left out (``piece_predictions``): what the
map loses to objects it cut up. For both, the joining oracle (``joined_pieces``, ``joined_box_pieces``):
the AP once the predictions lying mostly on one GT object are joined into one, what a perfect grouping of
the map's pieces could give (the merges it made stay). For a ScanNet scene, last, per GT box the box of
its best prediction against it (``box_fit``: size per axis, the points stretching it and their hit
counts against the inside's) and the other predictions holding pieces of it (``pieces_inside``):
whether a near miss is a box too large (stray voxels, a neighbour attached) or too small (the object
split).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.harness import DEFAULT_DATA

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
    parser.add_argument("--scene", dest="scannet_scene", default=SCANNET,
                        help="scannet: the scene folder under --data (default %(default)s)")
    parser.add_argument("--iou", type=float, default=None,
                        help="IoU a true positive needs (default 0.5 synthetic, 0.25 scannet)")
    parser.add_argument("--stride", type=int, default=1, help="scannet: use every n-th frame")
    parser.add_argument("--map", choices=("online", "refined"), default="refined", help="which map (default refined)")
    parser.add_argument("--top", type=int, default=40, help="rows of false positives to show (true positives: all)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="change a setting of MapperConfig (dotted key, TOML value, as benchmarks.variants)")
    args = parser.parse_args(argv)
    from benchmarks.variants import variant_config
    from scene.config import ConfigError

    try:
        args.config = variant_config(args.settings)  # the MapperConfig the sequence is mapped with
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    return args


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


def _map(frames, online: bool, config=None):
    """(the online or the refined map, the per-object multi-view evidence of that map, the tracker);
    ``config``: the ``MapperConfig`` (None: the defaults)."""
    from scene.config import MapperConfig
    from scene.pipeline import Mapper

    mapper = Mapper(MapperConfig() if config is None else config)
    for frame in frames:
        mapper.integrate(frame)
    imap = mapper.map if online else mapper.finalize()
    objects = list(imap)
    evidence = multiview_evidence(mapper.tracker, [o.points for o in objects], imap.metadata.voxel_size)
    return imap, {o.id: {k: v[i] for k, v in evidence.items()} for i, o in enumerate(objects)}, mapper.tracker


def multiview_evidence(tracker, object_points: list, voxel_size: float) -> dict[str, np.ndarray]:
    """How the frames saw each object (``object_points``: per object its M x 3 points, metres), from the
    tracker's records of every frame's segments and observed surface. Per object (arrays aligned with
    the list): ``seen``, the frames whose observed surface holds at least ``min_visible`` of its voxels or a
    tenth of them (as ``tracking.refine`` counts them for the detection consistency); over those frames
    the mean ``view_iou``, the IoU of the object's visible voxels with the frame's segment that matches
    them best (0 in a frame no segment touched), and the mean ``purity``, the share of that segment's
    voxels on the object; and ``plane``, the share of the segments lying mostly on the object that the 2D
    generator voted structure (a large plane in that view). A voxel shared by two objects counts for the
    first."""
    from lift3d.voxels import keys_of_points

    n = len(object_points)
    empty = {name: np.zeros(n) for name in ("seen", "view_iou", "purity", "plane")}
    if n == 0 or len(tracker.segments) == 0:
        return empty
    per_object = [np.unique(keys_of_points(np.asarray(p, np.float64), voxel_size)) for p in object_points]
    keys = np.concatenate(per_object)
    owner = np.repeat(np.arange(n), [k.size for k in per_object])
    keys, first = np.unique(keys, return_index=True)
    owner = owner[first]
    size = np.bincount(owner, minlength=n)

    def owners(query: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(keys, query), keys.size - 1)
        return np.where(keys[at] == query, owner[at], -1)

    records = tracker.segments
    seg_rows, seg_keys = records.all_keys()
    seg_size = np.bincount(seg_rows, minlength=len(records))
    seg_obj = owners(seg_keys)
    hit = seg_obj >= 0
    pairs, inter = np.unique(seg_rows[hit] * n + seg_obj[hit], return_counts=True)
    seg, obj = np.divmod(pairs, n)
    frame = records.frame.view[seg]
    surf_rows, surf_keys = tracker.surfaces.all_keys()
    surf_obj = owners(surf_keys)
    hit = surf_obj >= 0
    views, visible = np.unique(tracker.surfaces.frame.view[surf_rows[hit]] * n + surf_obj[hit], return_counts=True)
    view_of_pair = np.searchsorted(views, frame * n + obj)
    found = (view_of_pair < views.size) & (views[np.minimum(view_of_pair, views.size - 1)] == frame * n + obj)
    seg, obj, inter, view_of_pair = seg[found], obj[found], inter[found], view_of_pair[found]
    v = np.maximum(visible[view_of_pair], inter)  # the surface is sampled more sparsely than the segments
    iou = inter / (seg_size[seg] + v - inter)
    purity = inter / seg_size[seg]
    best_iou, best_purity = np.zeros(views.size), np.zeros(views.size)
    order = np.lexsort((-iou, view_of_pair))
    lead = order[np.r_[True, view_of_pair[order][1:] != view_of_pair[order][:-1]]]
    best_iou[view_of_pair[lead]], best_purity[view_of_pair[lead]] = iou[lead], purity[lead]
    view_obj = views % n
    counted = visible >= np.maximum(tracker.config.association.min_visible, 0.1 * size[view_obj])
    seen = np.bincount(view_obj[counted], minlength=n)
    per_seen = np.maximum(seen, 1)
    # each segment belongs to the object holding most of its voxels
    order = np.lexsort((-inter, seg))
    main = order[np.r_[True, seg[order][1:] != seg[order][:-1]]]
    votes = np.bincount(obj[main], weights=records.structure.view[seg[main]].astype(np.float64), minlength=n)
    return {"seen": seen.astype(np.float64),
            "view_iou": np.bincount(view_obj[counted], weights=best_iou[counted], minlength=n) / per_seen,
            "purity": np.bincount(view_obj[counted], weights=best_purity[counted], minlength=n) / per_seen,
            "plane": votes / np.maximum(np.bincount(obj[main], minlength=n), 1)}


def _row(rank: int, obj, label: str, iou: float, tp: bool, evidence: dict | None = None) -> str:
    from scene.parts import ATTACHED_SHARE, detection_confidence

    share = obj.attributes.get(ATTACHED_SHARE, 0.0)
    seen = "" if evidence is None else (f"  seen {int(evidence['seen']):3d} view IoU {evidence['view_iou']:.2f} "
                                        f"purity {evidence['purity']:.2f} plane {evidence['plane']:.2f}")
    return (f"{rank:4d}  {'TP' if tp else 'fp'}  id {obj.id:4d}  conf {obj.confidence:.2f} "
            f"(detected {detection_confidence(obj):.2f}, attached {share:.2f})  {obj.num_points:6d} pts "
            f"{obj.num_observations:4d} obs{seen}{'  structure' if obj.is_structure else ''}  "
            f"best: {label} IoU {iou:.2f}")


def _print_ranked(objects: list, iou: np.ndarray, labels: list, threshold: float, top: int, out,
                  evidence: dict | None = None) -> np.ndarray:
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
        print(_row(rank, objects[p], labels[g] if g >= 0 else "-", float(iou[p, g]) if g >= 0 else 0.0, tp,
                   None if evidence is None else evidence.get(objects[p].id)), file=out)
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
    from lift3d.voxels import keys_of_points
    from scene.datasets.synthetic import make_scene

    scene = make_scene(args.scene, seed=args.seed, noisy=not args.clean, num_frames=args.frames,
                       width=args.size[0], height=args.size[1])
    imap, evidence, tracker = _map(scene.source(), args.map == "online", args.config)
    gt = scene.gt_points()
    seen = scene.gt_observed(gt, stride=4)
    xyz, ids = gt.xyz[seen], gt.ids[seen].astype(np.int64)
    kinds = {o.id: o.kind for o in scene.gt_objects()}
    masks, scores, pred_ids = point_predictions(imap, xyz, imap.metadata.voxel_size)
    all_masks = masks
    holder = np.full(len(ids), -1, np.int64)  # the map object each GT point is labelled with (-1: none)
    for mask, obj_id in zip(masks, pred_ids):
        holder[mask] = obj_id
    gt_ids = [int(g) for g in np.unique(ids) if (ids == g).sum() >= MIN_REGION]  # the protocol's minimum region
    keep = masks.sum(1) >= MIN_REGION  # smaller predictions do not count either
    masks, pred_ids = masks[keep], pred_ids[keep]
    gt_masks = np.stack([ids == g for g in gt_ids]) if gt_ids else np.zeros((0, len(ids)), bool)
    inter = masks.astype(np.float64) @ gt_masks.T.astype(np.float64)
    union = masks.sum(1)[:, None] + gt_masks.sum(1)[None, :] - inter
    iou = inter / np.maximum(union, 1)
    objects = [imap.get(int(i)) for i in pred_ids]
    labels = [f"{kinds[g]} #{g}" for g in gt_ids]
    threshold = 0.5 if args.iou is None else args.iou
    print(f"{args.scene} seed {args.seed} ({'clean' if args.clean else 'noisy'}), {args.map} map: "
          f"{len(objects)} predictions, {len(gt_ids)} GT objects; TP at point IoU {threshold:g}", file=out)
    taken = _print_ranked(objects, iou, labels, threshold, args.top, out, evidence)
    missed = _missed(taken, len(gt_ids), out)
    kinds_missed = []
    for g in missed:
        holders, counts = np.unique(holder[gt_masks[g]], return_counts=True)
        top = np.argsort(-counts)[:3]
        held = ", ".join(f"{'unmapped' if holders[k] < 0 else f'id {holders[k]}'} {counts[k] / gt_masks[g].sum():.2f}"
                         for k in top)
        kinds_missed.append(failure_kind(gt_masks[g], holder, pred_ids))
        views = _views_between(tracker, _failure_sides(kinds_missed[-1], gt_masks[g], holder),
                               keys_of_points(np.asarray(xyz, np.float64), imap.metadata.voxel_size))
        print(f"  {labels[g]}: {gt_masks[g].sum()} points; held by {held}; {kinds_missed[-1]}{views}", file=out)
    best_iou = _best_point_iou(all_masks, ids)
    _print_headroom(lambda score: _instance_ap(ids, all_masks, score, threshold), scores, best_iou, threshold, out)
    owner = main_instance(all_masks, ids)
    pieces = piece_predictions(all_masks, ids, best_iou, threshold, owner)
    ap_without = _instance_ap(ids, all_masks[~pieces], scores[~pieces], threshold)
    joined_masks, joined_scores = joined_pieces(all_masks, scores, owner)
    _print_joined(lambda m, score: _instance_ap(ids, m, score, threshold), joined_masks, joined_scores,
                  _best_point_iou(joined_masks, ids), len(all_masks), threshold, out)
    counts = {**_counts(taken, len(gt_ids), missed), "pieces": int(pieces.sum()),
              **{kind: kinds_missed.count(kind) for kind in FAILURE_KINDS}}
    print("failures: " + ", ".join(f"{kind} {counts[kind]}" for kind in FAILURE_KINDS) + f"; {counts['pieces']} "
          f"predictions are pieces of one GT object (>= {PIECE_PURITY:g} of them on it, IoU under {threshold:g}): "
          f"AP{round(100 * threshold)} without them {ap_without:.3f}", file=out)
    return counts


# Why a GT object found no match (``failure_kind``), in the order they are tested.
FAILURE_KINDS = ("dropped", "merged", "too small", "split", "partial")
PIECE_PURITY = 0.7  # a prediction with this share of its points on one GT object is a piece of it
MIN_REGION = 100  # the protocol's smallest GT instance and prediction, in GT points


def failure_kind(gt_mask: np.ndarray, holder: np.ndarray, counted: np.ndarray) -> str:
    """Why the GT object of ``gt_mask`` (N bool over the GT points) found no match, from ``holder`` (per GT
    point the map object labelling it, -1: none) and ``counted`` (the ids of the map objects holding at
    least ``MIN_REGION`` points, the protocol's predictions):
    "dropped": most of its points are unlabelled (the object was filtered out or never mapped);
    "merged": one object holds at least half of it but lies mostly on other GT objects;
    "too small": one object holds at least half of it, yet fewer than ``MIN_REGION`` points in all, so the
    protocol does not count it;
    "split": no object holds half of it and at least two hold a tenth each;
    "partial": the rest (its best object covers it too little or reaches too far, IoU under the threshold)."""
    size = max(int(gt_mask.sum()), 1)
    held, counts = np.unique(holder[gt_mask], return_counts=True)
    if counts[held < 0].sum() * 2 > size:
        return "dropped"
    mapped = held >= 0
    held, counts = held[mapped], counts[mapped]
    top = int(np.argmax(counts))
    share, top_id = counts[top] / size, held[top]
    if share >= 0.5 and counts[top] * 2 < np.count_nonzero(holder == top_id):
        return "merged"
    if share >= 0.5 and top_id not in set(np.asarray(counted).tolist()):
        return "too small"
    if share < 0.5 and np.count_nonzero(counts >= 0.1 * size) >= 2:
        return "split"
    return "partial"


def _failure_sides(kind: str, gt_mask: np.ndarray, holder: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The two point sets (N bool over the GT points) whose view evidence tells a failure apart: a merged
    object and the rest of the map object holding it; a split one's two largest pieces; None otherwise."""
    held, counts = np.unique(holder[gt_mask & (holder >= 0)], return_counts=True)
    if held.size == 0:
        return None
    order = held[np.argsort(-counts, kind="stable")]
    if kind == "merged":
        return gt_mask, (holder == order[0]) & ~gt_mask
    if kind == "split" and order.size >= 2:
        return gt_mask & (holder == order[0]), gt_mask & (holder == order[1])
    return None


def _views_between(tracker, sides, point_keys: np.ndarray) -> str:
    """``view_pair_evidence`` of two point sets (``sides``; ``point_keys``: the GT points' voxel keys) as text."""
    if sides is None:
        return ""
    seen, together, apart = view_pair_evidence(tracker, *(np.unique(point_keys[side]) for side in sides[:2]))
    return (f"; views seeing both {seen}: one mask holds both in {together}, "
            f"a mask holds one without the other in {apart}")


def view_pair_evidence(tracker, keys_a: np.ndarray, keys_b: np.ndarray, hold: float = 0.5, apart: float = 0.1,
                       min_voxels: int = 10) -> tuple[int, int, int]:
    """What the 2D masks said about two voxel sets (``keys_a``, ``keys_b``: sorted voxel keys; a key in both
    counts for a): (frames whose masks covered at least ``min_voxels`` of each, frames in which one mask
    held at least ``hold`` of both, frames in which a mask held ``hold`` of one and under ``apart`` of the
    other). Every recorded mask counts, each level of a multi-level generator too. Few "together" against
    many "apart" means the views kept them apart and fusion joined them; the reverse, that the masks
    themselves did (a split or a merge the same in most views, which fusing the views cannot undo)."""
    records = tracker.segments
    rows, keys = records.all_keys()
    side = np.where(_member(keys, keys_a), 0, np.where(_member(keys, keys_b), 1, -1))
    hit = side >= 0
    frame, mask, keys, side = records.frame.view[rows[hit]], records.mask.view[rows[hit]], keys[hit], side[hit]
    if frame.size == 0:
        return 0, 0, 0
    # distinct voxels per (frame, side) and per (frame, mask, side): a mask's parts are separate records
    masks, frames = int(mask.max()) + 1, int(frame.max()) + 1
    seen = np.zeros(frames * 2, np.int64)
    codes, counts = _distinct_voxels(frame * 2 + side, keys)
    seen[codes] = counts
    seen = seen.reshape(frames, 2)
    both = (seen >= min_voxels).all(1)
    codes, counts = _distinct_voxels((frame * masks + mask) * 2 + side, keys)
    one_mask, mask_side = np.divmod(codes, 2)
    held = np.zeros((frames * masks, 2))
    held[one_mask, mask_side] = counts / np.maximum(seen[one_mask // masks, mask_side], 1)
    joined = (held >= hold).all(1)
    parted = ((held[:, 0] >= hold) & (held[:, 1] < apart)) | ((held[:, 1] >= hold) & (held[:, 0] < apart))
    together = joined.reshape(frames, masks).any(1)
    separated = parted.reshape(frames, masks).any(1)
    return int(both.sum()), int((both & together).sum()), int((both & separated).sum())


def _member(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    if sorted_keys.size == 0:
        return np.zeros(keys.size, bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[at] == keys


def _distinct_voxels(groups: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each group code, the number of distinct keys in it)."""
    order = np.lexsort((keys, groups))
    g, k = groups[order], keys[order]
    first = np.r_[True, (g[1:] != g[:-1]) | (k[1:] != k[:-1])]
    return np.unique(g[first], return_counts=True)


def piece_predictions(masks: np.ndarray, gt_ids: np.ndarray, best_iou: np.ndarray, threshold: float,
                      owner: np.ndarray | None = None) -> np.ndarray:
    """Per prediction (P x N masks over the GT points), whether it is a piece of one GT object: at least
    ``MIN_REGION`` points, at least ``PIECE_PURITY`` of them on one GT instance (ids > 0, ``main_instance``;
    ``owner``: its result when already at hand), and its best IoU (``best_iou``) under ``threshold``. Left
    out, the AP shows what the map loses to objects it cut up."""
    owner = main_instance(masks, gt_ids) if owner is None else owner
    return (np.asarray(owner) >= 0) & (np.asarray(best_iou) < threshold)


def joined_pieces(masks: np.ndarray, scores: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The joining oracle: the predictions (P x N masks over the points, their ``scores``) that lie mostly
    on one GT object (``owner``: its index per prediction, -1: none) joined into one prediction per GT
    object (the union of their masks, the best of their scores); the rest stay as they are. Its AP is what
    a perfect joining of the map's pieces could give: merges and boxes stretched by a neighbour remain."""
    owner = np.asarray(owner, np.int64)
    alone = owner < 0
    groups = np.unique(owner[~alone])
    joined = [masks[owner == g].any(0) for g in groups]
    best = [scores[owner == g].max() for g in groups]
    return (np.concatenate([masks[alone], np.asarray(joined, bool).reshape(-1, masks.shape[1])]),
            np.concatenate([scores[alone], np.asarray(best, np.float64)]))


def joined_box_pieces(points: list, scores: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``joined_pieces`` for boxes: the predictions (their points, the GT's frame) with at least
    ``PIECE_PURITY`` of their points inside one GT box (6: min / max corners; the box holding most) joined
    per GT box into the AABB of their points; returns (P' x 6 boxes, scores)."""
    owner = np.full(len(points), -1, np.int64)
    for k, pts in enumerate(points):
        if len(gt) and len(pts):
            share = _inside_boxes(pts, gt).mean(0)
            owner[k] = int(share.argmax()) if share.max() >= PIECE_PURITY else -1
    boxes, best = [], []
    for g in np.unique(owner):
        members = np.flatnonzero(owner == g)
        for group in ([members] if g >= 0 else [[k] for k in members]):
            union = np.concatenate([points[k] for k in group])
            boxes.append(np.concatenate([union.min(0), union.max(0)]))
            best.append(float(np.max(np.asarray(scores)[group])))
    return np.asarray(boxes, np.float64).reshape(-1, 6), np.asarray(best, np.float64)


def main_instance(masks: np.ndarray, gt_ids: np.ndarray) -> np.ndarray:
    """Per prediction (P x N masks), the GT instance (id > 0) holding at least ``PIECE_PURITY`` of its
    points, -1 where none does or it has fewer than ``MIN_REGION`` points."""
    instances = np.array([g for g in np.unique(gt_ids) if g > 0], np.int64)
    if not instances.size or masks.shape[0] == 0:
        return np.full(masks.shape[0], -1, np.int64)
    inside = masks.astype(np.float64) @ np.stack([gt_ids == g for g in instances]).T.astype(np.float64)
    size = masks.sum(1)
    pure = (inside.max(1) >= PIECE_PURITY * np.maximum(size, 1)) & (size >= MIN_REGION)
    return np.where(pure, instances[inside.argmax(1)], -1)


def _print_joined(ap_of, masks, scores: np.ndarray, best_iou: np.ndarray, before: int, threshold: float,
                  out) -> None:
    """The joining oracle's AP (``joined_pieces``), as ranked and ranked by best GT IoU."""
    print(f"joining oracle (the predictions lying >= {PIECE_PURITY:g} on one GT object joined, counting those "
          f"of any size: {before} -> {len(scores)}): AP{round(100 * threshold)} as ranked {ap_of(masks, scores):.3f}, ranked by best GT "
          f"IoU {ap_of(masks, best_iou):.3f}", file=out)


def _instance_ap(gt_ids: np.ndarray, masks: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    from scene.eval import InstanceAPConfig, ScenePredictions, evaluate_scenes

    config = InstanceAPConfig(overlaps=np.array([threshold]))
    result = evaluate_scenes([ScenePredictions(gt_ids, masks, scores)], config)
    return float(result.ap_per_overlap[0])


def _best_point_iou(masks: np.ndarray, gt_ids: np.ndarray) -> np.ndarray:
    """Per prediction (P x N masks), its best point IoU with any GT instance (ids > 0)."""
    from scene.eval import instance_ious

    iou, _, _ = instance_ious(masks, gt_ids)
    return iou.max(axis=1, initial=0.0)


def _print_headroom(ap_of, scores: np.ndarray, best_iou: np.ndarray, threshold: float, out) -> None:
    """The AP as ranked and with the same predictions ranked by their best IoU with the GT (what ranking
    alone could give: the rest is segmentation and box quality)."""
    print(f"AP{round(100 * threshold)}: as ranked {ap_of(scores):.3f}; the same predictions ranked by their "
          f"best GT IoU {ap_of(best_iou):.3f}", file=out)


def diagnose_scannet(args, out=None) -> dict:
    out = sys.stdout if out is None else out
    from benchmarks.suites.boxes import read_gt_boxes
    from benchmarks.suites.common import aligned_boxes
    from scene.datasets import open_dataset
    from scene.eval.box_ap import box_iou_3d

    root = args.data / args.scannet_scene
    gt, align, gt_labels = read_gt_boxes(root / "gt_boxes.json")
    imap, evidence, _ = _map(open_dataset(root, stride=args.stride), args.map == "online", args.config)
    boxes, scores = aligned_boxes(imap, align, False)
    objects = [o for o in imap if not o.is_structure]
    iou = box_iou_3d(boxes, gt)
    labels = [f"{label} #{g}" for g, label in enumerate(gt_labels)]
    threshold = 0.25 if args.iou is None else args.iou
    print(f"{args.scannet_scene}, frame stride {args.stride}, {args.map} map: {len(objects)} non-structure "
          f"predictions, "
          f"{len(gt)} GT boxes; TP at box IoU {threshold:g}", file=out)
    taken = _print_ranked(objects, iou, labels, threshold, args.top, out, evidence)
    missed = _missed(taken, len(gt), out)
    for g in missed:
        best = np.argsort(-iou[:, g])[:3]
        print(f"  {labels[g]}: best " + ", ".join(f"id {objects[p].id} IoU {iou[p, g]:.2f}" for p in best), file=out)
    _print_headroom(lambda score: _box_ap(gt, boxes, score, threshold), scores,
                    iou.max(1) if iou.size else np.zeros(len(objects)), threshold, out)
    points = _aligned_points(objects, align)
    joined_boxes, joined_scores = joined_box_pieces(points, scores, gt)
    joined_iou = box_iou_3d(joined_boxes, gt)
    _print_joined(lambda b, score: _box_ap(gt, b, score, threshold), joined_boxes, joined_scores,
                  joined_iou.max(1) if joined_iou.size else np.zeros(len(joined_scores)), len(objects), threshold,
                  out)
    _print_box_fits(objects, points, iou, gt, labels, out)
    return _counts(taken, len(gt), missed)


def _aligned_points(objects: list, align: np.ndarray) -> list:
    """Each object's points (float64) after the 4 x 4 ``align``: the GT boxes' frame."""
    return [np.asarray(o.points, np.float64) @ align[:3, :3].T + align[:3, 3] for o in objects]


def box_fit(gt_box: np.ndarray, points: np.ndarray, weights: np.ndarray | None, margin: float = 0.05) -> dict:
    """Why a prediction's box misses a GT box (6: min / max corners, metres): its points (N x 3, the GT's
    frame) and their hit counts (``weights``; None: all 1). ``size`` / ``gt_size``: the boxes' extents per
    axis; ``below`` / ``above``: per axis, the points lying more than ``margin`` under the GT box's min
    (over its max) corner: they stretch the box (stray voxels, a neighbour's piece); ``weight_inside`` /
    ``weight_outside``: the median hit count of the points inside the GT box grown by ``margin`` and of
    the others (0 when there are none): few-observation outliers have a lower one."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    weights = np.ones(len(points)) if weights is None else np.asarray(weights, np.float64)
    low, high = np.asarray(gt_box[:3], np.float64), np.asarray(gt_box[3:], np.float64)
    below, above = points < low - margin, points > high + margin
    outside = below.any(1) | above.any(1)
    return {"size": np.ptp(points, 0) if len(points) else np.zeros(3), "gt_size": high - low,
            "below": below.sum(0), "above": above.sum(0), "outside": int(outside.sum()),
            "weight_inside": float(np.median(weights[~outside])) if (~outside).any() else 0.0,
            "weight_outside": float(np.median(weights[outside])) if outside.any() else 0.0}


def pieces_inside(gt_box: np.ndarray, object_points: list, min_points: int = 50) -> list[tuple[int, int, float]]:
    """(index, points inside the GT box, share of the object's points) for each object holding at least
    ``min_points`` points inside ``gt_box`` (6: min / max corners), most points first: the pieces an
    object the map split lies in."""
    found = []
    for k, points in enumerate(object_points):
        inside = int(_inside_boxes(points, np.asarray(gt_box)[None]).sum())
        if inside >= min_points:
            found.append((k, inside, inside / len(points)))
    return sorted(found, key=lambda row: -row[1])


def _inside_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """N x B bool: each of ``points`` (N x 3) inside each of ``boxes`` (B x 6: min / max corners)."""
    return np.all((points[:, None, :] >= boxes[None, :, :3]) & (points[:, None, :] <= boxes[None, :, 3:]), axis=2)


def _print_box_fits(objects: list, points: list, iou: np.ndarray, gt: np.ndarray, labels: list, out) -> None:
    """Per GT box, its best prediction's box against it (``box_fit``) and the pieces inside it; ``points``:
    each object's points in the GT's frame (``_aligned_points``)."""
    if not objects or not len(gt):
        return
    print("box fits (per GT: the best prediction's box size against the GT's, per axis x y z; points more "
          "than 5 cm outside the GT box and their median hit count against the inside's; the pieces inside):",
          file=out)
    for g, label in enumerate(labels):
        p = int(iou[:, g].argmax())
        fit = box_fit(gt[g], points[p], objects[p].weights)
        sides = ", ".join(f"{axis} {int(fit['below'][k])} under / {int(fit['above'][k])} over"
                          for k, axis in enumerate("xyz") if fit["below"][k] or fit["above"][k])
        print(f"  {label}: id {objects[p].id} IoU {iou[p, g]:.2f} size {np.round(fit['size'], 2)} vs "
              f"{np.round(fit['gt_size'], 2)}; {fit['outside']} points outside ({sides or 'none'}), hits "
              f"{fit['weight_outside']:.0f} vs {fit['weight_inside']:.0f} inside", file=out)
        pieces = [row for row in pieces_inside(gt[g], points) if row[0] != p][:3]
        if pieces:
            print("      other pieces inside: " + ", ".join(
                f"id {objects[k].id} {n} pts ({share:.2f} of it, box IoU {iou[k, g]:.2f}, conf "
                f"{objects[k].confidence:.2f})" for k, n, share in pieces), file=out)


def _box_ap(gt: np.ndarray, boxes: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    from scene.eval import SceneBoxes, evaluate_box_scenes

    return float(evaluate_box_scenes([SceneBoxes(gt, boxes, scores)], (threshold,)).ap_per_overlap[0])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.settings:
        print(f"settings changed: {', '.join(args.settings)}")
    if args.scene == "scannet":
        if not (args.data / args.scannet_scene / "gt_boxes.json").is_file():
            print(f"diagnose: no {args.scannet_scene}/gt_boxes.json under {args.data}", file=sys.stderr)
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
