"""Tracking benchmark: quality (synthetic instance AP, ScanNet box AP), speed and memory.

    python benchmarks/bench_tracking.py synthetic [--masks geometric|gt] [--frames 120] [--stride 2]
    python benchmarks/bench_tracking.py scannet   [--frames 300]   # box AP25/50, refine time, peak memory
    python benchmarks/bench_tracking.py speed     [--frames 200]   # 7-Scenes: lifting + association ms/frame

Protocols (stated with every number):
- synthetic: class-agnostic instance AP (ScanNet protocol, ``scene.eval.instance_ap``) on the scene's GT
  surface points; each GT point takes the object of its voxel (or of the nearest occupied neighbour voxel,
  2-3.5 cm); GT points on surfaces no frame ever observed are void (like ScanNet's mesh, which only holds
  observed surface). "all" counts floor/walls as instances, "objects" makes them void.
- ScanNet: class-agnostic 3D box AP (``scene.eval.box_ap``) against the 11 GT boxes in the aligned frame
  (object voxel centres mapped with ``axis_align_matrix``); objects voted structure are left out.
Timings are medians over frames; the machine is shared, so they are noisy: rerun before trusting one.
Mask generation is not timed (it is segment2d's budget); "track" = partition + lift + associate + update.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import pickle
import resource
import time
from pathlib import Path

import numpy as np

from lift3d.clean import CleanConfig
from lift3d.lift import LiftConfig
from scene.datasets import open_dataset
from scene.datasets.synthetic import make_scene
from scene.eval import SceneBoxes, evaluate_box_scenes, instance_ap
from segment2d.geometric import GeometricMaskGenerator
from segment2d.types import MaskSet
from tracking import ObjectMap, OnlineTracker, PartitionConfig, RefineConfig, TrackerConfig, refine, track_frame

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_tracker(stride: int) -> OnlineTracker:
    return OnlineTracker(TrackerConfig(), LiftConfig(stride=stride, clean=CleanConfig(drop_overlaps=False)))


PARTITION = PartitionConfig(levels=(0,))


def gt_masks(frame) -> MaskSet:
    ids = frame.instance_ids
    present = np.unique(ids)
    present = present[present > 0]
    return MaskSet.from_masks(ids[None] == present[:, None, None])


def run_tracker(frames, masks_of, stride: int, cpu_times: list | None = None):
    """Track every frame; returns (tracker, per-frame wall seconds); appends CPU seconds to ``cpu_times``."""
    tracker = make_tracker(stride)
    times = []
    for frame in frames:
        masks = masks_of(frame)
        start, cpu = time.perf_counter(), time.process_time()
        track_frame(tracker, frame, masks, PARTITION)
        times.append(time.perf_counter() - start)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - cpu)
    return tracker, np.array(times)


def observed_gt(tracker: OnlineTracker, xyz: np.ndarray, ids: np.ndarray) -> np.ndarray:
    keys = tracker.observed_keys()
    seen = ObjectMap(keys, np.zeros(keys.size, np.int64), np.zeros(1, np.int64), np.ones(1), np.ones(1),
                     np.zeros(1, bool), tracker.voxel_size).label_points(xyz) >= 0
    return np.where(seen, ids, 0)


def instance_scores(object_map: ObjectMap, xyz, gt_ids, structure_ids) -> dict:
    labels = object_map.label_points(xyz)
    masks = labels[None] == object_map.ids[:, None]
    everything = instance_ap(gt_ids, masks, object_map.confidence)
    objects = instance_ap(np.where(np.isin(gt_ids, structure_ids), 0, gt_ids), masks, object_map.confidence)
    return {"n": len(object_map), "all_AP": everything.ap, "all_AP50": everything.ap50, "all_AP25": everything.ap25,
            "obj_AP": objects.ap, "obj_AP50": objects.ap50, "obj_AP25": objects.ap25}


def bench_synthetic(args) -> None:
    scene = make_scene("room", seed=args.seed, noisy=True, num_frames=args.frames)
    generator = GeometricMaskGenerator()
    masks_of = gt_masks if args.masks == "gt" else generator.generate
    frames = (scene.frame(i) for i in range(0, args.frames, args.stride))
    tracker, times = run_tracker(frames, masks_of, args.lift_stride)
    xyz, ids, _ = scene.gt_points()
    gt = observed_gt(tracker, xyz, ids)
    structure = [o.id for o in scene.gt_objects() if o.is_structure]
    print(f"synthetic room-noisy seed {args.seed}: {len(times)} frames (every {args.stride}th of {args.frames}), "
          f"masks={args.masks}, lift stride {args.lift_stride}; GT points observed: {np.mean(gt > 0):.2f}")
    print(f"  track median {np.median(times) * 1e3:.1f} ms/frame (under load)")
    report("online", instance_scores(tracker.object_map(0.0, min_area=0.02), xyz, gt, structure))
    start = time.perf_counter()
    result = refine(tracker, RefineConfig())
    print(f"  refine {time.perf_counter() - start:.2f} s")
    report("online+global", instance_scores(result.object_map, xyz, gt, structure))


def report(name: str, scores: dict) -> None:
    print(f"  {name:14s} objects {scores['n']:3d} | all AP {scores['all_AP']:.3f} AP50 {scores['all_AP50']:.3f} "
          f"AP25 {scores['all_AP25']:.3f} | objects-only AP {scores['obj_AP']:.3f} AP50 {scores['obj_AP50']:.3f} "
          f"AP25 {scores['obj_AP25']:.3f}")


def box_scores(object_map: ObjectMap, gt: dict) -> tuple[float, float]:
    align = np.asarray(gt["axis_align_matrix"], np.float64).reshape(4, 4)
    keep = ~object_map.structure
    boxes = object_map.boxes(align)[keep]
    gt_boxes = np.array([np.r_[np.subtract(b["center_aligned"], np.divide(b["size"], 2)),
                               np.add(b["center_aligned"], np.divide(b["size"], 2))] for b in gt["boxes"]])
    ap = evaluate_box_scenes([SceneBoxes(gt_boxes, boxes, object_map.confidence[keep], "scene0448_01")])
    return float(ap.ap_per_overlap[0]), float(ap.ap_per_overlap[1])


def bench_scannet(args) -> None:
    root = SHARED / "scannet_scene0448_01"
    source = open_dataset(root)
    generator = GeometricMaskGenerator()
    frames = (source[i] for i in range(min(args.frames, len(source))))
    tracker, times = run_tracker(frames, generator.generate, args.lift_stride)
    gt = json.loads((root / "gt_boxes.json").read_text())
    if args.save:
        with open(args.save, "wb") as handle:
            pickle.dump(tracker, handle)
    print(f"ScanNet scene0448_01: {len(times)} frames, geometric masks, lift stride {args.lift_stride}")
    print(f"  track median {np.median(times) * 1e3:.1f} ms/frame (under load)")
    online = tracker.object_map(0.0, min_area=0.02)
    print("  online         objects %3d | box AP25 %.3f AP50 %.3f" % ((len(online),) + box_scores(online, gt)))
    start = time.perf_counter()
    result = refine(tracker, RefineConfig())
    print(f"  refine {time.perf_counter() - start:.2f} s for {len(tracker.segments)} segments")
    print("  online+global  objects %3d | box AP25 %.3f AP50 %.3f" % ((len(result.object_map),) + box_scores(result.object_map, gt)))
    sized_tracker = copy.copy(tracker)  # the tracker's confidence saturation is the refined map's too
    sized_tracker.config = dataclasses.replace(tracker.config, confidence_voxels=1000.0)
    sized = refine(sized_tracker, RefineConfig()).object_map
    print("  online+global, confidence discounted below ~1000 voxels (confidence_voxels=1000): box AP25 %.3f AP50 %.3f"
          % box_scores(sized, gt))
    records = tracker.segments.nbytes() + tracker.surfaces.nbytes()
    print(f"  records {records / 2**20:.0f} MiB; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB "
          "(process total, includes the mask generator)")


def bench_speed(args) -> None:
    source = open_dataset(SHARED / "7scenes_redkitchen")
    generator = GeometricMaskGenerator()
    frames = [source[i] for i in range(min(args.frames, len(source)))]
    masks = [generator.generate(f) for f in frames]
    lookup = {id(f): m for f, m in zip(frames, masks)}
    for stride in (2, 4):
        cpu = []
        tracker, times = run_tracker(frames, lambda f: lookup[id(f)], stride, cpu)
        print(f"7-Scenes redkitchen {len(frames)} frames, lift stride {stride}: track median {np.median(times) * 1e3:.1f} ms wall "
              f"(p90 {np.percentile(times, 90) * 1e3:.1f}), {np.median(cpu) * 1e3:.1f} ms CPU (process time; may exceed wall "
              f"when numpy uses both cores); partition + lift + associate + update; {len(tracker.objects.alive)} objects")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["synthetic", "scannet", "speed"])
    parser.add_argument("--masks", choices=["geometric", "gt"], default="geometric")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--stride", type=int, default=2, help="frame stride (synthetic)")
    parser.add_argument("--lift-stride", type=int, default=2, help="pixel stride of lifting and surface")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="pickle the tracker here (scannet), for analysis")
    args = parser.parse_args()
    defaults = {"synthetic": 120, "scannet": 300, "speed": 200}
    args.frames = args.frames or defaults[args.what]
    {"synthetic": bench_synthetic, "scannet": bench_scannet, "speed": bench_speed}[args.what](args)


if __name__ == "__main__":
    main()
