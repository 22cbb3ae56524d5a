"""Speed and proposal quality of the weight-free geometric mask generator (single thread).

    .venv/bin/python benchmarks/bench_geometric.py [--frames 30] [--seeds 0 1] [--sevenscenes 20] [--scannet 20]
        [--cache /tmp/bench_geometric]
    .venv/bin/python benchmarks/bench_geometric.py --digest [--runs 3]

Speed: median wall and CPU milliseconds per 640x480 frame on the noisy synthetic ``room`` preset and on
real 7-Scenes and ScanNet frames (when ``../shared/data`` is present). CPU time is reported too because
wall time is noisy on a shared machine; both are medians. ``--cache DIR`` stores the rendered synthetic
frames there as .npz (rendering them takes longer than segmenting them) and reuses them on later runs.
``--digest``: instead, the generator alone on a fixed set of real frames read beforehand (59 frames spread
over 7-Scenes, both ScanNet scenes, Replica, ICL-NUIM and 3DMatch): a SHA-256 over every mask's
full-resolution bytes, score, box and extra fields (equal digests: the same masks) and the CPU seconds of a
pass over the set, median of ``--runs`` passes (a speed-only change must keep the digest).
Quality (noisy synthetic room, ``frames`` frames evenly spread over each seed's sequence): 2D proposal
recall against the ground-truth instances of at least ``--min-area`` pixels (default 200): recall at
IoU 0.5, average recall over IoU 0.5:0.95 and mean best IoU, for all instances, for structure (floor,
walls) and for objects. Prints a table and one JSON line.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy is imported

import argparse
import hashlib
import json
import time
from pathlib import Path

import cv2
import numpy as np

from scene.datasets import Frame
from scene.datasets.synthetic import make_scene
from scene.eval.masks2d import MaskRecall, mask_recall
from segment2d.geometric import GeometricMaskGenerator

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def timed(generator, frame):
    """(MaskSet, wall seconds, CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    masks = generator.generate(frame)
    return masks, time.perf_counter() - wall, time.process_time() - cpu


def synthetic_frames(seed: int, frames: int, cache: Path | None):
    """(frames evenly spread over the noisy synthetic room of ``seed``, ids of its structure instances),
    read from / written to ``cache``/room-<seed>-<frames>.npz when a cache folder is given."""
    path = cache / f"room-{seed}-{frames}.npz" if cache else None
    if path is not None and path.exists():
        z = np.load(path)
        return [Frame(int(i), 0.0, c, d, k, p, instance_ids=ids) for i, c, d, k, p, ids in
                zip(z["index"], z["color"], z["depth"], z["K"], z["pose"], z["ids"])], z["structure_ids"]
    scene = make_scene("room", seed=seed, noisy=True)
    n = len(scene.source())
    out = [scene.frame(int(i)) for i in np.linspace(0, n - 1, frames).round().astype(int)]
    structure_ids = np.array([o.id for o in scene.layout.objects if o.is_structure], np.int64)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, index=[f.index for f in out], color=[f.color for f in out], depth=[f.depth for f in out],
                 K=[f.K for f in out], pose=[f.pose for f in out], ids=[f.instance_ids for f in out],
                 structure_ids=structure_ids)
    return out, structure_ids


def synthetic_run(generator, seeds, frames: int, min_area: int, cache: Path | None):
    """Per-instance recall results, is-structure flags and timings over the noisy synthetic room."""
    results, structure, walls, cpus = [], [], [], []
    for seed in seeds:
        seed_frames, structure_ids = synthetic_frames(seed, frames, cache)
        for frame in seed_frames:
            masks, wall, cpu = timed(generator, frame)
            walls.append(wall)
            cpus.append(cpu)
            r = mask_recall(frame.instance_ids, masks, min_area=min_area)
            results.append(r)
            structure.append(np.isin(r.gt_ids, structure_ids))
    return MaskRecall.concatenate(results), np.concatenate(structure), walls, cpus


def real_times(generator, name: str, count: int):
    """Wall and CPU seconds per frame on ``count`` frames spread over the real sequence ``name`` of
    ``../shared/data``, or empty lists without the data."""
    root = SHARED / "data" / name
    if not root.exists() or count <= 0:
        return [], []
    from scene.datasets import open_dataset

    source = open_dataset(root)
    walls, cpus = [], []
    for k in np.linspace(0, len(source) - 1, count).round().astype(int):
        _, wall, cpu = timed(generator, source[int(k)])
        walls.append(wall)
        cpus.append(cpu)
    return walls, cpus


# The fixed real frame set of ``--digest``: frames evenly spread over each sequence.
DIGEST_FRAMES = {"7scenes_redkitchen": 20, "scannet_scene0448_01": 15, "scannet_scene0113_00": 10,
                 "replica_office0": 4, "iclnuim_livingroom": 5, "3dmatch_studyroom": 5}


def digest_frames() -> list:
    """(name, index, Frame) of ``DIGEST_FRAMES`` present under ``../shared/data``, read into memory."""
    from scene.datasets import open_dataset

    out = []
    for name, count in DIGEST_FRAMES.items():
        root = SHARED / "data" / name
        if not root.exists():
            continue
        source = open_dataset(root)
        for k in np.linspace(0, len(source) - 1, min(count, len(source))).round().astype(int):
            out.append((name, int(k), source[int(k)]))
    return out


def mask_digest(masks) -> bytes:
    """SHA-256 over a MaskSet's full-resolution masks, scores, boxes and extra fields."""
    h = hashlib.sha256()
    for array in (masks.masks, masks.scores, masks.boxes):
        h.update(np.ascontiguousarray(array).tobytes())
    for key in sorted(masks.extra):
        h.update(key.encode())
        h.update(np.ascontiguousarray(masks.extra[key]).tobytes())
    return h.digest()


def digest_run(generator, runs: int) -> dict:
    """``--digest``: the masks' digest on the fixed real frames and the CPU seconds per pass (``runs`` passes)."""
    frames = digest_frames()
    if not frames:
        raise SystemExit(f"--digest needs the real sequences under {SHARED / 'data'}")
    total = hashlib.sha256()
    for _, _, frame in frames:
        total.update(mask_digest(generator.generate(frame)))
    passes = []
    for _ in range(runs):
        cpu = time.process_time()
        for _, _, frame in frames:
            generator.generate_crops(frame)
        passes.append(time.process_time() - cpu)
    return {"benchmark": "geometric_digest", "frames": len(frames),
            "sets": {name: sum(1 for n, _, _ in frames if n == name) for name in DIGEST_FRAMES},
            "digest": total.hexdigest(), "cpu_s_per_pass": passes, "cpu_s_median": float(np.median(passes)),
            "cpu_ms_per_frame": 1000 * float(np.median(passes)) / len(frames), "load_average": os.getloadavg()}


def quality(r: MaskRecall, subset: np.ndarray) -> dict:
    best = r.best_iou[subset]
    if len(best) == 0:
        return {"n": 0}
    recall = (best[None, :] >= r.thresholds[:, None]).mean(1)
    return {"n": int(len(best)), "recall@0.5": float(recall[0]), "AR": float(recall.mean()),
            "mean_best_iou": float(best.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30, help="frames per synthetic seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--sevenscenes", type=int, default=20, help="7-Scenes frames to time")
    parser.add_argument("--scannet", type=int, default=20, help="ScanNet frames to time")
    parser.add_argument("--cache", type=Path, default=None, help="folder for the rendered synthetic frames (.npz)")
    parser.add_argument("--min-area", type=int, default=200, help="smallest ground-truth instance (pixels)")
    parser.add_argument("--digest", action="store_true",
                        help="only the masks' digest and the CPU seconds on the fixed real frame set")
    parser.add_argument("--runs", type=int, default=3, help="--digest: timed passes over the frames (median)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

    generator = GeometricMaskGenerator()
    generator.generate(make_scene("room", seed=args.seeds[0], noisy=True, num_frames=1).frame(0))  # warm-up
    if args.digest:
        report = digest_run(generator, args.runs)
        print(f"geometric masks on {report['frames']} real frames {report['sets']}: digest {report['digest'][:16]}; "
              f"CPU s per pass {[round(t, 3) for t in report['cpu_s_per_pass']]}, median {report['cpu_s_median']:.3f} "
              f"({report['cpu_ms_per_frame']:.1f} ms/frame, 1 thread); load average {report['load_average']}")
        print(json.dumps(report))
        return
    r, structure, syn_wall, syn_cpu = synthetic_run(generator, args.seeds, args.frames, args.min_area, args.cache)
    real_wall, real_cpu = real_times(generator, "7scenes_redkitchen", args.sevenscenes)
    scannet_wall, scannet_cpu = real_times(generator, "scannet_scene0448_01", args.scannet)

    ms = lambda xs: float(np.median(xs) * 1000) if xs else float("nan")  # noqa: E731
    report = {
        "benchmark": "geometric_masks",
        "synthetic": {"preset": "room-noisy", "seeds": args.seeds, "frames_per_seed": args.frames,
                      "min_area": args.min_area, "all": quality(r, np.ones_like(structure)), "structure": quality(r, structure),
                      "objects": quality(r, ~structure)},
        "ms_median": {"synthetic_wall": ms(syn_wall), "synthetic_cpu": ms(syn_cpu),
                      "7scenes_wall": ms(real_wall), "7scenes_cpu": ms(real_cpu),
                      "scannet_wall": ms(scannet_wall), "scannet_cpu": ms(scannet_cpu)},
        "frames_timed": {"synthetic": len(syn_wall), "7scenes": len(real_wall), "scannet": len(scannet_wall)},
        "threads": 1,
    }
    print(f"geometric masks, noisy synthetic room, seeds {args.seeds}, {args.frames} frames each, "
          f"GT >= {args.min_area} px")
    print(f"{'subset':<10} {'n':>5} {'R@0.5':>7} {'AR':>7} {'mIoU':>7}")
    for name in ("all", "structure", "objects"):
        q = report["synthetic"][name]
        if q["n"]:
            print(f"{name:<10} {q['n']:>5} {q['recall@0.5']:>7.3f} {q['AR']:>7.3f} {q['mean_best_iou']:>7.3f}")
    t = report["ms_median"]
    print(f"median ms/frame (1 thread; wall is noisy on a shared machine): synthetic wall {t['synthetic_wall']:.1f} "
          f"cpu {t['synthetic_cpu']:.1f} | 7-Scenes wall {t['7scenes_wall']:.1f} cpu {t['7scenes_cpu']:.1f} | "
          f"ScanNet wall {t['scannet_wall']:.1f} cpu {t['scannet_cpu']:.1f}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
