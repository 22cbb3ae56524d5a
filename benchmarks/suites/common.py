"""What the suites share: the run context, one instrumented pass of the ``Mapper`` over a sequence, and
scoring a map against per-point ground truth.

Per-frame stages (seconds): ``read`` (decode, or render for synthetic scenes), ``segment`` (mask
generator), ``lift`` (mask partition + back-projection + voxelisation), ``associate`` (the online
tracker's step), ``map_update`` (map objects touched by the frame), ``save`` (incremental SQLite save,
every ``save_every`` frames; 0 elsewhere). After the last frame: ``global_refinement`` (``finalize``
without saving: view-consensus refinement and the refined map's rebuild) and ``final_save`` (one full
save of the refined map). Memory is the process RSS sampled after every frame (bytes).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from benchmarks.harness import current_rss_bytes, machine_description, peak_rss_bytes, summarize, timed, utc_timestamp

FRAME_STAGES = ("read", "segment", "lift", "associate", "map_update", "save")


class SuiteSkipped(Exception):
    """A suite cannot run here (missing module, data or option); the message is the reason shown."""


@dataclass
class BenchContext:
    """Options of one benchmark run and the runs the suites share (``cache``, keyed by the suites).

    ``data_dir``: the shared real data (``../shared/data``); ``quick``: tiny sizes for a dry run;
    ``sam_checkpoint``: SAM weights for the 2D recall suite (None: SAM is not measured)."""

    data_dir: Path
    quick: bool = False
    sam_checkpoint: str | None = None
    log: Callable[[str], None] = print
    cache: dict = field(default_factory=dict)

    def data_set(self, name: str) -> Path:
        """``data_dir / name``; raises ``SuiteSkipped`` when it is absent."""
        path = self.data_dir / name
        if not path.is_dir():
            raise SuiteSkipped(f"data set {path} is absent")
        return path


def require_pipeline():
    """(Mapper, MapperConfig) from ``scene.pipeline`` / ``scene.config``; ``SuiteSkipped`` when missing."""
    try:
        from scene.config import MapperConfig
        from scene.pipeline import Mapper
    except ImportError as exc:
        raise SuiteSkipped(f"scene.pipeline is not available ({exc})") from None
    return Mapper, MapperConfig


@dataclass
class SequenceRun:
    """One instrumented mapping pass. ``stages``: per-frame seconds per ``FRAME_STAGES`` name;
    ``rss``: bytes after each frame; ``num_objects``: online map objects after each frame;
    ``checkpoints``: per frame count reached, the online refinement's seconds and RSS there."""

    name: str
    stages: dict
    rss: list
    num_objects: list
    online_map: object
    final_map: object
    global_refinement_s: float
    final_save_s: float
    rss_start: int
    peak_rss: int
    checkpoints: dict
    wall_s: float
    measured_on: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.stages["read"])

    @property
    def frame_seconds(self) -> np.ndarray:
        """Per frame: the sum of all stages (read included), seconds."""
        return np.sum([self.stages[s] for s in FRAME_STAGES], axis=0)

    @property
    def pipeline_seconds(self) -> np.ndarray:
        """Per frame: every stage but ``read`` (what the mapper itself costs), seconds."""
        return np.sum([self.stages[s] for s in FRAME_STAGES if s != "read"], axis=0)

    @property
    def fusion_seconds(self) -> np.ndarray:
        """Per frame: lift + associate + map update (the 3D fusion, without 2D masks, read and save), seconds."""
        return np.sum([self.stages[s] for s in ("lift", "associate", "map_update")], axis=0)

    def speed_summary(self) -> dict:
        """Per-stage median/p95 (seconds), frames per second and memory of the run."""
        total = float(self.frame_seconds.sum())
        return {
            "frames": self.num_frames,
            "stages": {s: summarize(self.stages[s]) for s in FRAME_STAGES},
            "saves": summarize([t for t in self.stages["save"] if t > 0]),
            "per_frame_total": summarize(self.frame_seconds),
            "per_frame_pipeline": summarize(self.pipeline_seconds),
            "per_frame_fusion": summarize(self.fusion_seconds),
            "global_refinement_s": self.global_refinement_s,
            "final_save_s": self.final_save_s,
            "fps_online": self.num_frames / total if total > 0 else float("nan"),
            "fps_end_to_end": self.num_frames / (total + self.global_refinement_s + self.final_save_s),
            "objects_online": int(self.num_objects[-1]) if self.num_objects else 0,
            "objects_final": len(self.final_map),
            "rss_start_bytes": self.rss_start,
            "rss_max_during_bytes": int(max(self.rss)) if self.rss else 0,
            "rss_growth_bytes": int(max(self.rss) - self.rss_start) if self.rss else 0,
            "peak_rss_process_bytes": self.peak_rss,
            "measured_on": self.measured_on,
        }


class _StepTimer:
    """Wraps ``OnlineTracker.step`` on one tracker instance to split the mapper's lift+associate time."""

    def __init__(self, step) -> None:
        self._step = step
        self.last = 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        result = self._step(*args, **kwargs)
        self.last = time.perf_counter() - start
        return result


def map_sequence(name: str, frames: Iterable, config, checkpoints: Iterable[int] = (),
                 log: Callable[[str], None] = print, generator=None, keep_state: Path | None = None) -> SequenceRun:
    """Map ``frames`` (an iterable of Frames; pulling one is the ``read`` stage) with ``scene.pipeline``'s
    Mapper saving into a temporary file, finalize, and return the timings (see the module docstring).

    ``checkpoints``: frame counts at which the global refinement is timed on the map so far (it reserves
    ids in the tracker but leaves the online map as it is). ``keep_state``: write the mapper's state there
    before finalizing (``Mapper.save_state``; ``benchmarks.variants --states``)."""
    Mapper, _ = require_pipeline()
    from scene.storage import MapStore
    from tracking.refine import refine

    stages = {s: [] for s in FRAME_STAGES}
    rss, objects, marks = [], [], {}
    wanted = set(int(c) for c in checkpoints)
    measured_on = {"machine": machine_description(), "timestamp": utc_timestamp()}
    wall = time.perf_counter()
    rss_start = current_rss_bytes()
    with tempfile.TemporaryDirectory(prefix="bench_map_") as tmp:
        mapper = Mapper(config, out=Path(tmp) / "map.sqlite", generator=generator)
        timer = _StepTimer(mapper.tracker.step)
        mapper.tracker.step = timer
        try:
            for count, (frame, read_s) in enumerate(_timed_iter(frames), 1):
                result = mapper.integrate(frame)
                _record_frame(stages, result.timings, read_s, timer.last)
                rss.append(current_rss_bytes())
                objects.append(result.num_objects)
                if count in wanted:
                    marks[count] = _checkpoint(mapper, refine, config, rss[-1])
                if count % 25 == 0:
                    log(f"  {name}: {count} frames, {result.num_objects} objects, "
                        f"median {1e3 * np.median(np.sum([stages[s] for s in FRAME_STAGES], axis=0)):.0f} ms/frame")
            online_map = mapper.map
            if keep_state is not None:
                del mapper.tracker.step  # the timer is this run's, not the tracker's
                mapper.save_state(keep_state)
            mapper.path = None  # finalize without its save: the final save is timed on its own below
            final_map, refine_s = timed(mapper.finalize)
            store = MapStore(Path(tmp) / "final.sqlite")
            try:
                _, save_s = timed(lambda: store.save(final_map))
            finally:
                store.close()
        finally:
            mapper.close()
    return SequenceRun(name, stages, rss, objects, online_map, final_map, refine_s, save_s, rss_start,
                       peak_rss_bytes(), marks, time.perf_counter() - wall, measured_on)


def _timed_iter(frames: Iterable) -> Iterator[tuple[object, float]]:
    iterator = iter(frames)
    while True:
        start = time.perf_counter()
        try:
            frame = next(iterator)
        except StopIteration:
            return
        yield frame, time.perf_counter() - start


def _record_frame(stages: dict, timings: dict, read_s: float, associate_s: float) -> None:
    if "lift" in timings and "associate" in timings:  # a mapper that reports the two stages itself
        lift, associate = float(timings["lift"]), float(timings["associate"])
    else:
        lift_associate = float(timings.get("lift_associate", 0.0))
        associate = min(associate_s, lift_associate)
        lift = lift_associate - associate
    stages["read"].append(read_s)
    stages["segment"].append(float(timings.get("segment", 0.0)))
    stages["lift"].append(lift)
    stages["associate"].append(associate)
    stages["map_update"].append(float(timings.get("map_update", 0.0)))
    stages["save"].append(float(timings.get("save", 0.0)))


def _checkpoint(mapper, refine, config, rss: int) -> dict:
    _, seconds = timed(lambda: refine(mapper.tracker, config.refine))
    return {"refine_s": seconds, "rss_bytes": rss, "objects_online": int(mapper.num_objects)}


# ---- scoring against ground truth --------------------------------------------------------------------


def label_distance(voxel_size: float) -> float:
    """How far (metres) a GT point may lie from a map point to take its label: two voxels."""
    return 2.0 * float(voxel_size)


def point_predictions(imap, xyz: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label GT points (N x 3 metres, world) by the map: (P x N bool masks, P confidences, P object ids)."""
    labels = imap.label_points(np.asarray(xyz, np.float64), label_distance(voxel_size))
    ids = np.unique(labels[labels >= 0])
    masks = labels[None, :] == ids[:, None]
    scores = np.array([imap.get(int(i)).confidence for i in ids], np.float64)
    return masks, scores, ids


def scene_predictions(imap, xyz: np.ndarray, gt_ids: np.ndarray, structure_ids, voxel_size: float, name: str) -> dict:
    """ScenePredictions for both protocols: "all" (every GT instance) and "objects" (structure made void)."""
    from scene.eval import ScenePredictions, objects_only

    masks, scores, _ = point_predictions(imap, xyz, voxel_size)
    gt = np.asarray(gt_ids, np.int64)
    return {
        "all": ScenePredictions(gt, masks, scores, name),
        "objects": ScenePredictions(objects_only(gt, structure_ids), masks, scores, name),
    }


def aligned_boxes(imap, transform: np.ndarray, structure: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned boxes (P x 6 min/max metres) of the map's objects after the 4 x 4 ``transform``
    (applied to the points, then the AABB taken), and their confidences. ``structure``: keep only
    objects with that ``is_structure`` flag (None: all)."""
    transform = np.asarray(transform, np.float64)
    boxes, scores = [], []
    for obj in imap:
        if structure is not None and bool(obj.is_structure) != structure:
            continue
        points = np.asarray(obj.points, np.float64) @ transform[:3, :3].T + transform[:3, 3]
        boxes.append(np.concatenate([points.min(0), points.max(0)]))
        scores.append(float(obj.confidence))
    return np.asarray(boxes, np.float64).reshape(-1, 6), np.asarray(scores, np.float64)
