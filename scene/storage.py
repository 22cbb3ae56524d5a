"""SQLite persistence of an ``InstanceMap`` (one file, stdlib ``sqlite3``; schema in docs/storage.md).

The file uses WAL journaling; every save is one transaction, so a process killed mid-save leaves the
file as of the last completed save. Point data are little-endian blobs (float32 xyz, uint8 rgb,
float32 weights), poses 16 little-endian float64 (row-major camera-to-world), so a load reproduces
every array exactly.

One writer at a time: a store opened for writing holds an exclusive lock (``flock``) on ``MAP.lock``
beside the file, which names its process id; a second writer, in this process or another, is refused
with a ``MapStorageError`` naming the file and that pid. The kernel drops the lock when the process
ends, even by SIGKILL, so a killed writer never leaves the map locked. Readers take no lock. A writer
process working for the lock's holder (``scene.map_writer``) opens the store with ``parent_lock=True``:
it checks that its parent process holds the lock instead of taking it.
"""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np

from scene import __version__
from scene.map import InstanceMap, MapMetadata, MapObject, PendingChanges

SCHEMA_VERSION = 1
FORMAT_NAME = "scene-map"
REQUIRED_TABLES = ("meta", "objects", "object_points", "object_boxes", "trajectory", "id_remap")
SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL")

_OBJECT_COLUMNS = (
    "id", "num_points", "num_observations", "first_frame", "last_frame", "confidence", "is_structure",
    "best_view_frame", "best_view_x0", "best_view_y0", "best_view_x1", "best_view_y1",
    "centroid_x", "centroid_y", "centroid_z", "aabb_min_x", "aabb_min_y", "aabb_min_z",
    "aabb_max_x", "aabb_max_y", "aabb_max_z", "obb_center_x", "obb_center_y", "obb_center_z",
    "obb_extent_x", "obb_extent_y", "obb_extent_z", "obb_rotation", "attributes",
)

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE objects (
    id INTEGER PRIMARY KEY, num_points INTEGER NOT NULL, num_observations INTEGER NOT NULL,
    first_frame INTEGER NOT NULL, last_frame INTEGER NOT NULL, confidence REAL NOT NULL,
    is_structure INTEGER NOT NULL, best_view_frame INTEGER NOT NULL,
    best_view_x0 REAL NOT NULL, best_view_y0 REAL NOT NULL, best_view_x1 REAL NOT NULL, best_view_y1 REAL NOT NULL,
    centroid_x REAL NOT NULL, centroid_y REAL NOT NULL, centroid_z REAL NOT NULL,
    aabb_min_x REAL NOT NULL, aabb_min_y REAL NOT NULL, aabb_min_z REAL NOT NULL,
    aabb_max_x REAL NOT NULL, aabb_max_y REAL NOT NULL, aabb_max_z REAL NOT NULL,
    obb_center_x REAL NOT NULL, obb_center_y REAL NOT NULL, obb_center_z REAL NOT NULL,
    obb_extent_x REAL NOT NULL, obb_extent_y REAL NOT NULL, obb_extent_z REAL NOT NULL,
    obb_rotation TEXT NOT NULL, attributes TEXT NOT NULL
);
CREATE TABLE object_points (
    object_id INTEGER PRIMARY KEY, xyz BLOB NOT NULL, rgb BLOB NOT NULL, weights BLOB
);
CREATE VIRTUAL TABLE object_boxes USING rtree(id, min_x, max_x, min_y, max_y, min_z, max_z);
CREATE TABLE trajectory (frame INTEGER PRIMARY KEY, pose BLOB NOT NULL);
CREATE TABLE id_remap (old_id INTEGER PRIMARY KEY, new_id INTEGER NOT NULL);
PRAGMA user_version = {SCHEMA_VERSION};
"""


class MapStorageError(Exception):
    """A map file that cannot be read or written: the message names the file and the problem."""


class MapStore:
    """One SQLite map file. ``MapStore(path)`` creates it when absent (or empty) and opens it for
    writing; ``read_only=True`` opens an existing file without ever writing to it.

    ``synchronous``: SQLite's durability level. "NORMAL" (default) survives a killed process (the
    test kills a writer with SIGKILL); "FULL" also survives power loss at the cost of an fsync per save.
    ``replace=True`` (writing only): an existing file that is not a readable map is deleted and made
    afresh; a readable one is kept until the next ``save`` replaces its contents (one transaction), so
    a run that fails before its first save loses nothing. ``created`` tells whether this store made
    the file. ``parent_lock=True`` (writing only): the writer lock is not taken but must be held by the
    parent process (``WriterLock.check_parent``; a mapper's writer process). Use as a context manager or
    call ``close()``.
    """

    def __init__(self, path: str | Path, read_only: bool = False, synchronous: str = "NORMAL",
                 replace: bool = False, parent_lock: bool = False) -> None:
        self.path = Path(path)
        self.read_only = bool(read_only)
        self._connection: sqlite3.Connection | None = None
        self._lock: WriterLock | None = None
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(f"MapStore({self.path}): synchronous must be one of {SYNCHRONOUS_MODES}")
        if self.read_only and (not self.path.exists() or self.path.stat().st_size == 0):
            raise MapStorageError(f"{self.path}: no map file there (missing or empty)")
        if not self.read_only:
            if not self.path.parent.is_dir():
                raise MapStorageError(f"{self.path}: folder {self.path.parent} does not exist")
            if parent_lock:
                WriterLock.check_parent(self.path)
            else:
                self._lock = WriterLock(self.path)
        try:
            self._open(synchronous, replace and not self.read_only)
        except BaseException:
            self.close()
            raise

    def _open(self, synchronous: str, replace: bool) -> None:
        try:
            self._open_connection(synchronous)
        except MapStorageError:
            if not replace:
                raise
            self._close_connection()
            remove_map_files(self.path)
            self._open_connection(synchronous)

    def _open_connection(self, synchronous: str) -> None:
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self.created = fresh
        self._connection = self._connect()
        try:
            with self._translated("open"):
                if fresh:
                    self._create_schema()
                self._check_schema()
                if not self.read_only:
                    self._connection.execute("PRAGMA journal_mode = WAL")
                    self._connection.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        except BaseException:
            self._close_connection()
            raise

    # ---- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> "MapStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._close_connection()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def discard(self) -> None:
        """Close the store and delete the map file (with its WAL files): for a file this store created
        and nothing was ever saved to, so that a run failing at its start leaves no empty map behind."""
        self._close_connection()
        remove_map_files(self.path)
        self.close()

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # ---- writing ----------------------------------------------------------------------------

    def save(self, imap: InstanceMap) -> None:
        """Write the whole map, replacing the file's contents, in one transaction."""
        self._require_writable("save")
        rows = [_object_row(o) for o in imap]
        with self._translated("save"), self._transaction():
            for table in REQUIRED_TABLES[1:]:
                self._db.execute(f"DELETE FROM {table}")
            self._write_objects(rows)
            frames, poses = imap.trajectory
            self._write_frames(frames, poses)
            self._write_state(imap)
        imap.mark_saved()

    def save_incremental(
        self, imap: InstanceMap, changed_ids=None, removed_ids=None, frames=None
    ) -> None:
        """Write only what changed, in one transaction: objects ``changed_ids`` (rewritten; ids no longer
        in the map are deleted), ``removed_ids`` (deleted), trajectory entries for frame indices
        ``frames``; the remap table, frame count and metadata are always rewritten (they are small).
        Arguments left as None come from ``imap.pending_changes()`` (what changed since the last save).
        """
        self._require_writable("save_incremental")
        pending = imap.pending_changes()
        changes = PendingChanges(
            pending.changed_ids if changed_ids is None else {int(i) for i in changed_ids},
            pending.removed_ids if removed_ids is None else {int(i) for i in removed_ids},
            pending.frames if frames is None else [int(f) for f in frames],
        )
        live = sorted(i for i in changes.changed_ids if i in imap)
        gone = sorted((changes.changed_ids | changes.removed_ids) - set(live))
        rows = [_object_row(imap.get(i)) for i in live]
        all_frames, all_poses = imap.trajectory
        unknown = sorted(set(changes.frames) - set(all_frames.tolist()))
        if unknown:
            raise ValueError(f"save_incremental({self.path}): frames {unknown} are not in the map's trajectory")
        position = np.searchsorted(all_frames, changes.frames)
        with self._translated("save_incremental"), self._transaction():
            self._delete_objects(gone + live)
            self._write_objects(rows)
            self._write_frames(all_frames[position], all_poses[position])
            self._write_state(imap)
        imap.mark_saved(changes)

    # ---- reading ----------------------------------------------------------------------------

    def load(self) -> InstanceMap:
        """The stored map, identical to the saved one (same arrays, metadata, trajectory, remap table)."""
        with self._translated("load"):
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            imap = InstanceMap(MapMetadata.from_json(json.loads(meta["metadata"])))
            columns = ", ".join(f"o.{c}" for c in _OBJECT_COLUMNS)
            query = (f"SELECT {columns}, p.xyz, p.rgb, p.weights FROM objects o "
                     "LEFT JOIN object_points p ON p.object_id = o.id ORDER BY o.id")
            for row in self._db.execute(query):
                imap.add(self._object_from_row(row))
            for frame, pose in self._db.execute("SELECT frame, pose FROM trajectory ORDER BY frame"):
                imap.add_frame(frame, self._pose_from_blob(frame, pose))
            imap.num_frames = int(meta["num_frames"])
            imap.id_remap = dict(self._db.execute("SELECT old_id, new_id FROM id_remap ORDER BY old_id"))
        imap.mark_saved()
        return imap

    # ---- internals --------------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise MapStorageError(f"{self.path}: the store is closed")
        return self._connection

    def _connect(self) -> sqlite3.Connection:
        uri = f"{self.path.resolve().as_uri()}?mode={'ro' if self.read_only else 'rwc'}"
        try:
            connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise MapStorageError(f"{self.path}: cannot open the map file ({error})") from None
        return connection

    def _translated(self, action: str):
        return _ErrorTranslation(self.path, action)

    def _transaction(self):
        return _Transaction(self._db)

    def _require_writable(self, action: str) -> None:
        if self.read_only:
            raise MapStorageError(f"{self.path}: {action}() on a store opened read-only")

    def _create_schema(self) -> None:
        with self._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
                ("format", FORMAT_NAME), ("schema_version", str(SCHEMA_VERSION)),
                ("writer", f"scene-seg {__version__}"),
                ("metadata", json.dumps(MapMetadata().to_json())), ("num_frames", "0"),
            ])

    def _check_schema(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise MapStorageError(
                f"{self.path}: written with map schema version {version}; this code reads versions up to "
                f"{SCHEMA_VERSION} (upgrade scene-seg)"
            )
        tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [t for t in REQUIRED_TABLES if t not in tables]
        if missing:
            raise MapStorageError(f"{self.path}: not a scene map file (missing tables: {', '.join(missing)})")
        meta = dict(self._db.execute("SELECT key, value FROM meta WHERE key IN ('format', 'metadata', 'num_frames')"))
        if meta.get("format") != FORMAT_NAME or "metadata" not in meta or "num_frames" not in meta:
            raise MapStorageError(f"{self.path}: meta table does not describe a {FORMAT_NAME!r} file: {meta}")
        if version < 1:
            raise MapStorageError(f"{self.path}: schema version {version} is not a released map schema")

    def _write_objects(self, rows: list[tuple[tuple, tuple, tuple]]) -> None:
        placeholders = ", ".join("?" * len(_OBJECT_COLUMNS))
        self._db.executemany(f"INSERT INTO objects ({', '.join(_OBJECT_COLUMNS)}) VALUES ({placeholders})",
                             [r[0] for r in rows])
        self._db.executemany("INSERT INTO object_points (object_id, xyz, rgb, weights) VALUES (?, ?, ?, ?)",
                             [r[1] for r in rows])
        self._db.executemany("INSERT INTO object_boxes VALUES (?, ?, ?, ?, ?, ?, ?)", [r[2] for r in rows])

    def _delete_objects(self, ids: list[int]) -> None:
        for table, column in (("objects", "id"), ("object_points", "object_id"), ("object_boxes", "id")):
            self._db.executemany(f"DELETE FROM {table} WHERE {column} = ?", [(i,) for i in ids])

    def _write_frames(self, frames: np.ndarray, poses: np.ndarray) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO trajectory (frame, pose) VALUES (?, ?)",
            [(int(f), np.asarray(p, "<f8").tobytes()) for f, p in zip(frames, poses)],
        )

    def _write_state(self, imap: InstanceMap) -> None:
        self._db.execute("DELETE FROM id_remap")
        self._db.executemany("INSERT INTO id_remap (old_id, new_id) VALUES (?, ?)", sorted(imap.id_remap.items()))
        metadata = _json_text(imap.metadata.to_json(), f"{self.path}: map metadata")
        self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [
            ("metadata", metadata), ("num_frames", str(int(imap.num_frames))),
            ("writer", f"scene-seg {__version__}"),
        ])

    def _object_from_row(self, row: tuple) -> MapObject:
        values = dict(zip(_OBJECT_COLUMNS, row[: len(_OBJECT_COLUMNS)]))
        xyz, rgb, weights = row[len(_OBJECT_COLUMNS):]
        n, object_id = values["num_points"], values["id"]
        where = f"{self.path}: object {object_id}"
        if xyz is None or len(xyz) != 12 * n or len(rgb) != 3 * n or (weights is not None and len(weights) != 4 * n):
            raise MapStorageError(f"{where}: point blobs do not hold the {n} points its row announces")
        return MapObject(
            object_id, np.frombuffer(xyz, "<f4").reshape(n, 3).astype(np.float32),
            np.frombuffer(rgb, np.uint8).reshape(n, 3).copy(),
            None if weights is None else np.frombuffer(weights, "<f4").astype(np.float32),
            num_observations=values["num_observations"], first_frame=values["first_frame"],
            last_frame=values["last_frame"], confidence=values["confidence"],
            best_view_frame=values["best_view_frame"],
            best_view_box=[values[f"best_view_{c}"] for c in ("x0", "y0", "x1", "y1")],
            is_structure=bool(values["is_structure"]), attributes=json.loads(values["attributes"]),
            obb_center=[values[f"obb_center_{a}"] for a in "xyz"],
            obb_rotation=np.array(json.loads(values["obb_rotation"]), np.float64).reshape(3, 3),
            obb_extents=[values[f"obb_extent_{a}"] for a in "xyz"],
        )

    def _pose_from_blob(self, frame: int, blob: bytes) -> np.ndarray:
        if blob is None or len(blob) != 128:
            raise MapStorageError(f"{self.path}: trajectory pose of frame {frame} is not 16 float64 values")
        return np.frombuffer(blob, "<f8").reshape(4, 4).astype(np.float64)


def remove_map_files(path: Path) -> None:
    """Delete a map file and its SQLite WAL files (missing ones are fine)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class WriterLock:
    """Exclusive, non-blocking ``flock`` on ``PATH.lock``, which holds the owner's pid. Raises
    ``MapStorageError`` naming ``path`` and the other writer's pid when the lock is held (by another
    process, or by another open store in this one). ``release()`` deletes the lock file."""

    def __init__(self, path: Path) -> None:
        import fcntl

        self.path = Path(f"{path}.lock")
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise MapStorageError(f"{path}: another writer holds this map (process {owner}, lock file "
                                      f"{self.path}); wait for it to finish or write to another file") from None
            if self._still_linked(fd):
                break
            os.close(fd)  # the previous owner deleted the file between our open and our lock: retry
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    @staticmethod
    def check_parent(path: Path) -> None:
        """Raise ``MapStorageError`` naming ``path`` unless this process's parent holds the writer lock of
        ``path`` (the lock file names the parent's pid and the lock is taken)."""
        import fcntl

        lock_path = Path(f"{path}.lock")
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            raise MapStorageError(f"{path}: no writer holds this map (no lock file {lock_path}); a writer process "
                                  f"writes only under its parent's lock") from None
        try:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = False  # nobody held it: closing the descriptor below drops it again
            except BlockingIOError:
                held = True
        finally:
            os.close(fd)
        if not held or owner != str(os.getppid()):
            raise MapStorageError(f"{path}: the writer lock is {'held by process ' + owner if held else 'not held'}, "
                                  f"not by this process's parent {os.getppid()}; a writer process writes only under "
                                  f"its parent's lock")

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)  # closing the descriptor drops the lock
        self._fd = None


def _object_row(obj: MapObject) -> tuple[tuple, tuple, tuple]:
    """(objects row, object_points row, object_boxes row) for one object."""
    attributes = _json_text(obj.attributes, f"attributes of object {obj.id}")
    lo, hi = obj.aabb_min.astype(np.float64), obj.aabb_max.astype(np.float64)
    row = (
        obj.id, obj.num_points, obj.num_observations, obj.first_frame, obj.last_frame, obj.confidence,
        int(obj.is_structure), obj.best_view_frame, *map(float, obj.best_view_box), *map(float, obj.centroid),
        *map(float, lo), *map(float, hi), *map(float, obj.obb_center), *map(float, obj.obb_extents),
        json.dumps(obj.obb_rotation.reshape(-1).tolist()), attributes,
    )
    weights = None if obj.weights is None else np.asarray(obj.weights, "<f4").tobytes()
    points = (obj.id, np.asarray(obj.points, "<f4").tobytes(), np.asarray(obj.colors, np.uint8).tobytes(), weights)
    box = (obj.id, float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]), float(lo[2]), float(hi[2]))
    return row, points, box


def _json_text(value: object, what: str) -> str:
    """``json.dumps(value)``, or a ValueError naming ``what`` when it is not JSON-serialisable."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} is not JSON-serialisable: {error}") from None


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.connection.execute("COMMIT")
        elif self.connection.in_transaction:
            self.connection.execute("ROLLBACK")


class _ErrorTranslation:
    """Turns sqlite3 and decoding errors into a MapStorageError naming the file and the action."""

    def __init__(self, path: Path, action: str) -> None:
        self.path, self.action = path, action

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if exc_type is None or issubclass(exc_type, MapStorageError):
            return False
        if issubclass(exc_type, sqlite3.DatabaseError):
            problem = "not a SQLite database or corrupt" if "not a database" in str(exc) or "malformed" in str(
                exc) else "database error"
            raise MapStorageError(f"{self.path}: {self.action} failed, {problem} ({exc})") from exc
        if issubclass(exc_type, (KeyError, json.JSONDecodeError)) and self.action == "load":
            raise MapStorageError(
                f"{self.path}: stored map is incomplete or corrupt ({exc_type.__name__}: {exc})") from exc
        if issubclass(exc_type, ValueError) and self.action == "load":
            raise MapStorageError(f"{self.path}: stored map holds invalid values ({exc})") from exc
        return False
