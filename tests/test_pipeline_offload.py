"""Work moved between the segmenter process and the mapping process (reading, partitioning and lifting a
frame's masks): the same map whatever each frame's split, the lift made apart refused when it is not this
tracker's, and Ctrl-C keeping every integrated frame while the segmenter process lifts."""
from __future__ import annotations

import pickle
import random
import threading

import numpy as np
import pytest

from pipeline_helpers import pipeline_threads, wait_for_segmenter_start
from scene.config import MapperConfig
from scene.datasets import open_dataset
from scene.datasets.synthetic import make_scene, write_scene
from scene.map import map_fingerprint
from scene.pipeline import Mapper, _SegmentAhead, run
from scene.storage import MapStore
from segment2d.factory import make_generator
from segment2d.worker import _finished
from tracking import OnlineTracker, track_frame
from tracking.pipeline import FrameLifter, lift_frame_masks

NUM_FRAMES = 10


@pytest.fixture(scope="module")
def scene():
    return make_scene("room", seed=1, noisy=True, num_frames=60, width=320, height=240)


@pytest.fixture(scope="module")
def frames(scene):
    return list(scene.source(stop=NUM_FRAMES))


@pytest.fixture(scope="module")
def written(scene, tmp_path_factory):
    return write_scene(scene, tmp_path_factory.mktemp("offload") / "data", frames=scene.source(stop=NUM_FRAMES))



def test_masks_lifted_apart_step_the_tracker_as_lifted_here(frames):
    """A ``FrameLifter`` (pickled, as the segmenter process gets it) gives each frame the segments and
    surface the tracker makes itself: every step's ids and merges, and the final map, are the same."""
    generator, config = make_generator("geometric"), MapperConfig()
    here, apart = (OnlineTracker(config.tracking, config.lift) for _ in range(2))
    lifter = pickle.loads(pickle.dumps(Mapper(config).frame_lifter()))
    for frame in frames:
        masks = generator.generate(frame)
        mine = track_frame(here, frame, masks, config.partition)
        theirs = track_frame(apart, frame, masks, config.partition, lifted=lifter(frame, masks))
        assert (mine.object_ids == theirs.object_ids).all() and mine.step.merged == theirs.step.merged
        assert (mine.owner == theirs.owner).all() and (mine.mask_rows == theirs.mask_rows).all()
    a, b = here.object_map(), apart.object_map()
    assert a.keys.size > 1000 and (a.keys == b.keys).all() and (a.object == b.object).all()


def test_a_lift_of_another_frame_or_configuration_is_refused(frames):
    config = MapperConfig()
    generator = make_generator("geometric")
    tracker = OnlineTracker(config.tracking, config.lift)
    masks = generator.generate(frames[1])
    with pytest.raises(ValueError, match=rf"frame {frames[1].index}\): the lifted masks are of frame {frames[0].index}$"):
        track_frame(tracker, frames[1], masks, config.partition,
                    lifted=lift_frame_masks(frames[0], generator.generate(frames[0]), config.lift, config.partition))
    coarse = FrameLifter(type(config.lift)(voxel_size=0.05), config.partition)
    with pytest.raises(ValueError, match="another lift or partition configuration"):
        track_frame(tracker, frames[1], masks, config.partition, lifted=coarse(frames[1], masks))
    assert tracker.frames_seen == 0  # refused before anything was counted


def test_a_failing_finish_in_the_segmenter_process_leaves_the_work_to_the_caller(frames):
    """The worker's ``finish`` failing gives None (the mapping process then lifts, and meets the error
    itself, naming the frame); without a finish there is nothing to do."""
    masks = make_generator("geometric").generate(frames[0])

    def broken(frame, masks):
        raise MemoryError("no room")

    assert _finished(broken, frames[0], masks) is None and _finished(None, frames[0], masks) is None
    assert _finished(FrameLifter(MapperConfig().lift), frames[0], masks).frame_index == frames[0].index



def _forced(monkeypatch, choose):
    """Make ``_SegmentAhead`` hand the segmenter process the work ``choose(offloadable)`` names per frame,
    from the first frame on."""
    monkeypatch.setattr(_SegmentAhead, "_offloaded", lambda self: choose(self._offloadable))
    wait_for_segmenter_start(monkeypatch)


@pytest.mark.parametrize("source_kind", ["files", "list"])
def test_the_map_is_the_same_whoever_reads_and_lifts_each_frame(source_kind, written, frames, tmp_path, monkeypatch):
    """Sequential, and pipelined with the segmenter process taking nothing, everything, or a random split
    per frame (reading only offered for file sources): the same map byte for byte, stored and returned."""
    config = MapperConfig(save_every=3)
    source = (lambda: open_dataset(written)) if source_kind == "files" else (lambda: frames)
    rng = random.Random(7)
    schedules = {"none": lambda work: (), "all": lambda work: work,
                 "random": lambda work: work[:rng.randint(0, len(work))]}
    maps, lifted_apart = {}, {}
    for name in ("sequential", *schedules):
        if name != "sequential":
            _forced(monkeypatch, schedules[name])
        out, timings = tmp_path / f"{name}.sqlite", []
        returned = run(source(), config, out=out, pipelined=name != "sequential",
                       progress=lambda r, d, t: timings.append(r.timings), lift_apart=True)
        with MapStore(out, read_only=True) as store:
            maps[name] = (map_fingerprint(returned), map_fingerprint(store.load()))
        lifted_apart[name] = sum(t.get("lifted_apart", 0.0) for t in timings)
    assert maps["sequential"][0]["objects"] >= 3
    assert all(m == maps["sequential"] for m in maps.values()), {k: v[0]["digest"] for k, v in maps.items()}
    assert lifted_apart["none"] == 0 and lifted_apart["all"] == NUM_FRAMES and lifted_apart["sequential"] == 0
    assert not pipeline_threads()


def test_ctrl_c_while_the_segmenter_process_lifts_keeps_every_integrated_frame(written, tmp_path, monkeypatch):
    _forced(monkeypatch, lambda work: work)
    out, seen = tmp_path / "map.sqlite", []

    def progress(result, done, total):
        assert result.timings["lifted_apart"] == 1.0
        seen.append(result.frame_index)
        if done == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(open_dataset(written), MapperConfig(save_every=4), out=out, progress=progress, lift_apart=True)
    with MapStore(out, read_only=True) as store:
        kept = store.load()
    assert kept.num_frames == 6 and kept.trajectory[0].tolist() == seen
    assert not pipeline_threads()


def test_the_segmenter_process_takes_work_while_it_spends_less_cpu_and_gives_it_back(written, monkeypatch):
    """The split follows both processes' CPU per frame: the segmenter process spending less than this
    one takes one more kind of work per frame (up to reading and lifting), spending more gives one back
    (down to segmenting alone); the means are measured per frame taken, the first (start-up) left out.
    The frames wait for the process to start (on a loaded machine all ten could be segmented here
    before it started, leaving nothing measured from it)."""
    wait_for_segmenter_start(monkeypatch)
    frames = _SegmentAhead(Mapper(MapperConfig()), open_dataset(written), NUM_FRAMES, lift_apart=True)
    try:
        # at start the segmenter process reads, and lifts nothing (that would import the tracking modules
        # there before its first frame)
        assert frames._offloadable == ("read", "lift") and frames._offloaded() == ("read",)
        levels = []
        for apart, here in [(0.05, 0.0)] * 3 + [(0.0, 0.05)] * 3:
            frames._cpu_apart, frames._cpu_here = apart, here
            frames._rebalance()
            levels.append(frames._offloaded())
        assert levels == [(), (), (), ("read",), ("read", "lift"), ("read", "lift")]
        taken = list(frames)
        assert len(taken) == NUM_FRAMES and all("cpu_apart" not in t for *_, t in taken)
        assert frames._cpu_apart > 0 and frames._cpu_here > 0  # measured from the frames
    finally:
        frames.close()


def test_a_slow_mapping_thread_gets_its_frames_read_and_lifted_apart(written, monkeypatch):
    """A mapping thread spending CPU on each frame (here: a busy loop of 0.15 s) leaves the reading and
    lifting to the segmenter process for the frames after the first few."""
    import time

    timings = []

    def busy(result, done, total):
        timings.append(result.timings)
        end = time.process_time() + 0.15
        while time.process_time() < end:
            pass

    wait_for_segmenter_start(monkeypatch)
    run(open_dataset(written), MapperConfig(online_only=True), progress=busy, lift_apart=True)
    assert sum(t["lifted_apart"] for t in timings[3:]) >= len(timings[3:]) - 1, [t["lifted_apart"] for t in timings]


def test_frames_are_segmented_here_while_the_segmenter_process_starts(written, frames, tmp_path, monkeypatch):
    """Until the segmenter process says it started, frames are read and segmented on the mapping process's
    worker thread (no wait for its start-up): the same map; it does say so."""
    from segment2d.worker import SegmenterProcess

    worker = SegmenterProcess(make_generator("geometric"))
    try:
        for _ in range(600):  # up to 60 s on a loaded machine
            if worker.started():
                break
            threading.Event().wait(0.1)
        assert worker.started() and len(worker.generate(frames[0])) > 0
    finally:
        worker.close()
    calls = []
    original = SegmenterProcess.started
    monkeypatch.setattr(SegmenterProcess, "started", lambda self: len(calls) >= 4 and original(self) or calls.append(1) and False)
    config = MapperConfig(save_every=3)
    for name, source in (("files", lambda: open_dataset(written)), ("list", lambda: frames)):
        calls.clear()
        pipelined = map_fingerprint(run(source(), config, out=tmp_path / f"{name}.sqlite"))
        assert len(calls) >= 4, name
        assert pipelined == map_fingerprint(run(source(), config, pipelined=False)), name


@pytest.mark.parametrize("keep_points", [True, False])
def test_lifted_frames_pickle_their_segments_packed_and_come_back_equal(frames, keep_points):
    """A ``LiftedFrame`` crosses the process boundary with its segments packed into a few arrays
    (``lift3d.lift.pack_segments``): every field of every segment comes back equal, of the same type."""
    import dataclasses

    from lift3d.lift import LiftConfig

    masks = make_generator("geometric").generate(frames[2])
    lifted = FrameLifter(LiftConfig(keep_points=keep_points))(frames[2], masks)
    back = pickle.loads(pickle.dumps(lifted, protocol=pickle.HIGHEST_PROTOCOL))
    assert len(back.segments) == len(lifted.segments) > 5
    for mine, theirs in zip(lifted.segments, back.segments):
        for field in dataclasses.fields(mine):
            a, b = getattr(mine, field.name), getattr(theirs, field.name)
            assert type(a) is type(b), field.name
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype and a.shape == b.shape and (a == b).all(), field.name
            else:
                assert a == b, field.name
    assert (back.owner == lifted.owner).all() and (back.surface == lifted.surface).all()
    assert pickle.loads(pickle.dumps(lift_frame_masks(frames[2], masks.subset(np.zeros(len(masks), bool)),
                                                      LiftConfig()))).segments == []


def test_by_default_the_mapping_process_lifts_every_frame(written):
    """``lift_apart`` is off by default (measured: it cost ScanNet ~7% of wall): no frame lifted apart."""
    timings = []
    run(open_dataset(written), MapperConfig(online_only=True), progress=lambda r, d, t: timings.append(r.timings))
    assert len(timings) == NUM_FRAMES and all(t["lifted_apart"] == 0.0 for t in timings)
