"""SQLite map storage: exact round trips, incremental saves, a writer killed mid-run, corrupt files."""
import multiprocessing
import os
import signal
import sqlite3

import numpy as np
import pytest

from scene.map import InstanceMap, MapMetadata, MapObject
from scene.storage import SCHEMA_VERSION, MapStorageError, MapStore

ARRAY_FIELDS = ("points", "colors", "weights", "aabb_min", "aabb_max", "centroid", "obb_center", "obb_rotation",
                "obb_extents", "best_view_box")
SCALAR_FIELDS = ("id", "num_observations", "first_frame", "last_frame", "confidence", "best_view_frame",
                 "is_structure", "attributes")


def random_object(rng: np.random.Generator, object_id: int, frame: int = 0) -> MapObject:
    n = int(rng.integers(5, 200))
    return MapObject(
        object_id, rng.normal(size=(n, 3)) * 0.2 + rng.uniform(0, 5, 3), rng.integers(0, 256, (n, 3)),
        weights=rng.random(n) if rng.random() < 0.5 else None, num_observations=int(rng.integers(1, 50)),
        first_frame=frame, last_frame=frame + int(rng.integers(0, 30)), confidence=float(rng.random()),
        best_view_frame=frame, best_view_box=rng.uniform(0, 640, 4), is_structure=bool(rng.random() < 0.2),
        attributes={"label": f"thing {object_id}", "scores": [float(rng.random()), 0.1]},
    )


def random_pose(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    pose = np.eye(4)
    pose[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    pose[:3, 3] = rng.uniform(-3, 3, 3)
    return pose


def random_map(seed: int = 0, n_objects: int = 30, n_frames: int = 12) -> InstanceMap:
    rng = np.random.default_rng(seed)
    imap = InstanceMap(MapMetadata(
        voxel_size=0.02, source_path="/data/scene0448_01", source_format="scannet",
        K=[[577.6, 0, 319.5], [0, 578.7, 239.5], [0, 0, 1]], image_size=(480, 640), up=[0, 0, 1],
        extra={"preset": "test", "seed": seed},
    ))
    for k in range(n_objects):
        imap.add(random_object(rng, 3 * k + 1, frame=k))
    for f in range(n_frames):
        imap.add_frame(10 * f, random_pose(rng))
    imap.record_remap({100: 1, 101: 4})
    return imap


def assert_maps_equal(a: InstanceMap, b: InstanceMap) -> None:
    assert a.ids.tolist() == b.ids.tolist()
    for x, y in zip(a, b):
        for name in ARRAY_FIELDS:
            u, v = getattr(x, name), getattr(y, name)
            if u is None or v is None:
                assert u is None and v is None, f"object {x.id}: {name}"
                continue
            assert u.dtype == v.dtype and np.array_equal(u, v), f"object {x.id}: {name} differs"
        for name in SCALAR_FIELDS:
            assert getattr(x, name) == getattr(y, name), f"object {x.id}: {name} differs"
    for u, v in zip(a.trajectory, b.trajectory):
        assert u.dtype == v.dtype and np.array_equal(u, v)
    assert a.num_frames == b.num_frames and a.id_remap == b.id_remap
    assert a.metadata.to_json() == b.metadata.to_json()


def test_round_trip_is_exact(tmp_path):
    imap = random_map()
    with MapStore(tmp_path / "map.sqlite") as store:
        assert store.schema_version == SCHEMA_VERSION
        store.save(imap)
    with MapStore(tmp_path / "map.sqlite", read_only=True) as store:
        loaded = store.load()
    assert_maps_equal(imap, loaded)
    assert loaded.pending_changes().changed_ids == set()


def test_file_uses_wal_and_the_rtree_answers_box_queries(tmp_path):
    imap = random_map(seed=1)
    path = tmp_path / "map.sqlite"
    with MapStore(path) as store:
        store.save(imap)
    lo, hi = np.array([1.0, 1.0, 0.5]), np.array([3.5, 4.0, 3.0])
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = db.execute(
            "SELECT o.id FROM object_boxes b JOIN objects o ON o.id = b.id WHERE b.max_x >= ? AND b.min_x <= ? "
            "AND b.max_y >= ? AND b.min_y <= ? AND b.max_z >= ? AND b.min_z <= ? ORDER BY o.id",
            (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])).fetchall()
    expected = [o.id for o in imap if np.all(o.aabb_max >= lo) and np.all(o.aabb_min <= hi)]
    assert [r[0] for r in rows] == expected and 0 < len(expected) < len(imap)


def mutate(imap: InstanceMap, rng: np.random.Generator, step: int) -> None:
    """One online step: a new object, a changed one, sometimes a removal and a merge, one frame."""
    imap.add(random_object(rng, imap.next_id(), frame=step))
    changed = int(rng.choice(imap.ids))
    imap.update(imap.get(changed).with_points(rng.normal(size=(40, 3)) + step))
    if step % 3 == 2:
        gone = int(rng.choice(imap.ids))
        imap.remove(gone)
        imap.record_remap({gone: int(imap.ids[0])})
    last = imap.trajectory[0][-1] if imap.num_frames else -1
    imap.add_frame(last + 1, random_pose(rng))


def test_incremental_saves_equal_a_full_save(tmp_path):
    rng = np.random.default_rng(2)
    imap = random_map(seed=2, n_objects=10)
    with MapStore(tmp_path / "incremental.sqlite") as store:
        store.save(imap)
        for step in range(12):
            mutate(imap, rng, step)
            if step % 4 == 3:
                store.save_incremental(imap)
        store.save_incremental(imap)
        assert imap.pending_changes().changed_ids == set()
        incremental = store.load()
    with MapStore(tmp_path / "full.sqlite") as store:
        store.save(imap)
        full = store.load()
    assert_maps_equal(imap, incremental)
    assert_maps_equal(full, incremental)


def test_explicit_incremental_arguments(tmp_path):
    imap = random_map(seed=3, n_objects=4, n_frames=2)
    with MapStore(tmp_path / "m.sqlite") as store:
        store.save(imap)
        obj = imap.get(imap.ids[0])
        imap.update(obj.with_points(obj.points[:3]))
        imap.add_frame(100, np.eye(4))
        store.save_incremental(imap, changed_ids=[], removed_ids=[], frames=[])
        assert store.load().get(obj.id).num_points == obj.num_points  # nothing written yet
        store.save_incremental(imap, changed_ids=[obj.id], removed_ids=[], frames=[100])
        assert_maps_equal(imap, store.load())
        with pytest.raises(ValueError, match=r"frames \[7\]"):
            store.save_incremental(imap, frames=[7])


def online_writer(path, saved_step, every: int) -> None:
    """Child process: map online forever, saving incrementally every ``every`` steps."""
    rng = np.random.default_rng(4)
    imap = InstanceMap()
    with MapStore(path) as store:
        step = 0
        while True:
            mutate(imap, rng, step)
            step += 1
            if step % every == 0:
                store.save_incremental(imap)
                saved_step.value = step


def replay(steps: int) -> InstanceMap:
    rng = np.random.default_rng(4)
    imap = InstanceMap()
    for step in range(steps):
        mutate(imap, rng, step)
    return imap


def test_killed_writer_leaves_the_last_completed_save(tmp_path):
    path = tmp_path / "online.sqlite"
    context = multiprocessing.get_context("fork")
    saved_step = context.Value("i", 0)
    child = context.Process(target=online_writer, args=(path, saved_step, 3), daemon=True)
    child.start()
    try:
        deadline = 60.0
        while saved_step.value < 30 and deadline > 0 and child.is_alive():
            deadline -= 0.01
            child.join(0.01)
        assert saved_step.value >= 30, "the writer did not get far enough"
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    finally:
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
    last_known = saved_step.value
    with MapStore(path) as store:
        recovered = store.load()
        steps = recovered.num_frames  # one frame per step
        assert steps % 3 == 0 and steps >= last_known  # a save either completed or left no trace
        assert_maps_equal(replay(steps), recovered)
        rng = np.random.default_rng(5)
        for step in range(steps, steps + 4):  # mapping continues on the recovered map
            mutate(recovered, rng, step)
        store.save_incremental(recovered)
    with MapStore(path, read_only=True) as store:
        assert_maps_equal(recovered, store.load())


def test_reopened_map_continues_appending_frames(tmp_path):
    imap = random_map(seed=6, n_objects=5, n_frames=3)
    with MapStore(tmp_path / "m.sqlite") as store:
        store.save(imap)
    with MapStore(tmp_path / "m.sqlite") as store:
        loaded = store.load()
        rng = np.random.default_rng(6)
        mutate(loaded, rng, 0)
        store.save_incremental(loaded)
    with MapStore(tmp_path / "m.sqlite") as store:
        again = store.load()
    assert_maps_equal(loaded, again)
    assert again.num_frames == 4 and again.trajectory[0].tolist() == [0, 10, 20, 21]


def saved_file(tmp_path, name="m.sqlite", **kwargs):
    path = tmp_path / name
    with MapStore(path) as store:
        store.save(random_map(**kwargs))
    return path


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "garbage.sqlite"
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    for read_only in (True, False):
        with pytest.raises(MapStorageError, match=r"garbage\.sqlite.*not a SQLite database"):
            MapStore(path, read_only=read_only)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = saved_file(tmp_path, n_objects=60)
    data = path.read_bytes()
    for keep in (len(data) // 2, 60):
        path.write_bytes(data[:keep])
        with pytest.raises(MapStorageError, match=r"m\.sqlite"):
            with MapStore(path, read_only=True) as store:
                store.load()


def test_newer_schema_version_is_refused(tmp_path):
    path = saved_file(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(MapStorageError, match=rf"schema version {SCHEMA_VERSION + 1}.*up to {SCHEMA_VERSION}"):
        MapStore(path, read_only=True)


def test_missing_tables_and_foreign_databases_are_refused(tmp_path):
    path = saved_file(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE trajectory")
    with pytest.raises(MapStorageError, match="missing tables: trajectory"):
        MapStore(path)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(MapStorageError, match="not a scene map file"):
        MapStore(other)


def test_inconsistent_point_blob_is_named(tmp_path):
    path = saved_file(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE object_points SET xyz = substr(xyz, 1, 24) WHERE object_id = 4")
    with MapStore(path, read_only=True) as store, pytest.raises(MapStorageError, match="object 4: point blobs"):
        store.load()


def test_read_only_store_never_writes(tmp_path):
    path = saved_file(tmp_path)
    before = path.read_bytes()
    with MapStore(path, read_only=True) as store:
        imap = store.load()
        with pytest.raises(MapStorageError, match="read-only"):
            store.save(imap)
    assert path.read_bytes() == before
    with pytest.raises(MapStorageError, match="no map file"):
        MapStore(tmp_path / "absent.sqlite", read_only=True)


def test_unserialisable_attributes_leave_the_file_unchanged(tmp_path):
    path = saved_file(tmp_path)
    with MapStore(path) as store:
        imap = store.load()
        obj = imap.get(imap.ids[0])
        obj.attributes["bad"] = object()
        imap.update(obj)
        with pytest.raises(ValueError, match=f"attributes of object {obj.id}"):
            store.save(imap)
        del obj.attributes["bad"]
        assert_maps_equal(imap, store.load())
