"""Median per-frame cost of lift3d on real 7-Scenes frames (640 x 480).

Stages timed per frame: lifting (cleaning + back-projection + voxelisation + split + Segment3D
packaging), one batched overlap query of all segments against the label store, one batched insert
of all segments, a visibility test of the store's voxels, and TSDF integration. Masks come from the
project's geometric generator when it works, else from a stand-in (connected regions of depth
quantised in 25 cm bands, the 45 largest); mask generation is not timed.

    .venv/bin/python benchmarks/bench_lift3d.py [--frames 12] [--repeats 3] [--stride 2]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from lift3d import LabelStore, LiftConfig, TSDFFusion, classify_voxels, lift_masks, stack_voxel_keys
from segment2d.types import MaskSet

KITCHEN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "7scenes_redkitchen"
K = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])


def read_frame(i: int):
    raw = cv2.imread(str(KITCHEN / f"frame-{i:06d}.depth.png"), cv2.IMREAD_UNCHANGED)
    depth = np.where(raw == 65535, 0, raw).astype(np.float32) / 1000.0
    color = cv2.cvtColor(cv2.imread(str(KITCHEN / f"frame-{i:06d}.color.jpg")), cv2.COLOR_BGR2RGB)
    return depth, color, np.loadtxt(KITCHEN / f"frame-{i:06d}.pose.txt")


def depth_band_masks(depth: np.ndarray, band: float = 0.25, count: int = 45) -> MaskSet:
    level = np.where(depth > 0, (depth / band).astype(np.int32), -1)
    steps = np.zeros(depth.shape, bool)
    steps[:, 1:] |= level[:, 1:] != level[:, :-1]
    steps[1:] |= level[1:] != level[:-1]
    _, labels, stats, _ = cv2.connectedComponentsWithStats((~steps & (level >= 0)).astype(np.uint8), connectivity=4)
    largest = np.argsort(-stats[1:, cv2.CC_STAT_AREA])[:count] + 1
    return MaskSet.from_masks(labels[None] == largest[:, None, None])


def make_masks(frames):
    """(mask sets, generator name): the geometric generator if it runs here, else the stand-in."""
    try:
        from scene.datasets import Frame
        from segment2d.geometric import GeometricMaskGenerator

        generator = GeometricMaskGenerator()
        sets = [generator.generate(Frame(i, i / 30, c, d, K, p).validate()) for i, (d, c, p) in frames]
        return sets, "segment2d.GeometricMaskGenerator"
    except Exception as error:  # a concurrent module may be unfinished: fall back, and say so
        print(f"geometric generator unavailable ({type(error).__name__}: {error}); using depth-band stand-in")
        return [depth_band_masks(d) for _, (d, _, _) in frames], "depth-band stand-in"


def greedy_labels(groups, labels, counts, sizes, next_label: int, min_overlap: float = 0.3):
    """A stand-in for tracking: each segment takes the label it overlaps most when that covers
    ``min_overlap`` of its voxels, else a new label. Returns (label per segment, next free label)."""
    best = np.full(sizes.size, -1, np.int64)
    best_count = np.zeros(sizes.size, np.int64)
    order = np.lexsort((counts, groups))  # per group, the largest count comes last
    best[groups[order]], best_count[groups[order]] = labels[order], counts[order]
    fresh = best_count < min_overlap * sizes
    best[fresh] = np.arange(next_label, next_label + fresh.sum())
    return best, next_label + int(fresh.sum())


def timed(fn):
    """(result, (wall ms, this thread's CPU ms)): CPU time is the steadier number on a shared machine."""
    wall, cpu = time.perf_counter(), time.thread_time()
    out = fn()
    return out, ((time.perf_counter() - wall) * 1e3, (time.thread_time() - cpu) * 1e3)


def run(frame_ids, repeats: int, stride: int, level: int | None) -> None:
    frames = [(i, read_frame(i)) for i in frame_ids]
    mask_sets, source = make_masks(frames)
    if level is not None:
        mask_sets = [m.subset(m.extra["level"] == level) if "level" in m.extra else m for m in mask_sets]
        source += f", level {level} only"
    config = LiftConfig(stride=stride)
    times: dict[str, list[float]] = {k: [] for k in ("lift", "overlaps", "store add", "visibility", "tsdf")}
    counts = []
    for _ in range(repeats):
        store, fusion, next_label = LabelStore(), TSDFFusion(voxel_size=0.02), 0
        for (i, (depth, color, pose)), masks in zip(frames, mask_sets):
            segments, t = timed(lambda: lift_masks(depth, K, pose, masks, color, i, config))
            times["lift"].append(t)
            counts.append((len(masks), len(segments), sum(s.num_voxels for s in segments)))
            keys, groups = stack_voxel_keys(segments)
            (g, l, c), t = timed(lambda: store.overlaps(keys, groups))
            times["overlaps"].append(t)
            labels, next_label = greedy_labels(g, l, c, np.array([s.num_voxels for s in segments]), next_label)
            _, t = timed(lambda: store.add(keys, labels[groups]))
            times["store add"].append(t)
            _, t = timed(lambda: classify_voxels(store.index.keys, 0.02, depth, K, pose))
            times["visibility"].append(t)
            _, t = timed(lambda: fusion.integrate_arrays(depth, K, pose, color))
            times["tsdf"].append(t)
    masks, segs, voxels = np.array(counts).mean(0)
    print(f"7-Scenes redkitchen, {len(frames)} frames x {repeats} repeats, 640x480, stride {stride}, voxel 2 cm")
    print(f"masks from {source}: {masks:.1f} masks -> {segs:.1f} segments, {voxels:.0f} voxels per frame")
    print(f"store after the last pass: {len(store.index)} voxels, {len(store.labels)} labels")
    print("  stage        wall median    CPU median    CPU min   (ms per frame)")
    for name, values in times.items():
        wall, cpu = np.array(values).T
        print(f"  {name:11s} {np.median(wall):11.2f} {np.median(cpu):13.2f} {np.min(cpu):10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--level", type=int, default=None, help="lift one level of the geometric generator's masks")
    args = parser.parse_args()
    if not KITCHEN.is_dir():
        raise SystemExit(f"{KITCHEN}: shared data absent")
    run([5 * k for k in range(args.frames)], args.repeats, args.stride, args.level)


if __name__ == "__main__":
    main()
