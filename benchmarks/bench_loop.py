"""A long run over one room: a ScanNet sequence played several times over (frame indices increasing, the
same poses and images again), as a robot mapping a room for long would. Measures, after each pass, the
tracker's record bytes (``nbytes()``), the process's RSS and peak RSS, and, in a forked child (so the
parent's state and peak stay its own), the global pass's CPU seconds and the refined map's box AP25 /
AP50 on the scene's GT boxes. Online cost: CPU seconds of ``Mapper.integrate`` per frame (lift, associate,
map update; the masks are given).

The 2D masks are computed once per source frame and cached on disk (``--masks``): every pass and every
run reads the same masks, and the segmenter's time stays out of the measurement.

    .venv/bin/python -m benchmarks.bench_loop --scene scannet_scene0113_00 --loops 4 --out /tmp/loop.json
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np


def record_bytes(tracker) -> dict:
    """Bytes of the tracker's per-frame records and of the other tables that grow as it runs."""
    objects = tracker.objects
    table = sum(a.nbytes for a in objects._data.values()) + objects.best_box.nbytes
    separated = tracker._separated.codes.nbytes + tracker._separated.counts.nbytes
    return {"segments": tracker.segments.nbytes(), "surfaces": tracker.surfaces.nbytes(),
            "free_space": tracker.free_space.nbytes(), "object_table": int(table),
            "separated_pairs": int(separated), "bridged_pairs": len(tracker._bridged),
            "segment_rows": int(tracker.segments.keys.size), "surface_rows": int(tracker.surfaces.keys.size),
            "recorded_frames": len(tracker.surfaces), "map_voxels": len(tracker.labels.index),
            "objects_created": len(objects), "frames_forgotten": getattr(tracker, "frames_forgotten", 0)}


class _Timed:
    """Wraps a bound method: its calls' summed CPU seconds (``seconds``)."""

    def __init__(self, method):
        self.method, self.seconds, self.calls = method, 0.0, 0

    def __call__(self, *args, **kwargs):
        start = time.process_time()
        try:
            return self.method(*args, **kwargs)
        finally:
            self.seconds += time.process_time() - start
            self.calls += 1


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def looped(source, loops: int):
    """(frame with its index shifted past the previous passes', the source frame's own index)."""
    span = int(source[len(source) - 1].index) + 1
    for loop in range(loops):
        for k in range(len(source)):
            frame = source[k]
            yield replace(frame, index=loop * span + int(frame.index)), int(frame.index)


def cached_masks(generator, frame, original: int, folder: Path):
    path = folder / f"{original:06d}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    masks = generator.generate(frame)
    path.write_bytes(pickle.dumps(masks, protocol=pickle.HIGHEST_PROTOCOL))
    return masks


def box_ap(imap, gt_path: Path) -> dict:
    from benchmarks.suites.boxes import read_gt_boxes
    from benchmarks.suites.common import aligned_boxes
    from scene.eval import SceneBoxes, evaluate_box_scenes

    gt, align, _ = read_gt_boxes(gt_path)
    out = {}
    for subset, structure in (("all", None), ("non_structure", False)):
        boxes, scores = aligned_boxes(imap, align, structure)
        result = evaluate_box_scenes([SceneBoxes(gt, boxes, scores, "scene")])
        out[subset] = {"ap25": result.ap25, "ap50": result.ap50}
    return out


def finalize_in_child(mapper, gt_path: Path) -> dict:
    """Finalize a copy of the mapper in a forked child; its global pass CPU seconds, peak RSS and box AP."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: finalize, report, leave without running the parent's exit handlers
        os.close(read)
        try:
            online = box_ap(mapper.map, gt_path)
            cpu = time.process_time()
            final = mapper.finalize()
            report = {"global_pass_cpu_s": time.process_time() - cpu,
                      "global_pass_wall_s": mapper.finalize_timings["global_pass"],
                      "child_peak_rss": peak_bytes(), "online_box_ap": online, "refined_box_ap": box_ap(final, gt_path),
                      "refined_objects": len(final)}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            report = {"error": repr(exc)}
        os.write(write, json.dumps(report).encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                        help="folder of the data sets (default: ../shared/data)")
    parser.add_argument("--scene", default="scannet_scene0113_00",
                        help="a ScanNet set of --data with gt_boxes.json (default: scannet_scene0113_00)")
    parser.add_argument("--loops", type=int, default=4, help="times the sequence is played (default: 4)")
    parser.add_argument("--masks", default="/tmp/bench_loop_masks",
                        help="folder of the cached 2D masks, one file per source frame (default: /tmp/bench_loop_masks)")
    parser.add_argument("--out", required=True, help="JSON file for the per-pass measurements")
    args = parser.parse_args()
    from scene.config import MapperConfig
    from scene.datasets import DatasetError, open_dataset
    from scene.pipeline import Mapper

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            source = open_dataset(Path(args.data) / args.scene)
        except DatasetError as error:
            parser.error(str(error))
    folder = Path(args.masks) / args.scene
    folder.mkdir(parents=True, exist_ok=True)
    mapper = Mapper(MapperConfig())
    thinning = None
    if hasattr(mapper.tracker, "_bound_records"):  # the records' thinning, timed apart
        thinning = mapper.tracker._bound_records = _Timed(mapper.tracker._bound_records)
    cpu, checkpoints = [], []
    for count, (frame, original) in enumerate(looped(source, args.loops), 1):
        masks = cached_masks(mapper.generator, frame, original, folder)
        start = time.process_time()
        mapper.integrate(frame, masks)
        cpu.append(time.process_time() - start)
        if count % len(source) == 0:
            mark = {"frames": count, "rss": rss_bytes(), "peak_rss": peak_bytes(), **record_bytes(mapper.tracker),
                    "integrate_cpu_ms_median_this_pass": 1e3 * float(np.median(cpu[-len(source):])),
                    "integrate_cpu_ms_mean_this_pass": 1e3 * float(np.mean(cpu[-len(source):])),
                    "thinning_cpu_s_so_far": None if thinning is None else thinning.seconds}
            mark.update(finalize_in_child(mapper, Path(args.data) / args.scene / "gt_boxes.json"))
            checkpoints.append(mark)
            print(json.dumps(mark), flush=True)
            Path(args.out).write_text(json.dumps({"scene": args.scene, "checkpoints": checkpoints,
                                                  "loadavg": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
