"""Track ids as association evidence (``tracking.track_ids``): the noisy synthetic room with ground-truth
masks, without track ids, with consistent ids (each mask's instance id: a perfect video tracker), with a
share of ids swapped between the frame's masks (id switches), and with one id on every mask (a broken
tracker). Class-agnostic instance AP on the GT surface points observed by some frame, online map and after
the global refinement, as tests/test_tracking_quality.py measures it.

    python -m benchmarks.bench_track_ids [--seeds 0,1,2,3,4,5] [--frames 32]

Deterministic (no timing). Seeds 0-2 were looked at while choosing the mechanism's rules; 3-5 held out.
"""
from __future__ import annotations

import argparse

import numpy as np

from lift3d.clean import CleanConfig
from lift3d.lift import LiftConfig
from scene.datasets.synthetic import make_scene
from scene.eval import instance_ap
from segment2d.groundtruth import GroundTruthMaskGenerator
from segment2d.types import MaskSet
from tracking import ObjectMap, OnlineTracker, PartitionConfig, RefineConfig, TrackerConfig, refine, track_frame
from tracking.track_ids import TrackIdConfig

MODES = (("none", 0.0), ("consistent", 0.0), ("swapped", 0.1), ("swapped", 0.3), ("one id", 0.0))


def track_ids_of(masks: MaskSet, mode: str, share: float, rng) -> np.ndarray:
    ids = masks.extra["instance_id"].copy()
    if mode == "swapped":
        flip = rng.random(ids.size) < share
        ids[flip] = rng.permutation(ids)[flip]
    elif mode == "one id":
        ids[:] = 0
    return ids


def run(scene, frames, mode: str, share: float, seed: int) -> OnlineTracker:
    rng = np.random.default_rng(seed)
    lift = LiftConfig(stride=1, clean=CleanConfig(drop_overlaps=False, erode_px=1, min_points=30))
    tracker = OnlineTracker(TrackerConfig(track_ids=TrackIdConfig(enabled=mode != "none")), lift)
    generator = GroundTruthMaskGenerator(min_area=1)
    for i in frames:
        frame = scene.frame(i)
        masks = generator.generate(frame)
        extra = {**masks.extra, "track_id": track_ids_of(masks, mode, share, rng)}
        track_frame(tracker, frame, MaskSet(masks.masks, masks.scores, masks.boxes, extra), PartitionConfig(levels=(0,)))
    return tracker


def ap50(tracker: OnlineTracker, object_map: ObjectMap, scene) -> float:
    xyz, ids, _ = scene.gt_points()
    keys = tracker.observed_keys()
    observed = ObjectMap(keys, np.zeros(keys.size, np.int64), np.zeros(1, np.int64), np.ones(1), np.ones(1),
                         np.zeros(1, bool), tracker.voxel_size).label_points(xyz) >= 0
    labels = object_map.label_points(xyz)
    return instance_ap(np.where(observed, ids, 0), labels[None] == object_map.ids[:, None], object_map.confidence).ap50


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4,5")
    parser.add_argument("--frames", type=int, default=32, help="frames 0, 2, ... below this")
    args = parser.parse_args(argv)
    print("| seed | track ids | online AP50 | refined AP50 | objects |\n|---|---|---|---|---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        scene = make_scene("room", seed=seed, noisy=True, num_frames=120, width=320, height=240)
        for mode, share in MODES:
            tracker = run(scene, range(0, args.frames, 2), mode, share, seed)
            online = ap50(tracker, tracker.object_map(0.0, min_area=0.008), scene)
            refined = ap50(tracker, refine(tracker, RefineConfig(min_area=0.008)).object_map, scene)
            label = f"{mode} {share:.0%}" if mode == "swapped" else mode
            print(f"| {seed} | {label} | {online:.3f} | {refined:.3f} | {len(tracker.objects.alive)} |", flush=True)


if __name__ == "__main__":
    main()
