"""Section "robotics": ROS bag reading speed, and many scenes on a Dask cluster.

- Bags: frames of the noisy synthetic room (640x480) written with rosbags' writers as ROS 1 .bag, ROS 2
  .db3 and .mcap, raw (rgb8 + 16UC1, poses on /tf) and, for .mcap, compressed (JPEG + compressedDepth);
  ``open_s``: opening the bag (topic proposal, indexing every image's stamp, the /tf chain);
  ``frames_per_s``: decoding every frame (colour, depth in metres, pose) afterwards, median of 3 passes.
- Batch: every data set of ``../shared/data`` (every ``stride``-th frame, online + global refinement),
  mapped three ways: a sequential loop in this process (``map_scene`` per scene), then ``run_batch`` on a
  LocalCluster of 1 and of 2 worker processes (one scene at a time each, 4 GiB limit each). ``speedup`` =
  sequential wall / batch wall (cluster start and close included). ``fixed_s``: cluster start (including
  every worker importing the pipeline, in parallel) + close, once per batch. ``overhead_per_scene_s``
  (1 worker, where the scenes run back to back) = (batch wall - fixed - the scenes' own wall on the
  worker) / scenes: scheduling and shipping each task's arguments and result. ``cpu_s``: CPU seconds of
  the scenes (all threads), which a loaded machine changes far less than wall time.
  ``peak_rss_mib`` per worker: the worker process's peak resident memory (VmHWM). The pooled box AP of
  the two ScanNet scenes comes from the 2-worker batch's maps (``scene eval DIR``; at this stride, so
  not the full-sequence figure).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import markdown_table
from benchmarks.suites.common import BenchContext, SuiteSkipped

NAME = "robotics"
TITLE = "ROS bags and many scenes on Dask"
DATA_SETS = ("scannet_scene0448_01", "scannet_scene0113_00", "7scenes_redkitchen", "3dmatch_studyroom",
             "replica_office0", "iclnuim_livingroom")
BAG_CASES = (("bag", "rgb8", "16UC1"), ("db3", "rgb8", "16UC1"), ("mcap", "rgb8", "16UC1"),
             ("mcap", "jpeg", "compressedDepth"))
STRIDE = 6


def run(ctx: BenchContext) -> dict:
    try:
        import distributed  # noqa: F401
        import rosbags  # noqa: F401
    except ImportError as exc:
        raise SuiteSkipped(f"rosbags / dask.distributed not installed ({exc})") from None
    return {"protocol": __doc__.split("\n", 1)[1].strip(), "bags": bag_speed(ctx), "batch": batch_speed(ctx)}


def bag_speed(ctx: BenchContext) -> dict:
    from scene.datasets.readers.rosbag import RosBagSource
    from scene.datasets.rosbag_writer import write_rosbag
    from scene.datasets.synthetic import make_scene

    n = 5 if ctx.quick else 30
    scene = make_scene("room", seed=0, noisy=True, num_frames=n)
    frames = [scene.frame(i) for i in range(n)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-bags-") as tmp:
        for fmt, color, depth in BAG_CASES:
            path = write_rosbag(frames, Path(tmp) / f"{fmt}-{color}{'.bag' if fmt == 'bag' else ''}", format=fmt,
                                color=color, depth=depth)
            size = sum(p.stat().st_size for p in ([path] if path.is_file() else path.iterdir()))
            start = time.perf_counter()
            source = RosBagSource(path)
            open_s = time.perf_counter() - start
            passes = []
            for _ in range(3):
                start = time.perf_counter()
                count = sum(1 for _ in source)
                passes.append(time.perf_counter() - start)
            rows.append({"format": fmt, "encoding": f"{color} + {depth}", "frames": count, "mib": size / 2**20,
                         "open_s": open_s, "frames_per_s": count / float(np.median(passes)),
                         "ms_per_frame": 1e3 * float(np.median(passes)) / count})
            ctx.log(f"  bag {fmt} {color}+{depth}: {rows[-1]['frames_per_s']:.0f} frames/s, open {open_s:.2f} s")
    return {"rows": rows, "image": f"{frames[0].width}x{frames[0].height}"}


def batch_speed(ctx: BenchContext) -> dict:
    from scene.batch import BatchConfig, map_scene, read_report, run_batch, scene_names
    from scene.eval import evaluate_pooled

    inputs = [ctx.data_dir / name for name in DATA_SETS if (ctx.data_dir / name).is_dir()]
    if not inputs:
        raise SuiteSkipped(f"no shared data set under {ctx.data_dir}")
    config = BatchConfig(stride=STRIDE, max_frames=4 if ctx.quick else None, memory_limit="4GiB")
    out = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        names = scene_names(inputs)
        (out / "seq").mkdir()
        load = _load_average()
        start = time.perf_counter()
        sequential = [map_scene(nm, str(p.resolve()), str(out / "seq" / f"{nm}.sqlite"), config)
                      for nm, p in zip(names, inputs)]
        sequential_s = time.perf_counter() - start
        failed = [f"{r.name}: {r.error}" for r in sequential if r.status != "done"]
        if failed:
            raise RuntimeError("sequential mapping failed: " + "; ".join(failed))
        ctx.log(f"  sequential: {len(inputs)} scenes in {sequential_s:.1f} s")
        runs, per_worker_count = [], {}
        for workers in (1, 2):
            report = run_batch(inputs, out / f"w{workers}", BatchConfig(**{**config.__dict__, "workers": workers}))
            runs.append(_batch_row(report, workers, sequential_s, load, _load_average()))
            per_worker_count[workers] = report.scenes
            ctx.log(f"  {workers} worker(s): {report.seconds:.1f} s, speed-up {runs[-1]['speedup']:.2f}, "
                    f"cluster start+close {runs[-1]['fixed_s']:.1f} s, overhead/scene "
                    f"{runs[-1]['overhead_per_scene_s'] or float('nan'):.2f} s")
        pooled = [(s.name, s.map, s.input) for s in read_report(out / "w2").scenes]
        boxes = evaluate_pooled(pooled).get("boxes")
        scenes = [{"scene": r.name, "frames": r.frames, "objects": r.objects, "sequential_s": r.seconds,
                   "sequential_cpu_s": r.cpu_s, "w1_s": one.seconds, "w1_cpu_s": one.cpu_s, "w2_s": two.seconds,
                   "w2_cpu_s": two.cpu_s}
                  for r, one, two in zip(sequential, per_worker_count[1], per_worker_count[2])]
        return {"stride": STRIDE, "sequential_s": sequential_s, "sequential_cpu_s": sum(r.cpu_s for r in sequential),
                "load_average_start": load, "scenes": scenes, "runs": runs, "pooled_scannet_boxes": boxes}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _load_average() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def _batch_row(report, workers: int, sequential_s: float, load_before: float, load_after: float) -> dict:
    failed = [f"{s.name}: {s.error}" for s in report.scenes if s.status != "done"]
    if failed:
        raise RuntimeError(f"batch on {workers} worker(s) failed: " + "; ".join(failed))
    busy = sum(s.seconds for s in report.scenes)
    peaks: dict[str, float] = {}
    for s in report.scenes:
        peaks[s.worker] = max(peaks.get(s.worker, 0.0), s.peak_rss_mib)
    fixed = report.cluster_start_s + report.cluster_close_s
    return {"workers": workers, "wall_s": report.seconds, "speedup": sequential_s / report.seconds,
            "cpu_s": sum(s.cpu_s for s in report.scenes), "fixed_s": fixed,
            # with one worker the scenes run back to back, so what is left of the wall is overhead
            "overhead_per_scene_s": (report.seconds - fixed - busy) / len(report.scenes) if workers == 1 else None,
            "peak_rss_mib_per_worker": sorted(peaks.values(), reverse=True),
            "load_average": f"{load_before:.1f} -> {load_after:.1f}"}


def markdown(data: dict) -> str:
    bags = data["bags"]
    bag_table = markdown_table(bags["rows"], ["format", "encoding", "frames", "mib", "open_s", "frames_per_s",
                                              "ms_per_frame"],
                               ["format", "encoding", "frames", "MiB", "open (s)", "frames/s", "ms/frame"])
    batch = data["batch"]
    runs = [{**r, "peak": ", ".join(f"{m:.0f}" for m in r["peak_rss_mib_per_worker"])} for r in batch["runs"]]
    seq = {"workers": "sequential loop", "wall_s": batch["sequential_s"], "speedup": 1.0,
           "cpu_s": batch["sequential_cpu_s"]}
    run_table = markdown_table([seq] + runs, ["workers", "wall_s", "speedup", "cpu_s", "fixed_s",
                                              "overhead_per_scene_s", "peak", "load_average"],
                               ["workers", "wall (s)", "speed-up", "CPU (s)", "cluster start+close (s)",
                                "overhead/scene (s)", "peak RSS per worker (MiB)", "load average"])
    scene_table = markdown_table(batch["scenes"], ["scene", "frames", "objects", "sequential_s", "sequential_cpu_s",
                                                   "w1_s", "w1_cpu_s", "w2_s", "w2_cpu_s"],
                                 ["scene", "frames", "objects", "sequential (s)", "CPU (s)", "1 worker (s)", "CPU (s)",
                                  "2 workers (s)", "CPU (s)"])
    boxes = batch.get("pooled_scannet_boxes")
    pooled = (f"Pooled box AP of the ScanNet scenes from the 2-worker batch's maps (every {batch['stride']}th "
              f"frame, {boxes['scenes']} scenes, {boxes['num_gt']} GT boxes): AP25 {boxes['ap@0.25']:.3f}, "
              f"AP50 {boxes['ap@0.50']:.3f}." if boxes else "No ScanNet scene in the batch: no pooled box AP.")
    return (f"Bag decoding at {bags['image']}:\n\n{bag_table}\n\nBatch over the shared scenes, every "
            f"{batch['stride']}th frame (a shared 2-core machine: load average {batch['load_average_start']:.1f} "
            f"at the start):\n\n{run_table}\n\n{scene_table}\n\n{pooled}")
