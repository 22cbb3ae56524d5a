"""``python -m benchmarks.level_pairs``: does the 2D generator separate objects standing on others?

    python -m benchmarks.level_pairs room --seeds 2 3 4 5 [--frames 48] [--set normal_smooth=3]

For every pair of non-structure GT objects of a synthetic scene where one stands on the other (on its top or
on one of its boards: footprints overlapping, the upper one's bottom within the other's height), over the
frames showing both (at least ``--min-px`` pixels each): per level of the geometric generator (0 geometry, 1
geometry + colour, 2 whole objects) the views in which the region holding most of the upper object also holds
over 30% of the lower one ("held") and those in which it holds under 10% of it ("apart"), and the same over
the masks the generator offers ("offered": any mask holding half the upper object). A merge the 2D masks make
in most views is one the map's multi-view fusion cannot undo. ``--set FIELD=VALUE`` overrides a
``GeometricConfig`` field (repeatable). Prints one line per pair and the totals.
"""
from __future__ import annotations

import argparse
from dataclasses import fields

import numpy as np

from segment2d.geometric import GeometricConfig, GeometricMaskGenerator

LEVELS = ("L0", "L1", "L2", "offered")
HOLDS, BOTH, APART = 0.5, 0.3, 0.1  # a region holds an object's share; then of the other: held / apart


def resting_pairs(objects, gap: float = 0.02) -> list[tuple]:
    """(upper, lower) non-structure objects (``SceneObject``s) whose footprints overlap, the upper one's
    bottom lying above the lower one's bottom and at most ``gap`` metres above its top (on its top or on
    one of its boards)."""
    pairs = []
    solid = [o for o in objects if not o.is_structure]
    for upper in solid:
        for lower in solid:
            lo_u, hi_u, lo_l, hi_l = (np.asarray(v) for v in (upper.aabb_min, upper.aabb_max,
                                                              lower.aabb_min, lower.aabb_max))
            overlap = np.all(lo_u[:2] < hi_l[:2]) and np.all(hi_u[:2] > lo_l[:2])
            if upper is not lower and overlap and lo_l[2] + gap < lo_u[2] <= hi_l[2] + gap:
                pairs.append((upper, lower))
    return pairs


def label_verdict(labels: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> tuple[bool, bool]:
    """(held, apart) for one label image and two object masks of its shape: the label holding most of
    ``upper`` (0 = unlabelled never counts) holds half of it and over ``BOTH`` / under ``APART`` of
    ``lower``."""
    n = int(labels.max()) + 1
    share_u = np.bincount(labels[upper], minlength=n) / max(int(upper.sum()), 1)
    share_l = np.bincount(labels[lower], minlength=n) / max(int(lower.sum()), 1)
    share_u[0] = 0.0
    best = int(share_u.argmax())
    main = share_u[best] >= HOLDS
    return bool(main and share_l[best] > BOTH), bool(main and share_l[best] < APART)


def offered_verdict(crops, upper: np.ndarray, lower: np.ndarray) -> tuple[bool, bool]:
    """(held, apart) over the offered masks (``MaskCrops.crops``): some mask holding half of ``upper`` holds
    over ``BOTH`` / under ``APART`` of ``lower``."""
    held = apart = False
    n_u, n_l = max(int(upper.sum()), 1), max(int(lower.sum()), 1)
    for x0, y0, crop in crops:
        h, w = crop.shape
        in_u = np.count_nonzero(crop & upper[y0:y0 + h, x0:x0 + w]) / n_u
        in_l = np.count_nonzero(crop & lower[y0:y0 + h, x0:x0 + w]) / n_l
        held |= in_u >= HOLDS and in_l > BOTH
        apart |= in_u >= HOLDS and in_l < APART
    return held, apart


def frame_verdicts(generator: GeometricMaskGenerator, frame, pairs, min_px: int) -> dict:
    """Per (upper id, lower id) of ``pairs`` shown by ``frame`` (``min_px`` pixels each): a 4 x 2 bool
    array, rows ``LEVELS``, columns (held, apart). Empty when no pair is shown."""
    ids = frame.instance_ids
    shown = [(u, l) for u, l in pairs if (ids == u.id).sum() >= min_px and (ids == l.id).sum() >= min_px]
    if not shown:
        return {}
    crops, levels, f = generator.generate_with_levels(frame)
    if not levels:
        return {(u.id, l.id): np.zeros((len(LEVELS), 2), bool) for u, l in shown}
    sub = ids[f // 2::f, f // 2::f]  # the work pixels' own full-resolution pixels (``depth_ops.subsample``)
    out = {}
    for upper, lower in shown:
        rows = [label_verdict(lv.labels, sub == upper.id, sub == lower.id) for lv in levels[:3]]
        rows.append(offered_verdict(crops.crops, ids == upper.id, ids == lower.id))
        out[(upper.id, lower.id)] = np.array(rows, bool)
    return out


def tally(scene, generator: GeometricMaskGenerator, min_px: int = 200) -> tuple[list, dict, dict]:
    """(pairs, per pair the 4 x 2 counts of views (held, apart) per level, per pair the views showing it)."""
    pairs = resting_pairs(scene.gt_objects())
    counts = {(u.id, l.id): np.zeros((len(LEVELS), 2), np.int64) for u, l in pairs}
    views = dict.fromkeys(counts, 0)
    for frame in scene.frames():
        for key, verdict in frame_verdicts(generator, frame, pairs, min_px).items():
            counts[key] += verdict
            views[key] += 1
    return pairs, counts, views


def _overrides(items: list[str]) -> dict:
    """``FIELD=VALUE`` items as ``GeometricConfig`` keyword arguments (its int and float fields); a bad one
    exits with one line naming it."""
    types = {f.name: f.type for f in fields(GeometricConfig)}
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in types:
            raise SystemExit(f"level_pairs: unknown GeometricConfig field {name!r}")
        if types[name] not in ("int", "float"):
            raise SystemExit(f"level_pairs: --set takes int and float fields; {name} is {types[name]}")
        try:
            out[name] = int(value) if types[name] == "int" else float(value)
        except ValueError:
            raise SystemExit(f"level_pairs: {name} must be {types[name]}, got {value!r}") from None
    return out


def main(argv: list[str] | None = None) -> None:
    from scene.datasets.synthetic import make_scene

    parser = argparse.ArgumentParser(prog="python -m benchmarks.level_pairs", description=__doc__.splitlines()[0])
    parser.add_argument("preset", help="synthetic preset base (room, tabletop, cluttered)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 4, 5])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--clean", action="store_true", help="the clean sensor instead of the noisy one")
    parser.add_argument("--min-px", type=int, default=200, help="pixels each object shows in a counted view")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args(argv)
    try:
        generator = GeometricMaskGenerator(**_overrides(args.overrides))
    except ValueError as error:
        raise SystemExit(f"level_pairs: {error}") from None
    total, total_views = np.zeros((len(LEVELS), 2), np.int64), 0
    for seed in args.seeds:
        scene = make_scene(args.preset, seed=seed, noisy=not args.clean, num_frames=args.frames, width=640, height=480)
        pairs, counts, views = tally(scene, generator, args.min_px)
        for upper, lower in pairs:
            key = (upper.id, lower.id)
            cells = " ".join(f"{name} {held}/{apart}" for name, (held, apart) in zip(LEVELS, counts[key]))
            print(f"{args.preset} seed {seed}: {upper.kind} #{upper.id} on {lower.kind} #{lower.id}: "
                  f"{views[key]} views; held/apart {cells}")
            total += counts[key]
            total_views += views[key]
    cells = " ".join(f"{name} {held}/{apart}" for name, (held, apart) in zip(LEVELS, total))
    print(f"total: {total_views} views; held/apart {cells}")


if __name__ == "__main__":
    main()
