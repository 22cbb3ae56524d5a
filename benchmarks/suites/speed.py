"""Section "speed": the whole ``scene run`` of the default pipeline (geometric generator, ``MapperConfig()``)
on the real 7-Scenes redkitchen (200 frames) and ScanNet scene0448_01 (296 frames with valid poses)
sequences, each as a subprocess on 2 cores, pipelined (the default: frames read and segmented on a worker
thread, incremental saves on a writer thread or process, ``scene.pipeline.SAVE_IN_PROCESS``) and
``--sequential``, and pipelined on 1 core.

Per run: ``wall_s`` of the subprocess (Python start-up and imports included); ``fps_end_to_end`` =
frames / wall; ``fps_online`` = frames / the frame loop's seconds (``run_s`` minus the global pass and
the final save); per-stage median and p95 from ``scene run --timings`` ("latency": from the start of
reading a frame to the end of its integration, waiting included; "processing": the frame's own read,
segment, lift + associate, map update and save hand-over, without the wait; "save": only the frames that saved,
and with the writer thread or process it is the hand-over, the save itself runs beside the next frames); CPU
seconds (user + system of the subprocess and its segmenter and writer processes) per frame, CPU utilisation
= CPU seconds / wall / cores; peak RSS of the ``scene run`` process, of its largest child process (the
pipelined run with the geometric generator segments in a worker process) and of its writer process if
any (which ends before the global pass, where the ``scene run`` process peaks; the sum of the three bounds
the total);
the share of frames whose masks the segmenter process also partitioned and lifted ("lifted_apart": the
pipeline gives it that work while it spends less CPU per frame than the mapping process; their
"segment" then includes the lift, and "lift_associate" does not). Cores are limited with ``sched_setaffinity`` and, on 1 core, the thread
counts of OpenMP / BLAS / PyTorch / OpenCV set to 1 too. ``concurrency_gain`` = wall on 1 core / wall on
2 cores (pipelined both); ``pipelining_gain`` = sequential wall / pipelined wall on 2 cores. Maps are
fingerprinted (``scene.map.map_fingerprint``: ids, point counts and a SHA-1 over every object's
points, colours, weights and statistics): ``identical`` says whether all three runs made the same map.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import machine_description, markdown_table, summarize, utc_timestamp
from benchmarks.suites.common import BenchContext, SuiteSkipped
from benchmarks.suites.sequences import SCANNET, SEVENSCENES, sizes

NAME = "speed"
TITLE = "End-to-end speed of scene run (2 cores, pipelined and sequential; 1 core)"
SEQUENCES = (SEVENSCENES, SCANNET)
# (label, cores, pipelined)
RUNS = (("pipelined, 2 cores", 2, True), ("sequential, 2 cores", 2, False), ("pipelined, 1 core", 1, True))
STAGES = ("read", "segment", "lift_associate", "map_update", "save", "processing", "latency")
_OWN_WORK = ("read", "segment", "lift_associate", "map_update", "save")
_SINGLE_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                      "OPENCV_FOR_THREADS_NUM", "TORCH_NUM_THREADS")
_MIB = 2**20


def reference_workload_ms(repeats: int = 15) -> float:
    """Median milliseconds of a fixed workload that no project code runs: a stable argsort, a bincount, a
    gather and a distinct-values pass over 100 000 seeded int64 values, and 200 small array steps in a
    Python loop (the mix of the per-frame path). It moves with the machine alone, so per-frame medians of
    two days compare in proportion to it; on this machine, idle, about 25 ms (2026-12-05)."""
    import numpy as np

    values = np.random.default_rng(0).integers(0, 1 << 20, 100_000)
    small = np.arange(64)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        order = np.argsort(values, kind="stable")
        counts = np.bincount(values & 0xFFFF)
        gathered = np.take(values, order)
        distinct = np.unique(gathered)
        total = 0
        for k in range(200):
            total += int(np.count_nonzero(small[(small + k) % 7 == 0]))
        times.append(time.perf_counter() - start)
        assert counts.sum() == values.size and distinct.size > 0 and total > 0
    return 1e3 * float(np.median(times))


def run(ctx: BenchContext) -> dict:
    out, skipped = {}, {}
    reference = [reference_workload_ms()]
    for name in SEQUENCES:
        try:
            path = ctx.data_set(name)
        except SuiteSkipped as exc:
            skipped[name] = str(exc)
            ctx.log(f"  {name}: skipped ({exc})")
            continue
        out[name] = sequence_runs(ctx, name, path)
    if not out:
        raise SuiteSkipped("; ".join(f"{k}: {v}" for k, v in skipped.items()))
    reference.append(reference_workload_ms())
    return {"protocol": __doc__.split("\n\n", 1)[1].strip(), "sequences": out, "skipped": skipped,
            "reference_ms": reference,
            "load_average": _load_average(), "measured_on": {"machine": machine_description(),
                                                             "timestamp": utc_timestamp()}}


def sequence_runs(ctx: BenchContext, name: str, path: Path) -> dict:
    """The three runs of one sequence, their ratios and whether their maps are identical."""
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench_speed_") as tmp:
        for label, cores, pipelined in RUNS:
            runs[label] = timed_scene_run(path, Path(tmp), cores, pipelined, sizes(ctx).real_frames)
            r = runs[label]
            ctx.log(f"  {name} {label}: {r['frames']} frames, wall {r['wall_s']:.1f} s, "
                    f"{r['fps_end_to_end']:.2f} frames/s end to end, CPU {1e3 * r['cpu_s_per_frame']:.0f} ms/frame")
    first = runs[RUNS[0][0]]
    digests = {label: r["fingerprint"]["digest"] for label, r in runs.items()}
    return {
        "runs": runs,
        "identical": len(set(digests.values())) == 1,
        "concurrency_gain": _ratio(runs["pipelined, 1 core"]["wall_s"], first["wall_s"]),
        "pipelining_gain": _ratio(runs["sequential, 2 cores"]["wall_s"], first["wall_s"]),
        "objects": first["fingerprint"]["objects"], "points": first["fingerprint"]["points"],
    }


def timed_scene_run(data: Path, tmp: Path, cores: int, pipelined: bool, max_frames: int | None) -> dict:
    """One ``scene run`` subprocess limited to ``cores`` CPUs: wall, CPU and peak memory of the process,
    its ``--timings`` and the fingerprint of its map."""
    tag = f"{cores}c-{'pipe' if pipelined else 'seq'}"
    out, timings_path = tmp / f"{tag}.sqlite", tmp / f"{tag}.json"
    command = [sys.executable, "-m", "scene.app", "run", str(data), "--out", str(out), "--overwrite", "--quiet",
               "--timings", str(timings_path)]
    if not pipelined:
        command.append("--sequential")
    if max_frames is not None:
        command += ["--max-frames", str(max_frames)]
    cpus = sorted(os.sched_getaffinity(0))[:cores]
    if len(cpus) < cores:
        raise SuiteSkipped(f"{cores} cores asked for, {len(cpus)} available")
    env = dict(os.environ)
    if cores == 1:
        env.update(dict.fromkeys(_SINGLE_THREAD_ENV, "1"))
    errors = tmp / f"{tag}.stderr"
    with open(errors, "wb") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                   preexec_fn=lambda: os.sched_setaffinity(0, cpus))
        _, status, rusage = os.wait4(process.pid, 0)  # reaps it with its own CPU time and peak memory
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"scene run {data} ({tag}) failed with exit {process.returncode}: "
                           f"{errors.read_text(errors='replace')[-2000:]}")
    usage = {"cpu_s": rusage.ru_utime + rusage.ru_stime, "peak_rss_bytes": int(rusage.ru_maxrss) * 1024}
    report = json.loads(timings_path.read_text())
    return summarize_run(report, wall, usage, cores, _fingerprint(out))


def summarize_run(report: dict, wall: float, usage: dict, cores: int, fingerprint: dict) -> dict:
    """The numbers of one run from its ``--timings`` report, wall seconds, rusage and map fingerprint."""
    frames = report["frames"]
    n = len(frames)
    finalize = report.get("finalize", {})
    tail = float(finalize.get("global_pass", 0.0)) + float(finalize.get("final_save", 0.0))
    online = max(float(report["run_s"]) - tail, 1e-9)
    for f in frames:  # the frame's own work, without waiting behind the previous frame
        f["processing"] = sum(float(f.get(s, 0.0)) for s in _OWN_WORK)
    stages = {}
    for stage in STAGES:
        values = [f[stage] for f in frames if stage in f and (stage != "save" or f[stage] > 0)]
        stages[stage] = summarize(values)
    return {
        "frames": n, "cores": cores, "pipelined": bool(report.get("pipelined")), "wall_s": wall,
        "run_s": float(report["run_s"]), "online_s": online, "global_pass_s": float(finalize.get("global_pass", 0.0)),
        "final_save_s": float(finalize.get("final_save", 0.0)),
        "fps_end_to_end": n / wall if wall > 0 else float("nan"), "fps_online": n / online,
        "stages": stages, "cpu_s": usage["cpu_s"], "cpu_s_per_frame": usage["cpu_s"] / max(n, 1),
        "cpu_utilisation": usage["cpu_s"] / wall / cores if wall > 0 else float("nan"),
        "peak_rss_bytes": int(report.get("peak_rss_bytes") or usage["peak_rss_bytes"]),
        "worker_peak_rss_bytes": int(report.get("worker_peak_rss_bytes") or 0), "fingerprint": fingerprint,
        "writer_peak_rss_bytes": int(report.get("writer_process", {}).get("peak_rss_bytes") or 0),
        "writer_cpu_s": float(report.get("writer_process", {}).get("cpu_s") or 0.0),
        "lifted_apart_share": sum(float(f.get("lifted_apart", 0.0)) for f in frames) / max(n, 1),
    }


def _fingerprint(path: Path) -> dict:
    from scene.map import map_fingerprint
    from scene.storage import MapStore

    with MapStore(path, read_only=True) as store:
        fingerprint = map_fingerprint(store.load())
    fingerprint.pop("num_points")  # per-object counts: in the JSON they would dwarf the rest
    fingerprint["ids"] = len(fingerprint["ids"])
    return fingerprint


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def _load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def markdown(data: dict) -> str:
    parts = [data["protocol"]]
    if data.get("load_average"):
        parts.append(f"Load average at the end of the section: {', '.join(map(str, data['load_average']))}.")
    if data.get("reference_ms"):
        before, after = data["reference_ms"]
        parts.append(f"Reference workload (``reference_workload_ms``: a fixed numpy mix no project code runs, the "
                     f"machine's speed alone): {before:.1f} ms before the runs, {after:.1f} ms after. Per-frame medians "
                     f"of two sections compare in proportion to it.")
    for name, seq in data["sequences"].items():
        rows = []
        for label, r in seq["runs"].items():
            rows.append({"run": label, "frames": r["frames"], "wall_s": r["wall_s"], "fps_e2e": r["fps_end_to_end"],
                         "fps_online": r["fps_online"], "latency": 1e3 * r["stages"]["latency"]["median"],
                         "latency_p95": 1e3 * r["stages"]["latency"]["p95"],
                         "processing_p95": 1e3 * r["stages"]["processing"]["p95"], "global": r["global_pass_s"],
                         "cpu_ms": 1e3 * r["cpu_s_per_frame"], "util": r["cpu_utilisation"],
                         "rss": r["peak_rss_bytes"] / _MIB, "worker_rss": r["worker_peak_rss_bytes"] / _MIB,
                         "writer_rss": r.get("writer_peak_rss_bytes", 0) / _MIB,
                         "lifted_apart": r.get("lifted_apart_share", 0.0), "digest": r["fingerprint"]["digest"][:10]})
        parts.append(
            f"**{name}**: {seq['objects']} objects, {seq['points']} points; maps identical across the runs: "
            f"{'yes' if seq['identical'] else 'NO'}; concurrency gain (1 core / 2 cores wall) "
            f"{seq['concurrency_gain']:.2f}x, pipelining gain (sequential / pipelined wall, 2 cores) "
            f"{seq['pipelining_gain']:.2f}x.\n\n"
            + markdown_table(rows, ["run", "frames", "wall_s", "fps_e2e", "fps_online", "latency", "latency_p95",
                                    "processing_p95", "global", "cpu_ms", "util", "rss", "worker_rss", "writer_rss", "lifted_apart",
                                    "digest"],
                             ["run", "frames", "wall s", "frames/s end to end", "frames/s online", "latency median ms",
                              "latency p95 ms", "own work p95 ms", "global pass s", "CPU ms/frame", "CPU use", "peak RSS MiB",
                              "largest child process peak RSS MiB", "writer process peak RSS MiB",
                              "frames lifted in the segmenter process",
                              "map digest"]))
        stage_rows = []
        for label, r in seq["runs"].items():
            row = {"run": label}
            for stage in STAGES:
                row[stage] = 1e3 * r["stages"][stage]["median"]
                row[stage + "_p95"] = 1e3 * r["stages"][stage]["p95"]
            stage_rows.append(row)
        columns = ["run"] + [c for s in STAGES for c in (s, s + "_p95")]
        headers = ["run"] + [h for s in STAGES for h in (f"{s} ms", "p95")]
        parts.append("Per-frame stages (median and p95, ms):\n\n" + markdown_table(stage_rows, columns, headers))
    for name, reason in data.get("skipped", {}).items():
        parts.append(f"**{name}**: skipped: {reason}")
    return "\n\n".join(parts)
