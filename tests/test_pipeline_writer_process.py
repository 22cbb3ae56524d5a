"""The incremental saves in a writer process (``Mapper.save_in_background(process=True)``) against the writer
thread on a synthetic scene: each save's file content, the map read during the run, the finalized maps
(refined and online) and a resumed map are the same; a save's error is raised on the mapping thread; the map
file's writer lock keeps refusing other writers; a killed writer process is reported naming the map file,
and the map is then saved inline with every integrated frame."""
from __future__ import annotations

import json
import os
import shutil
import signal

import pytest

from scene.config import MapperConfig
from scene.datasets.synthetic import make_scene
from scene.map import map_fingerprint
from scene.map_writer import MapWriter, WriterProcess
from scene.pipeline import Mapper, run
from scene.storage import MapStorageError, MapStore

NUM_FRAMES = 12


@pytest.fixture(scope="module")
def frames():
    scene = make_scene("room", seed=1, noisy=True, num_frames=60, width=320, height=240)
    return list(scene.source(stop=NUM_FRAMES))


def _content(path) -> tuple:
    """What a map file holds: the objects (fingerprint), their confidences and attributes, the metadata."""
    with MapStore(path, read_only=True) as store:
        imap = store.load()
    return (map_fingerprint(imap), {o.id: (o.confidence, o.attributes) for o in imap}, imap.metadata.to_json(),
            imap.trajectory[0].tolist())


def _map_content(imap) -> tuple:
    # the metadata as of now (a writer thread's map shares its metadata with the mapper, which finalize edits)
    metadata = json.loads(json.dumps(imap.metadata.to_json()))
    return map_fingerprint(imap), {o.id: (o.confidence, o.attributes) for o in imap}, metadata


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _saves(frames, out, process: bool, config: MapperConfig) -> list:
    """The file's content after each incremental save, then after close()."""
    mapper = Mapper(config, out)
    mapper.save_in_background(process=process)
    assert isinstance(mapper._writer, WriterProcess) == process
    contents = []
    for frame in frames:
        if mapper.integrate(frame).saved:
            mapper.save()  # waits for the save just handed over (nothing new to save)
            contents.append(_content(out))
    mapper.save()
    mapper.close()
    return contents + [_content(out)]


def test_each_save_writes_what_the_writer_thread_writes(frames, tmp_path):
    config = MapperConfig(save_every=3)
    by_thread = _saves(frames, tmp_path / "thread.sqlite", False, config)
    by_process = _saves(frames, tmp_path / "process.sqlite", True, config)
    assert len(by_process) == NUM_FRAMES // 3 + 1
    assert by_process == by_thread
    assert by_process[-1][0]["objects"] >= 5 and by_process[-1][3] == [f.index for f in frames]
    assert by_process[0][0] != by_process[-1][0]  # the saves did change the file


@pytest.mark.parametrize("online_only", [False, True])
def test_map_during_the_run_and_finalized_is_the_writer_threads(frames, tmp_path, online_only):
    config = MapperConfig(save_every=4, online_only=online_only)
    seen = {}
    for process in (False, True):
        out = tmp_path / f"{process}.sqlite"
        mapper = Mapper(config, out)
        mapper.save_in_background(process=process)
        during = []
        for k, frame in enumerate(frames):
            mapper.integrate(frame)
            if k in (2, 5, 9):  # between saves, right after one, and once more
                during.append(_map_content(mapper.map))
        pid = mapper._writer.pid if process else None
        final = mapper.finalize()
        mapper.close()
        seen[process] = (during, _map_content(final), _content(out))
        if process:
            assert _gone(pid)  # finalize ended the writer process
    assert seen[True] == seen[False]
    assert seen[True][1][2]["extra"]["refined"] is (not online_only)


def test_resumed_map_saves_as_with_the_writer_thread(frames, tmp_path):
    first = tmp_path / "first.sqlite"
    run(frames[:5], MapperConfig(save_every=2, online_only=True), out=first, save_process=False)
    seen = {}
    for process in (False, True):
        out = tmp_path / f"{process}.sqlite"
        shutil.copy(first, out)
        mapper = Mapper.resume(out, MapperConfig(save_every=2))
        imap = run(frames, mapper.config, mapper=mapper, save_process=process)
        seen[process] = (_map_content(imap), _content(out))
    assert seen[True] == seen[False]
    assert seen[True][1][3] == [f.index for f in frames]
    assert seen[True][1][2]["extra"]["refined"] is False


def test_another_writer_is_refused_while_the_writer_process_saves(frames, tmp_path):
    out = tmp_path / "map.sqlite"
    mapper = Mapper(MapperConfig(save_every=2), out)
    mapper.save_in_background(process=True)
    for frame in frames[:4]:
        mapper.integrate(frame)
    mapper.save()
    with pytest.raises(MapStorageError, match=f"another writer holds this map \\(process {os.getpid()}"):
        MapStore(out)
    with pytest.raises(MapStorageError, match="not by this process's parent"):
        MapStore(out, parent_lock=True)  # this process's parent does not hold it: the lock is ours
    mapper.integrate(frames[4])
    mapper.save()
    mapper.close()
    with pytest.raises(MapStorageError, match="no writer holds this map"):
        MapStore(out, parent_lock=True)
    with MapStore(out) as store:  # released by close()
        assert store.load().trajectory[0].tolist() == [f.index for f in frames[:5]]


def test_a_save_failing_in_the_writer_process_is_raised_here(frames, tmp_path):
    out = tmp_path / "map.sqlite"
    mapper = Mapper(MapperConfig(save_every=2), out)
    mapper._map.metadata.extra["unwritable"] = {1, 2}  # a set: pickles to the process, but is no JSON
    pids = []
    with pytest.raises(ValueError, match="map metadata is not JSON-serialisable"):
        run(frames, mapper.config, out=out, mapper=mapper, save_process=True,
            progress=lambda result, done, total: pids.append(mapper._writer.pid))
    pid = pids[0]
    assert isinstance(mapper._writer, MapWriter) and _gone(pid)  # the process was stopped
    assert not out.exists()  # nothing was ever saved: close() dropped the new file


def test_killed_writer_process_is_reported_and_no_frame_is_lost(frames, tmp_path):
    out = tmp_path / "map.sqlite"
    config = MapperConfig(save_every=3)
    mapper = Mapper(config, out)
    mapper.save_in_background(process=True)
    for frame in frames[:4]:
        mapper.integrate(frame)
    mapper.save()
    pid = mapper._writer.pid
    os.kill(pid, signal.SIGKILL)
    with pytest.warns(RuntimeWarning, match=f"{out}: the map writer process \\(pid {pid}\\) died"):
        for frame in frames[4:]:
            mapper.integrate(frame)
        mapper.save()
    assert not isinstance(mapper._writer, WriterProcess) and _gone(pid)
    with pytest.raises(MapStorageError, match="another writer"):
        MapStore(out)  # still locked by the mapper
    final = mapper.finalize()
    stored = _content(out)
    assert stored[3] == [f.index for f in frames]
    assert stored[0] == map_fingerprint(final)
    inline = run(frames, config, out=tmp_path / "inline.sqlite", pipelined=False)
    assert map_fingerprint(final) == map_fingerprint(inline)  # the refined map does not depend on the saves
