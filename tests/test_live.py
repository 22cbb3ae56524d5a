"""Live mapping: a bounded backlog with a stated skip policy, a slow consumer that skips and counts, and a
map file that a second process reads while it is written."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import numpy as np
import pytest

from scene.config import MapperConfig
from scene.datasets import DatasetError
from scene.datasets.synthetic import make_scene
from scene.live import FrameQueue, LiveConfig, LiveMapping
from scene.pipeline import Mapper
from scene.storage import MapStore

FRAMES = 24


@pytest.fixture(scope="module")
def frames():
    dense = make_scene("room", seed=3, noisy=True, num_frames=100, width=160, height=120)
    return [dense.frame(i) for i in range(FRAMES)]


def _drain(queue: FrameQueue) -> list[int]:
    queue.close()
    return [f.index for f in queue]


def test_drop_oldest_keeps_the_newest_frames(frames):
    queue = FrameQueue(LiveConfig(max_backlog=2, policy="drop-oldest"))
    assert all(queue.push(f) for f in frames[:5])
    assert queue.backlog == 2 and _drain(queue) == [3, 4]
    assert (queue.stats.received, queue.stats.skipped, queue.stats.max_backlog_seen) == (5, 3, 2)


def test_drop_newest_refuses_frames_while_full(frames):
    queue = FrameQueue(LiveConfig(max_backlog=2, policy="drop-newest"))
    assert [queue.push(f) for f in frames[:5]] == [True, True, False, False, False]
    assert _drain(queue) == [0, 1] and queue.stats.skipped == 3


def test_bad_frames_are_refused_in_the_callers_thread(frames):
    queue = FrameQueue()
    broken = replace(frames[0], pose=np.full((4, 4), np.nan), source="cam0")
    with pytest.raises(DatasetError, match="cam0: pose is not a finite rigid"):
        queue.push(broken)
    queue.push(frames[1])
    with pytest.raises(ValueError, match="frame index 0 is not after the previous one"):
        queue.push(frames[0])
    with pytest.raises(ValueError, match="policy must be one of"):
        LiveConfig(policy="keep-all")


def test_a_slow_consumer_keeps_its_backlog_bounded_and_counts_what_it_skips(tmp_path, frames):
    out = tmp_path / "live.sqlite"
    mapper = Mapper(replace(MapperConfig(), save_every=4), out=out)
    live = LiveMapping(mapper, LiveConfig(max_backlog=2), on_frame=lambda result: time.sleep(0.05)).start()
    backlogs = []
    for frame in frames:
        live.push(frame)
        backlogs.append(live.queue.backlog)
        time.sleep(0.005)  # the sensor: 200 frames/s, far faster than the mapper
    with pytest.warns(UserWarning, match=r"live mapping skipped \d+ of 24 frames \(policy drop-oldest, backlog 2\)"):
        imap = live.stop()
    stats = live.stats
    assert max(backlogs) <= 2 and stats.max_backlog_seen <= 2
    assert stats.received == FRAMES and stats.skipped > 0 and stats.integrated + stats.skipped == FRAMES
    frames_mapped = imap.trajectory[0].tolist()
    assert len(frames_mapped) == stats.integrated and frames_mapped[-1] == FRAMES - 1  # the latest is never lost
    with MapStore(out, read_only=True) as store:
        saved = store.load()
    assert saved.metadata.extra["live"]["skipped"] == stats.skipped and len(saved) == len(imap) > 0


READER = textwrap.dedent("""
    import json, sys, time
    from scene.storage import MapStore
    seen = []
    for _ in range(60):
        with MapStore(sys.argv[1], read_only=True) as store:
            imap = store.load()
        seen.append((imap.num_frames, len(imap), len(imap.within_radius(imap.trajectory[1][-1][:3, 3], 10.0)[0])))
        time.sleep(0.05)
    print(json.dumps(seen))
""")


def test_another_process_queries_the_map_while_it_is_written(tmp_path, frames):
    out = tmp_path / "shared.sqlite"
    mapper = Mapper(replace(MapperConfig(), save_every=2, online_only=True), out=out)
    with LiveMapping(mapper, LiveConfig(max_backlog=FRAMES)) as live:
        for frame in frames[:4]:
            live.push(frame)
        while live.stats.integrated < 4:  # the file exists and holds objects before the reader starts
            time.sleep(0.05)
        reader = subprocess.Popen([sys.executable, "-c", READER, str(out)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        for frame in frames[4:]:
            live.push(frame)
            time.sleep(0.1)
        stdout, stderr = reader.communicate(timeout=120)
    assert reader.returncode == 0, stderr
    seen = json.loads(stdout)
    counts = sorted({n for n, _, _ in seen})
    assert counts[0] >= 4 and len(counts) >= 3  # it read while frames kept arriving
    assert all(objects > 0 and near > 0 for _, objects, near in seen)
