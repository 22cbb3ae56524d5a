"""Many scenes at once on a Dask cluster: each scene is one task that writes one map file.

``run_batch(inputs, out_dir, BatchConfig(...))`` maps every input (any dataset folder or ROS bag) on a
``LocalCluster`` of ``workers`` processes, each running one scene at a time (one Dask thread) with its
share of the cores for its numeric libraries (OpenMP / BLAS threads = cores // workers, where Dask's
default is 1) and ``memory_limit`` (Dask's nanny restarts a
worker that goes over it; its scene is then reported failed), or on an existing cluster
(``scheduler`` address; the inputs and ``out_dir`` must then be on a file system every worker sees).

Layout of ``out_dir``: ``NAME.sqlite`` per finished scene, ``batch.json`` (every scene's input, status,
error, frames, objects, seconds, worker peak memory). A scene is written to ``NAME.sqlite.partial`` and
renamed when its map is final, so after a kill the finished maps are kept and skipped on the next run,
and a half-written map is discarded and redone. A scene that fails is recorded with its error and does
not stop the others; the next run retries it.
"""
from __future__ import annotations

import json
import logging
import os
import re
import resource
import sqlite3
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from scene.config import MapperConfig

REPORT_NAME = "batch.json"
PARTIAL_SUFFIX = ".partial"
STATUSES = ("done", "skipped", "failed", "pending")


@dataclass
class BatchConfig:
    """``workers``: LocalCluster worker processes (1 thread each); ``scheduler``: address of an existing
    cluster instead (``tcp://host:8786``); ``memory_limit``: per worker ("4GiB", bytes, or "auto");
    ``mapper``: the mapping config of every scene; ``format`` / ``stride`` / ``max_frames``: how each input
    is read (``open_dataset``); ``options``: reader options for the ROS bags among the inputs (topics)."""

    workers: int = 2
    scheduler: str | None = None
    memory_limit: str | int = "4GiB"
    mapper: MapperConfig = field(default_factory=MapperConfig)
    format: str | None = None
    stride: int = 1
    max_frames: int | None = None
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scheduler is None and int(self.workers) < 1:
            raise ValueError(f"BatchConfig: workers must be >= 1, got {self.workers}")
        if int(self.stride) < 1 or (self.max_frames is not None and int(self.max_frames) < 1):
            raise ValueError(f"BatchConfig: stride and max_frames must be >= 1, got {self.stride}, {self.max_frames}")


@dataclass
class SceneResult:
    """One scene of a batch. ``status``: "done" (mapped now), "skipped" (finished by an earlier run),
    "failed" (``error`` says why) or "pending" (not finished yet). ``seconds``: the task's wall time on its
    worker; ``peak_rss_mib``: that worker process's peak resident memory so far; ``worker``: its address or
    pid; ``setup_s``: the part of ``seconds`` spent importing the pipeline (0 when the worker had it);
    ``cpu_s``: the worker process's CPU seconds (all threads) during the task."""

    name: str
    input: str
    map: str
    status: str
    error: str = ""
    frames: int = 0
    objects: int = 0
    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    worker: str = ""
    setup_s: float = 0.0
    cpu_s: float = 0.0


@dataclass
class BatchReport:
    """Every scene's result in input order, the batch's wall time and, within it, the seconds spent starting
    and closing the cluster (seconds)."""

    scenes: list[SceneResult]
    seconds: float = 0.0
    cluster_start_s: float = 0.0
    cluster_close_s: float = 0.0

    def count(self, status: str) -> int:
        return sum(s.status == status for s in self.scenes)

    @property
    def failed(self) -> list[SceneResult]:
        return [s for s in self.scenes if s.status == "failed"]


def scene_names(inputs: Sequence[str | Path]) -> list[str]:
    """A distinct, file-name-safe name per input: its last path component (a bag's without its suffix),
    with as many parent folder names in front as it takes to tell it from the other inputs."""
    paths = [Path(p).resolve() for p in inputs]
    if len(set(paths)) != len(paths):
        raise ValueError("scene batch: an input is listed twice")
    parts = [(p.with_suffix("") if p.is_file() else p).parts for p in paths]
    depth = [1] * len(paths)
    while True:
        names = [_safe("_".join(q[-d:])) for q, d in zip(parts, depth)]
        clashing = [k for k, name in enumerate(names) if names.count(name) > 1 and depth[k] < len(parts[k])]
        if not clashing:
            return names
        for k in clashing:
            depth[k] += 1


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "scene"


def is_finished_map(path: Path) -> bool:
    """A final map file that opens and holds at least one frame (the rename makes it final)."""
    from scene.storage import MapStore, MapStorageError

    if not path.is_file():
        return False
    try:
        with MapStore(path, read_only=True) as store:
            return store.load().num_frames > 0
    except MapStorageError:
        return False


def map_scene(name: str, source_path: str, map_path: str, config: BatchConfig) -> SceneResult:
    """One task: map ``source_path`` into ``map_path`` (via ``map_path + .partial``). Never raises: a failure
    is returned as a "failed" result with the error's last line (and the traceback's last frame)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    final, partial = Path(map_path), Path(map_path + PARTIAL_SUFFIX)
    result = SceneResult(name, source_path, map_path, "failed", worker=_worker_name())
    try:
        from scene.datasets import open_dataset
        from scene.pipeline import Mapper, run

        result.setup_s = time.perf_counter() - start
        _remove_map(partial)
        from scene.datasets.readers.rosbag import is_rosbag

        options = config.options if is_rosbag(source_path) else {}  # topic choices: for the bags only
        source = open_dataset(source_path, format=config.format, stride=config.stride, **options)
        mapper = Mapper(config.mapper, partial, metadata=_metadata(source, config.mapper))
        # One scene per worker already fills the cores; a segmenter process per worker would escape its
        # memory limit. The map is the same either way.
        imap = run(source, config.mapper, mapper=mapper, max_frames=config.max_frames, pipelined=False)
        _single_file(partial)
        os.replace(partial, final)
        result.status, result.frames, result.objects = "done", int(imap.num_frames), len(imap)
    except Exception as exc:  # reported, not fatal to the other scenes
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        at = f" (at {Path(where.filename).name}:{where.lineno})" if where else ""
        result.error = f"{type(exc).__name__}: {' '.join(str(exc).split())}{at}"
        _remove_map(partial)
    result.seconds = time.perf_counter() - start
    result.cpu_s = time.process_time() - cpu_start
    result.peak_rss_mib = _peak_rss_mib()
    return result


def _metadata(source, config: MapperConfig):
    from scene.map import MapMetadata

    return MapMetadata(voxel_size=config.voxel_size, source_path=str(Path(source.root).resolve()),
                       source_format=source.format_name)


def _single_file(path: Path) -> None:
    """Leave WAL mode once the map is final: one self-contained file that readers open without creating
    ``-wal`` / ``-shm`` files beside it (resuming or live writing turns WAL back on)."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode = DELETE")
    finally:
        connection.close()


def _remove_map(path: Path) -> None:
    """The map file and what SQLite or a stopped run (``scene.mapper_state``) left beside it."""
    for suffix in ("", "-wal", "-shm", "-journal", ".state", ".state.partial"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _peak_rss_mib() -> float:
    """This process's peak resident memory. Linux: VmHWM, because ru_maxrss survives execve, so a worker
    spawned by a large process would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def plan_batch(inputs: Sequence[str | Path], out_dir: Path) -> list[SceneResult]:
    """One result per input, in order: "skipped" when an earlier run finished its map, else "pending"
    (and any half-written map of it is removed)."""
    planned = []
    for name, source in zip(scene_names(inputs), inputs):
        result = SceneResult(name, str(Path(source).resolve()), str(out_dir / f"{name}.sqlite"), "skipped")
        if not is_finished_map(Path(result.map)):
            result.status = "pending"
            _remove_map(Path(result.map))
            _remove_map(Path(result.map + PARTIAL_SUFFIX))
        planned.append(result)
    return planned


def run_batch(inputs: Sequence[str | Path], out_dir: str | Path, config: BatchConfig | None = None,
              on_result: Callable[[SceneResult], None] | None = None) -> BatchReport:
    """Map every input on a Dask cluster (see the module docstring); ``on_result`` is called as each scene
    is skipped or finishes (progress). Rewrites ``out_dir/batch.json`` after every scene."""
    config = config if config is not None else BatchConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for source in inputs:
        if not Path(source).exists():
            raise FileNotFoundError(f"scene batch: input {source} does not exist")
    start = time.perf_counter()
    report = BatchReport(plan_batch(inputs, out_dir))
    position = {r.name: k for k, r in enumerate(report.scenes)}

    def record(result: SceneResult) -> None:
        report.scenes[position[result.name]] = result
        report.seconds = time.perf_counter() - start
        write_report(out_dir, report)
        if on_result is not None:
            on_result(result)

    for result in [r for r in report.scenes if r.status == "skipped"]:
        record(result)
    todo = [r for r in report.scenes if r.status == "pending"]
    if todo:
        cluster = _Cluster(config)
        opened = time.perf_counter()
        with cluster as client:
            from distributed import as_completed

            report.cluster_start_s = time.perf_counter() - opened
            futures = {client.submit(map_scene, r.name, r.input, r.map, config, key=f"map-{r.name}-{time.time_ns()}",
                                     pure=False): r for r in todo}
            for future in as_completed(futures):
                record(_collect(future, futures[future], config))
            closing = time.perf_counter()
        report.cluster_close_s = time.perf_counter() - closing
    report.seconds = time.perf_counter() - start
    write_report(out_dir, report)
    return report


def _collect(future, planned: SceneResult, config: BatchConfig) -> SceneResult:
    try:
        return future.result()
    except Exception as exc:  # the worker died (e.g. killed over its memory limit) or the task was lost
        _remove_map(Path(planned.map + PARTIAL_SUFFIX))
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        if type(exc).__name__ == "KilledWorker":
            error = (f"its worker died while mapping it, most likely over the memory limit ({config.memory_limit} "
                     f"per worker: raise it, or map fewer frames with a stride) [{error[:200]}]")
        return SceneResult(planned.name, planned.input, planned.map, "failed", error=error)


def _import_pipeline() -> None:
    """Run on every worker when the cluster starts: the imports (torch, Open3D, ...) then happen in parallel
    once per worker, not inside a scene's task."""
    import scene.datasets  # noqa: F401
    import scene.pipeline  # noqa: F401


class _Cluster:
    """A Client on ``config.scheduler``, or on a LocalCluster of ``config.workers`` single-threaded
    processes with ``config.memory_limit`` each; both closed on exit."""

    def __init__(self, config: BatchConfig) -> None:
        self.config = config
        self.cluster = None
        self.client = None

    def __enter__(self):
        import dask
        from distributed import Client, LocalCluster

        if self.config.scheduler:
            self.client = Client(self.config.scheduler, timeout="20s")
            self.client.run(_import_pipeline)
            return self.client
        # A scene that brought its worker down over the memory limit would again: fail it, do not retry.
        # Dask pins every worker's numeric libraries to 1 thread; give each worker its share of the cores.
        threads = max(1, (os.cpu_count() or 1) // int(self.config.workers))
        environ = {**dask.config.get("distributed.nanny.pre-spawn-environ"),
                   **{name: threads for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
        with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                              "distributed.nanny.pre-spawn-environ": environ}):
            self.cluster = LocalCluster(n_workers=int(self.config.workers), threads_per_worker=1, processes=True,
                                        memory_limit=self.config.memory_limit, dashboard_address=None)
        self.client = Client(self.cluster)
        self.client.run(_import_pipeline)
        return self.client

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            # Workers that hold torch / Open3D threads outlive the nanny's 4 s grace and are killed, with a
            # warning per worker; the work is done by then, so say nothing.
            nanny = logging.getLogger("distributed.nanny")
            level = nanny.level
            nanny.setLevel(logging.ERROR)
            try:
                self.cluster.close()
            finally:
                nanny.setLevel(level)


def write_report(out_dir: Path, report: BatchReport) -> Path:
    path = Path(out_dir) / REPORT_NAME
    data = {"seconds": report.seconds, "cluster_start_s": report.cluster_start_s,
            "cluster_close_s": report.cluster_close_s, "scenes": [asdict(s) for s in report.scenes]}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    return path


def read_report(out_dir: str | Path) -> BatchReport:
    """The ``batch.json`` of a batch folder; ValueError naming the file when it is missing or malformed."""
    path = Path(out_dir) / REPORT_NAME
    try:
        data = json.loads(path.read_text())
        return BatchReport([SceneResult(**s) for s in data["scenes"]], float(data.get("seconds", 0.0)),
                           float(data.get("cluster_start_s", 0.0)), float(data.get("cluster_close_s", 0.0)))
    except FileNotFoundError:
        raise ValueError(f"{out_dir}: not a batch folder (no {REPORT_NAME}; write one with `scene batch`)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a batch report ({exc})") from None
