"""The mapper's state beside its map file (``scene.mapper_state``): a run stopped early resumes to the same
refined map as a run never stopped; a state that does not fit the map is not used, and says why."""
from __future__ import annotations

import os
import pickle
import shutil
from dataclasses import replace

import numpy as np
import pytest

from lift3d.voxels import VoxelIndex
from scene.config import MapperConfig
from scene.datasets import DatasetError
from scene.datasets.synthetic import make_scene
from scene.map import map_fingerprint
from scene.mapper_state import MAGIC, MapperStateError, read_header, read_state, state_path, write_state
from scene.pipeline import Mapper, run
from tracking.records import GrowableArray

FRAMES, STOP = 10, 5


@pytest.fixture(scope="module")
def frames():
    return list(make_scene("room", seed=3, noisy=True, num_frames=FRAMES, width=240, height=180).frames())


@pytest.fixture(scope="module")
def uninterrupted(frames, tmp_path_factory):
    return run(frames, out=tmp_path_factory.mktemp("full") / "map.sqlite", pipelined=False)


class _StopsAt(list):
    """The frames, with ``error`` raised when frame ``at`` is pulled (as Ctrl-C or a bad file would)."""

    def __init__(self, frames, at: int, error: BaseException) -> None:
        super().__init__(frames)
        self.at, self.error = at, error

    def __iter__(self):
        for k, frame in enumerate(list.__iter__(self)):
            if k == self.at:
                raise self.error
            yield frame


def _stopped_run(frames, path, error=None):
    error = error if error is not None else KeyboardInterrupt()
    with pytest.raises(type(error)):
        run(_StopsAt(frames, STOP, error), out=path, pipelined=False)


def test_a_run_stopped_early_resumes_to_the_same_refined_map(frames, uninterrupted, tmp_path):
    path = tmp_path / "map.sqlite"
    _stopped_run(frames, path)
    state = state_path(path)
    assert state.is_file() and read_header(state)["frames"] == STOP
    mapper = Mapper.resume(path)
    assert mapper.refinable and mapper.num_frames == STOP
    final = run(frames, mapper=mapper, pipelined=False)
    assert final.metadata.extra["refined"] is True
    assert map_fingerprint(final)["digest"] == map_fingerprint(uninterrupted)["digest"]
    assert not state.exists()  # the refined map's ids are no longer the tracker's


def test_an_unreadable_frame_keeps_the_state_too(frames, tmp_path):
    path = tmp_path / "map.sqlite"
    _stopped_run(frames, path, DatasetError("frame 5: depth file is corrupt"))
    assert read_header(state_path(path))["frames"] == STOP


def test_a_state_the_map_was_saved_past_is_not_used(frames, tmp_path):
    path = tmp_path / "map.sqlite"
    _stopped_run(frames, path)
    old = tmp_path / "old.state"
    shutil.copy(state_path(path), old)
    mapper = Mapper.resume(path)
    for frame in frames[STOP:STOP + 2]:
        mapper.integrate(frame)
    mapper.save()
    mapper.close()  # as a killed run: no new state, the old one left beside a map saved past it
    header_end = old.read_bytes().index(b"\n", len(MAGIC)) + 1
    state_path(path).write_bytes(old.read_bytes()[:header_end + 10])  # the header tells: nothing is unpickled
    with pytest.warns(RuntimeWarning, match=f"holds {STOP} frames, the map {STOP + 2}"):
        resumed = Mapper.resume(path)
    assert not resumed.refinable and resumed.num_frames == STOP + 2
    assert run(frames, mapper=resumed, pipelined=False).metadata.extra["refined"] is False


def test_a_corrupt_state_or_other_settings_resume_online_and_say_why(frames, tmp_path):
    path = tmp_path / "map.sqlite"
    _stopped_run(frames, path)
    state = state_path(path)
    whole = state.read_bytes()
    other = replace(MapperConfig(), tracking=replace(MapperConfig().tracking, confidence_frames=9.0))
    with pytest.warns(RuntimeWarning, match="made with other tracking settings"):
        mapper = Mapper.resume(path, other)
    assert not mapper.refinable
    mapper.close()
    state.write_bytes(whole[: len(whole) // 2])
    with pytest.warns(RuntimeWarning, match="truncated or corrupt"):
        mapper = Mapper.resume(path)
    assert not mapper.refinable and len(mapper.map) > 0  # the objects are there, seeded from the map
    mapper.close()


def test_from_state_finalizes_with_other_refine_settings_only(frames, tmp_path):
    mapper = Mapper()
    for frame in frames:
        mapper.integrate(frame)
    kept = mapper.save_state(tmp_path / "s.state")
    expected = mapper.finalize()
    again = Mapper.from_state(kept).finalize()
    assert map_fingerprint(again)["digest"] == map_fingerprint(expected)["digest"]
    config = MapperConfig()
    emptied = Mapper.from_state(kept, replace(config, refine=replace(config.refine, min_area=100.0))).finalize()
    assert len(emptied) == 0 and len(expected) > 0
    other = replace(config, lift=replace(config.lift, stride=config.lift.stride + 1))
    with pytest.raises(MapperStateError, match="s.state: it was made with other lift settings"):
        Mapper.from_state(kept, other)
    other = replace(config, geometric=replace(config.geometric, work_width=config.geometric.work_width * 2))
    with pytest.raises(MapperStateError, match="s.state: it was made with other geometric settings"):
        Mapper.from_state(kept, other)
    with pytest.raises(RuntimeError, match="finalized"):
        mapper.save_state(tmp_path / "late.state")


class _Calls:
    def __reduce__(self):
        return (os.getcwd, ())


def test_only_state_files_of_this_code_are_read(tmp_path):
    bad = tmp_path / "bad.state"
    write_state(bad, {}, {"tracker": _Calls()})
    with pytest.raises(MapperStateError, match="bad.state: truncated or corrupt .*getcwd is not part of a mapper"):
        read_state(bad)
    bad.write_bytes(b"SQLite format 3\x00")
    with pytest.raises(MapperStateError, match="bad.state: not a mapper state file"):
        read_state(bad)
    bad.write_bytes(MAGIC + b'{"format": 1, "code": "0123"}\n' + pickle.dumps({}))
    with pytest.raises(MapperStateError, match="bad.state: written by another version of the code"):
        read_state(bad)
    with pytest.raises(MapperStateError, match="missing.state: cannot be read"):
        read_state(tmp_path / "missing.state")


def test_indexes_and_records_pickle_without_their_spare_capacity():
    index = VoxelIndex()
    keys = np.random.default_rng(0).choice(10**9, 5000, replace=False).astype(np.int64)
    index.insert(keys)
    records = GrowableArray(np.float64, 3)
    records.extend(np.arange(30.0).reshape(10, 3))
    copy, records_copy = pickle.loads(pickle.dumps((index, records)))
    assert np.array_equal(copy.lookup(keys), np.arange(5000)) and np.array_equal(copy.keys, index.keys)
    assert copy.lookup(np.array([-5, 10**9 + 1])).tolist() == [-1, -1]
    assert np.array_equal(copy.insert(np.array([keys[7], 10**9 + 1])), [7, 5000])
    assert len(pickle.dumps(index)) < 0.5 * (index._slot_keys.nbytes + index._slot_rows.nbytes)
    assert np.array_equal(records_copy.view, records.view) and len(records_copy._data) == len(records._data)
    records_copy.extend(np.ones((2, 3)))
    assert records_copy.size == 12
