"""The pipelined run (frames segmented on a worker thread, saves on a writer thread or process) against the sequential
one on a synthetic scene: the same map byte for byte, errors raised naming the frame with the work so far
saved, the writer flushing everything on close and on interruption, and no thread left running."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from benchmarks.suites import speed
from scene.app.cli import main

from scene.config import MapperConfig
from scene.datasets.synthetic import make_scene, write_scene
from scene.map import map_fingerprint
from scene.pipeline import Mapper, SegmentationError, run
from scene.storage import MapStorageError, MapStore
from segment2d.factory import make_generator

NUM_FRAMES = 10
THREAD_NAMES = ("scene-reader", "scene-segmenter", "scene-map-writer")


@pytest.fixture(scope="module")
def frames():
    scene = make_scene("room", seed=1, noisy=True, num_frames=60, width=320, height=240)
    return list(scene.source(stop=NUM_FRAMES))


def _stored(path):
    with MapStore(path, read_only=True) as store:
        return store.load()


def _our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in THREAD_NAMES]


class _FailsAt:
    """The geometric generator, raising on one frame index."""

    name = "failing"

    def __init__(self, index: int) -> None:
        self.index, self.inner = index, make_generator("geometric")

    def generate(self, frame):
        if frame.index == self.index:
            raise RuntimeError("out of memory in the mask decoder")
        return self.inner.generate(frame)


def test_pipelined_run_makes_the_sequential_map(frames, tmp_path):
    config = MapperConfig(save_every=3)
    maps = {}
    for pipelined, save_process in ((False, None), (True, False), (True, True)):
        out = tmp_path / f"{pipelined}-{save_process}.sqlite"
        returned = run(frames, config, out=out, pipelined=pipelined, save_process=save_process)
        stored = _stored(out)
        maps[save_process] = (map_fingerprint(returned), map_fingerprint(stored), stored.metadata.extra["sequence"],
                              stored.metadata.K.tolist(), stored.metadata.image_size)
    assert maps[True] == maps[False] == maps[None]
    assert len(maps[True][2]["first_frames"]) == 3
    assert maps[True][0]["objects"] >= 5
    assert not _our_threads()


@pytest.mark.parametrize("share", [1.0, 0.05])
def test_writer_thread_saves_what_the_inline_saves_write(frames, tmp_path, share):
    """Incremental saves only (no finalize): close() waits for the writer, and the file then holds what
    the same frames saved inline hold, every frame included; also with the saves paced hard (``share``)."""
    stored = {}
    for background in (False, True):
        out = tmp_path / f"{background}.sqlite"
        mapper = Mapper(MapperConfig(save_every=4), out)
        mapper.save_in_background(background, share=share)
        results = [mapper.integrate(frame) for frame in frames]
        assert [r.saved for r in results].count(True) == NUM_FRAMES // 4
        mapper.save()  # the frames after the last incremental save
        mapper.close()
        stored[background] = map_fingerprint(_stored(out))
    assert stored[True] == stored[False]
    assert len(_stored(tmp_path / "True.sqlite").trajectory[0]) == NUM_FRAMES
    assert not _our_threads()


def test_segmenter_error_names_the_frame_and_keeps_the_frames_before(frames, tmp_path):
    out = tmp_path / "map.sqlite"
    bad = frames[6].index
    with pytest.raises(SegmentationError, match=f"frame {bad} .*failing generator failed: RuntimeError: out of memory"):
        run(frames, MapperConfig(save_every=100), out=out, mapper=Mapper(MapperConfig(save_every=100), out,
                                                                          generator=_FailsAt(bad)))
    kept = _stored(out)
    assert kept.num_frames == 6 and kept.trajectory[0].tolist() == [f.index for f in frames[:6]]
    assert not _our_threads()


@pytest.mark.parametrize("save_process", [False, True])
def test_ctrl_c_keeps_every_integrated_frame_and_stops_the_threads(frames, tmp_path, save_process):
    out = tmp_path / "map.sqlite"
    seen = []

    def progress(result, done, total):
        seen.append(result.frame_index)
        if done == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(frames, MapperConfig(save_every=3), out=out, progress=progress, save_process=save_process)
    kept = _stored(out)
    assert kept.num_frames == 7 and kept.trajectory[0].tolist() == seen
    assert not _our_threads()


def test_writer_error_is_raised_on_the_mapping_thread(frames, tmp_path, monkeypatch):
    def broken(self, imap, *args, **kwargs):
        raise MapStorageError(f"{self.path}: save_incremental failed, disk full")

    monkeypatch.setattr(MapStore, "save_incremental", broken)  # reaches the writer thread, not a writer process
    out = tmp_path / "map.sqlite"
    with pytest.raises(MapStorageError, match="disk full"):
        run(frames, MapperConfig(save_every=2), out=out, save_process=False)
    assert not _our_threads()


def test_timings_hold_read_segment_and_latency(frames):
    results = []
    run(frames[:4], MapperConfig(online_only=True), progress=lambda r, d, t: results.append(r))
    for result in results:
        assert {"read", "segment", "lift_associate", "map_update", "latency"} <= set(result.timings)
        assert result.timings["segment"] > 0
        assert result.timings["latency"] >= result.timings["lift_associate"] + result.timings["map_update"]


def test_scene_run_timings_and_the_speed_section_reading_them(tmp_path):
    """``scene run --timings`` (sequential here) writes every frame's stages and finalize's; the speed
    section turns that, the wall and the rusage into its rates and renders them."""
    scene = make_scene("tabletop", seed=0, num_frames=4, width=160, height=120)
    data = write_scene(scene, tmp_path / "data")
    out, timings = tmp_path / "map.sqlite", tmp_path / "t.json"
    assert main(["run", str(data), "--out", str(out), "--quiet", "--sequential", "--timings", str(timings)]) == 0
    report = json.loads(timings.read_text())
    assert len(report["frames"]) == 4 and report["pipelined"] is False
    assert set(report["finalize"]) == {"global_pass", "final_save"} and report["run_s"] > 0
    fingerprint = map_fingerprint(_stored(out))
    summary = speed.summarize_run(report, wall=2.0, usage={"cpu_s": 3.0, "peak_rss_bytes": 300 * 2**20}, cores=2,
                                  fingerprint=fingerprint)
    assert summary["fps_end_to_end"] == 2.0 and summary["cpu_utilisation"] == 0.75
    assert summary["fps_online"] > summary["frames"] / report["run_s"]
    assert summary["stages"]["latency"]["n"] == 4 and summary["stages"]["save"]["n"] == 0
    assert summary["lifted_apart_share"] == 0.0  # sequential: every frame lifted on the mapping thread
    runs = {label: summary for label, _, _ in speed.RUNS}
    data = {"protocol": "p", "load_average": [1.0], "skipped": {},
            "sequences": {"tiny": {"runs": runs, "identical": True, "concurrency_gain": 1.5, "pipelining_gain": 1.25,
                                   "objects": fingerprint["objects"], "points": fingerprint["points"]}}}
    text = speed.markdown(data)
    for expected in ("maps identical across the runs: yes", "concurrency gain (1 core / 2 cores wall) 1.50x",
                     "| pipelined, 1 core | 4 | 2.000 | 2.000 |", "frames lifted in the segmenter process",
                     fingerprint["digest"][:10]):
        assert expected in text, expected


def test_segmenter_process_gives_the_generators_own_masks_and_reports_failures(frames):
    from segment2d.worker import SegmenterProcess

    generator = make_generator("geometric")
    worker = SegmenterProcess(generator)
    try:
        for frame in frames[:2]:
            mine, theirs = generator.generate(frame), worker.generate(frame)
            assert mine.masks.shape == theirs.masks.shape and (mine.masks == theirs.masks).all()
            assert (mine.scores == theirs.scores).all() and (mine.boxes == theirs.boxes).all()
            assert set(mine.extra) == set(theirs.extra)
        broken = frames[0].__class__(frames[0].index, 0.0, frames[0].color[:, :5], frames[0].depth, frames[0].K,
                                     frames[0].pose, source="bad.png")
        with pytest.raises(RuntimeError, match="ValueError: bad.png: colour must be"):
            worker.generate(broken)
        assert worker.generate(frames[0]).masks.shape[0] == generator.generate(frames[0]).masks.shape[0]
        worker._process.kill()
        with pytest.raises(RuntimeError, match="segmenter process died"):
            worker.generate(frames[1])
    finally:
        worker.close()
    assert worker._process.poll() is not None


def test_a_stopped_segmenter_process_ends_on_its_own_and_close_reaps_it(frames):
    import time

    from segment2d.worker import SegmenterProcess

    worker = SegmenterProcess(make_generator("geometric"))
    try:
        assert worker.generate(frames[0]).masks.shape[0] > 0
        worker.stop()
        worker.stop()
        deadline = time.monotonic() + 60
        while worker._process.poll() is None and time.monotonic() < deadline:  # nobody waits on it
            time.sleep(0.05)
        assert worker._process.returncode == 0
    finally:
        worker.close()
    worker.close()
    assert worker._process.stdout.closed


def test_masks_cut_to_their_extents_come_back_whole():
    """The worker's reply (bit-packed crops): any width (not a multiple of 8), masks touching every
    border, empty masks and an empty set come back bit for bit, and the payload is the crops only."""
    import numpy as np

    from segment2d.types import MaskSet
    from segment2d.worker import pack_masks as _packed_masks, unpack_masks as _unpacked_masks

    rng = np.random.default_rng(3)
    masks = np.zeros((4, 37, 61), bool)
    masks[0] = rng.random((37, 61)) > 0.6  # touches every border
    masks[1, 5:9, 50:61] = True  # the last, partial byte
    masks[3, 36, 0] = True  # one pixel in the corner
    for stack in (masks, np.zeros((0, 37, 61), bool)):
        given = MaskSet(stack, np.ones(len(stack), np.float32), np.zeros((len(stack), 4), np.float32), {"level": np.arange(len(stack))})
        payload = _packed_masks(given)
        back = _unpacked_masks(payload)
        assert back.masks.shape == stack.shape and (back.masks == stack).all()
        assert (back.extra["level"] == given.extra["level"]).all()
    assert payload[0].size == 0
    assert _packed_masks(MaskSet(masks, np.ones(4, np.float32), np.zeros((4, 4), np.float32), {}))[0].size == 37 * 8 + 4 * 2 + 1


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A small scene written to disk (the project format): a file source the segmenter process can read."""
    scene = make_scene("room", seed=1, noisy=True, num_frames=60, width=320, height=240)
    return write_scene(scene, tmp_path_factory.mktemp("written") / "data", frames=scene.source(stop=NUM_FRAMES))


def test_the_segmenter_process_reads_file_sources_and_makes_the_same_map(written, frames, tmp_path):
    """A file reader is copied to the segmenter process, which reads and segments its frames there: the
    frames and masks it sends back are the ones read and segmented here, and the pipelined map is the
    sequential one byte for byte. Frames given as a list are read by the caller."""
    from scene.datasets import open_dataset
    from segment2d.worker import SegmenterProcess

    source = open_dataset(written)
    assert SegmenterProcess.reads(source) and not SegmenterProcess.reads(frames)
    assert not SegmenterProcess.reads(iter(source))
    generator = make_generator("geometric")
    worker = SegmenterProcess(generator, source)
    try:
        done = worker.read_and_generate(3)
        mine = generator.generate(source[3])
        assert done.frame.index == source[3].index and (done.frame.depth == source[3].depth).all()
        assert (done.frame.color == source[3].color).all() and done.read_s > 0 and not done.skipped
        assert done.masks.masks.shape == mine.masks.shape and (done.masks.masks == mine.masks).all()
        assert (done.masks.scores == mine.scores).all()
        skipped = worker.read_and_generate(2, after=source[2].index)
        assert skipped.skipped and skipped.masks is None and skipped.frame.index == source[2].index
    finally:
        worker.close()
    config = MapperConfig(save_every=3)
    results, maps = [], {}
    for pipelined in (False, True):
        out = tmp_path / f"{pipelined}.sqlite"
        returned = run(open_dataset(written), config, out=out, pipelined=pipelined,
                       progress=lambda r, d, t: results.append(r.timings))
        maps[pipelined] = (map_fingerprint(returned), map_fingerprint(_stored(out)))
    assert maps[True] == maps[False] and maps[True][0]["objects"] >= 3
    assert all(t["read"] > 0 and t["segment"] > 0 for t in results[NUM_FRAMES:])
    assert not _our_threads()


def test_a_corrupt_frame_read_by_the_segmenter_process_names_its_file_and_keeps_the_frames_before(written, tmp_path):
    import shutil

    from scene.datasets import DatasetError, open_dataset

    data = tmp_path / "data"
    shutil.copytree(written, data)
    source = open_dataset(data)
    bad = Path(source[5].source)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    out = tmp_path / "map.sqlite"
    with pytest.raises(DatasetError, match=bad.name):
        run(open_dataset(data), MapperConfig(save_every=100), out=out)
    kept = _stored(out)
    assert kept.num_frames == 5 and kept.trajectory[0].tolist() == [source[k].index for k in range(5)]
    assert not _our_threads()


def test_read_ahead_bounds_the_frames_prepared_beyond_the_one_being_integrated(written, monkeypatch):
    """With ``read_ahead`` = k (fixed: ``ADAPTIVE_AHEAD`` off), frame n is read only once the mapping thread
    took frame n - k, and the map does not depend on k. The mapping thread is made the slower stage
    (progress sleeps), so the reader always reaches its bound."""
    import time

    import scene.pipeline
    from scene.datasets import open_dataset

    monkeypatch.setattr(scene.pipeline, "ADAPTIVE_AHEAD", False)

    class _Counting:
        def __init__(self, source):
            self.source, self.reads = source, []

        def __len__(self):
            return len(self.source)

        def __iter__(self):
            for k in range(len(self.source)):
                self.reads.append(k)
                yield self.source[k]

    digests = set()
    for ahead in (1, 2):
        source = _Counting(open_dataset(written))
        taken = []

        def progress(result, done, total, source=source, taken=taken):
            time.sleep(0.3)
            taken.append(len(source.reads))  # frames read when this frame's integration ended

        digests.add(map_fingerprint(run(source, MapperConfig(online_only=True), progress=progress,
                                        read_ahead=ahead))["digest"])
        # frame n (1-based) integrated: at most n + ahead frames read, and the reader kept that far ahead
        assert all(reads <= done + ahead for done, reads in enumerate(taken, 1)), (ahead, taken)
        lead = [reads - done for done, reads in enumerate(taken, 1)][:-ahead]
        assert lead.count(ahead) >= len(lead) // 2, taken  # mostly at the bound (a loaded machine may lag)
    assert len(digests) == 1
    with pytest.raises(ValueError, match="read_ahead must be >= 1"):
        run(open_dataset(written), MapperConfig(online_only=True), read_ahead=0)
    assert not _our_threads()


def test_adaptive_read_ahead_keeps_one_frame_ahead_of_a_slower_mapping_thread(written):
    """``ADAPTIVE_AHEAD``: while the mapping thread is the slower stage (progress sleeps) and finds its next
    frame ready, a second frame ahead would only wait: the reader keeps one frame ahead, not ``read_ahead``
    = 2 (the fixed-bound test above reaches 2 on the same run), and the map is the same."""
    import time

    from scene.datasets import open_dataset

    source, reads, taken = open_dataset(written), [], []

    class _Source:
        def __len__(self):
            return len(source)

        def __iter__(self):
            for k in range(len(source)):
                reads.append(k)
                yield source[k]

    def progress(result, done, total):
        time.sleep(0.3)
        taken.append(len(reads))

    adaptive = map_fingerprint(run(_Source(), MapperConfig(online_only=True), progress=progress, read_ahead=2))
    lead = [count - done for done, count in enumerate(taken, 1)][2:-2]  # past the start, before the end
    assert lead and all(step <= 2 for step in lead) and lead.count(1) >= len(lead) // 2, taken
    fixed = map_fingerprint(run(open_dataset(written), MapperConfig(online_only=True), pipelined=False))
    assert adaptive["digest"] == fixed["digest"]
    assert not _our_threads()


def test_masks_packed_from_crops_are_the_masks_packed_whole(frames):
    """The worker packs a generator's crops (``generate_crops``) into exactly the bytes it packs from the
    whole stack: crops at any column (not on a byte boundary), empty, or on the last partial byte; and the
    geometric generator's crops are its masks."""
    import numpy as np

    from segment2d.types import MaskCrops
    from segment2d.worker import pack_crops, pack_masks, unpack_masks

    rng = np.random.default_rng(5)
    crops = [(3, 2, rng.random((7, 13)) > 0.5), (0, 0, np.zeros((4, 4), bool)), (50, 30, rng.random((7, 11)) > 0.3),
             (13, 9, np.pad(np.ones((2, 2), bool), ((3, 1), (4, 5))))]
    given = MaskCrops(crops, (37, 61), np.ones(4, np.float32), np.zeros((4, 4), np.float32), {"level": np.arange(4)})
    dense = given.to_maskset()
    for a, b in zip(pack_crops(given), pack_masks(dense)):
        assert (np.asarray(a) == np.asarray(b)).all() if not isinstance(a, dict) else a.keys() == b.keys()
    assert (unpack_masks(pack_crops(given)).masks == dense.masks).all()
    generator = make_generator("geometric")
    for frame in frames[:2]:
        made = generator.generate_crops(frame)
        whole = generator.generate(frame)
        assert len(made) == len(whole) > 5 and (made.to_maskset().masks == whole.masks).all()
        packed, expected = pack_crops(made), pack_masks(whole)
        assert (packed[0] == expected[0]).all() and (packed[1] == expected[1]).all()


def test_frames_are_read_by_the_process_with_time_to_spare(written, monkeypatch):
    """The segmenter process reads a file source's frames while the mapping process spends more CPU per
    frame than it does; once it spends less, this process reads them."""
    import time

    from scene.datasets import open_dataset
    from scene.datasets.base import FrameSource
    from scene.pipeline import _SegmentAhead

    here = []
    original = FrameSource.__getitem__
    monkeypatch.setattr(FrameSource, "__getitem__", lambda self, k: here.append(k) or original(self, k))
    source = open_dataset(written)
    frames = _SegmentAhead(Mapper(MapperConfig()), source, len(source))
    try:
        for _ in frames:  # a slow mapping thread, busy on the CPU: frames wait for it
            end = time.process_time() + 0.3
            while time.process_time() < end:
                pass
    finally:
        frames.close()
    # Most frames, not all: on a loaded machine the segmenter process may stall for longer than the sleep,
    # and then the mapping thread rightly reads a frame or two itself.
    assert len(here) <= NUM_FRAMES // 2, here
    frames._offload, frames._cpu_apart, frames._cpu_here = 1, 0.0, 0.05
    frames._rebalance()
    assert "read" in frames._offloaded()
    frames._offload, frames._cpu_apart, frames._cpu_here = 1, 0.05, 0.0
    frames._rebalance()
    assert "read" not in frames._offloaded()
