"""The writer's side of a mapper's incremental saves, and a writer process to run them in.

``MapReplica`` is what a save works on: the ``InstanceMap``, the ``PartRanker`` (with its cache), the
``StructureMemo`` (per-object measures of the floor, ceiling and up tests) and the map's up estimate. A
save applies the map edits recorded since the last one (``apply``: data, not code, so that they can be
pickled: ``("frame", index, pose)``, ``("fingerprint", [index, digest])``,
``("camera", K, (height, width))``, ``("retire", keep, retired)``), builds the touched objects from their
voxel sums (``finish``), flags floor and ceiling, ranks the objects and writes the store (``write_save``).
``scene.pipeline.Mapper`` runs it inline, on a writer thread (``MapWriter``), or in a ``WriterProcess``.

``WriterProcess``: the saves in a process of their own (``python -m scene.map_writer``, a fresh interpreter,
as ``segment2d.worker.SegmenterProcess``), so that a save does not hold the mapping process's GIL while the
mapping thread works (on 2 cores, the frames after each save took 2-3x longer to lift and associate beside
the writer thread). The replica is pickled over once at the start; then each request carries the edits and
the touched objects' voxel sums and statistics, pickled to its stdin by a sender thread (a pipe write
waits without the GIL), and each gets a reply on its stdout. The map file's writer lock stays with the
mapping process (``scene.storage.WriterLock``); the writer process opens the store with
``parent_lock=True``, which checks that its parent holds that lock instead of taking it. The process
ignores Ctrl-C (the mapping process saves the map so far and stops it).
"""
from __future__ import annotations

import os
import pickle
import queue
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from scene.map import InstanceMap, MapObject
from scene.objects import well_observed
from scene.parts import PartConfig, PartRanker, no_pause
from scene.storage import MapStore
from scene.structure import StructureConfig, StructureMemo, flat_levels, map_up, mark_floor_and_ceiling


@dataclass(frozen=True)
class FinishSettings:
    """What building and ranking the touched objects needs of ``MapperConfig``: ``min_hit_share``
    (``well_observed``), ``structure`` (floor, ceiling, up) and ``parts`` (ranking and joins)."""

    min_hit_share: float
    structure: StructureConfig
    parts: PartConfig


class MapReplica:
    """The map a mapper's saves build (see the module docstring); used by one thread at a time."""

    def __init__(self, imap: InstanceMap, settings: FinishSettings) -> None:
        self.imap = imap
        self.settings = settings
        self.parts = PartRanker(settings.parts)
        self.structure = StructureMemo()  # per-object measures of the floor, ceiling and up tests
        self._up: tuple[int, np.ndarray | None] | None = None  # (frames at the estimate, up)

    def forget_caches(self) -> None:
        """A fresh part ranker, structure memo and up estimate (after the map's objects were replaced
        wholesale)."""
        self.parts, self.structure, self._up = PartRanker(self.settings.parts), StructureMemo(), None

    def apply(self, edits: list) -> None:
        """Apply recorded map edits, in order (module docstring)."""
        for kind, *arguments in edits:
            _EDITS[kind](self.imap, *arguments)

    def finish(self, objects: list | None, give_way: Callable[[], None] = no_pause) -> None:
        """Put the touched objects (``Mapper._touched_objects``: id, voxel sums or None when too small to
        be in the map, statistics) into the map, then flag floor and ceiling and rank the map's objects;
        nothing when none was touched. ``give_way`` is called between steps (``MapWriter.give_way``)."""
        if objects is None:
            return
        imap = self.imap
        for obj, sums, statistics in objects:
            give_way()
            if sums is None:
                if obj in imap:
                    imap.remove(obj)
                continue
            geometry = well_observed(*mean_geometry(*sums), self.settings.min_hit_share)
            imap.update(MapObject.from_points(obj, *geometry, up=imap.metadata.up, **statistics))
        up = self.current_up()
        give_way()
        mark_floor_and_ceiling(imap, self.settings.structure, up, self.structure)
        give_way()
        self.parts.rank(imap, up, give_way)

    def joined_view(self, imap: InstanceMap) -> InstanceMap:
        """``imap`` itself, or a copy with its pieces joined (``PartRanker.joins``) when it has any."""
        up = self.current_up()
        if up is None or not self.settings.parts.joins_any or len(imap) == 0:
            return imap
        view = imap.copy()
        joined = self.parts.join(view, up, flat_levels(imap, up, self.settings.structure)[0],
                                 self.settings.min_hit_share)
        return view if joined else imap

    def current_up(self):
        """The map's up (``scene.structure.map_up``), re-estimated once the trajectory grew by a quarter."""
        frames = self.imap.num_frames
        if self._up is None or frames >= 1.25 * self._up[0]:
            self._up = (max(frames, 1), map_up(self.imap, self.settings.structure, self.structure))
        return self._up[1]


def write_save(replica: MapReplica, store: MapStore, edits: list, objects: list | None, first: bool,
               resumed: bool, give_way: Callable[[], None] = no_pause) -> None:
    """One incremental save: the edits, the touched objects, then the store (in full the ``first`` time).
    ``give_way`` is called between its steps (``MapWriter.give_way``)."""
    replica.apply(edits)
    if resumed:  # online frames joined a map that may have been refined: it no longer is
        replica.imap.metadata.extra["refined"] = False
    replica.finish(objects, give_way)
    give_way()
    if first:
        store.save(replica.imap)
    else:
        store.save_incremental(replica.imap)


def _add_frame(imap: InstanceMap, index: int, pose: np.ndarray) -> None:
    imap.add_frame(index, pose)


def _record_fingerprint(imap: InstanceMap, entry: list) -> None:
    sequence = imap.metadata.extra.setdefault("sequence", {"path": imap.metadata.source_path, "first_frames": []})
    sequence["first_frames"].append(entry)


def _set_camera(imap: InstanceMap, K: np.ndarray, size: tuple[int, int]) -> None:
    meta = imap.metadata
    if meta.K is None:
        meta.K, meta.image_size = K, size


def _retire(imap: InstanceMap, keep: int, retire: int) -> None:
    if retire in imap:
        imap.remove(retire)
    imap.record_remap({retire: keep})


_EDITS = {"frame": _add_frame, "fingerprint": _record_fingerprint, "camera": _set_camera, "retire": _retire}


def mean_geometry(xyz_sum: np.ndarray, rgb_sum: np.ndarray, hits: np.ndarray):
    """(mean points N x 3 float32, mean colours N x 3 uint8, weights N float32) from voxel sums."""
    per_voxel = np.maximum(hits, 1).astype(np.float64)[:, None]
    points = (xyz_sum / per_voxel).astype(np.float32)
    colors = np.clip(np.round(rgb_sum / per_voxel), 0, 255).astype(np.uint8)
    return points, colors, hits.astype(np.float32)


# CPU-seconds a paced save runs between its pauses (``MapWriter.give_way``): a few of the interpreter's
# 5 ms switch interval, so that a thread waiting for the GIL gets it back within one turn
PACE_QUANTUM = 0.002


class MapWriter:
    """Runs a mapper's save jobs in the order given: at once (``background=False``), or on one writer
    thread, at most one job waiting behind the one running (``submit`` blocks beyond that). The first
    error a job raises is re-raised by the next ``submit``, ``drain`` or ``stop`` (jobs submitted before
    that are dropped: a map whose save failed is not saved further). The queue counts a job as pending
    only once it is in (``Queue.join``), so a Ctrl-C while ``submit`` waits cannot leave a count behind.

    ``share`` < 1 paces the jobs on the writer thread: a job calls ``give_way`` between its steps, and
    once it has run ``PACE_QUANTUM`` CPU-seconds since its last pause it waits ``1 / share - 1`` times
    that, so it holds the interpreter (the GIL) for at most about ``share`` of the time and the mapping
    thread's frames are slowed a little over many frames instead of much over the few right after the
    save was handed over. A job runs unpaced while another waits behind it, a caller waits for it
    (``drain``, ``stop``) or the mapping thread waits for its next frame (``unpaced``): pacing spreads a
    save over the time the mapping thread works before the next one is due, never beyond."""

    def __init__(self, background: bool = False, share: float = 1.0) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"MapWriter: share must lie in (0, 1], got {share}")
        self._jobs: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._share = share
        self._hurry = threading.Event()  # set while a caller waits for the jobs: no pauses
        self._turn_start = 0.0  # the writer thread's CPU clock at the end of its last pause
        if background:
            self._thread = threading.Thread(target=self._work, name="scene-map-writer", daemon=True)
            self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._raise_error()
        if self._thread is None:
            job()
        else:
            self._jobs.put(job)

    def give_way(self) -> None:
        """A pause point of a job (see the class docstring); returns at once off the writer thread, unpaced,
        or before the job has run ``PACE_QUANTUM`` since its last pause."""
        if self._share >= 1.0 or threading.current_thread() is not self._thread:
            return
        ran = time.thread_time() - self._turn_start
        if ran < PACE_QUANTUM:
            return
        if not (self._jobs.qsize() or self._hurry.is_set()):
            self._hurry.wait(ran * (1.0 / self._share - 1.0))
        self._turn_start = time.thread_time()

    @contextmanager
    def unpaced(self):
        """While in this block (the caller waits: for the jobs, or for work of its own), jobs run without
        pauses, and a pause under way ends."""
        self._hurry.set()
        try:
            yield
        finally:
            self._hurry.clear()

    def drain(self) -> None:
        """Wait until every submitted job has run; re-raise the first error one raised."""
        if self._thread is not None:
            with self.unpaced():
                self._jobs.join()
        self._raise_error()

    def stop(self) -> None:
        """Let the jobs submitted finish, end the thread (no thread is left running), re-raise an error."""
        if self._thread is not None:
            with self.unpaced():
                self._jobs.put(None)
                self._thread.join()
            self._thread = None
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            self._turn_start = time.thread_time()
            try:
                if job is None:
                    return
                if self._error is None:
                    job()
            except BaseException as error:  # raised on the mapper's thread by the next submit / drain
                self._error = error
            finally:
                self._jobs.task_done()


class WriterProcessDied(RuntimeError):
    """The writer process ended without being asked to (killed, crashed): its saves since the last reply
    may be lost; the mapper then saves inline (``Mapper`` says how)."""


class WriterProcess:
    """The saves of one map file in a process of their own (module docstring). ``replica``: the map as
    the saves so far built it (pickled once, with its ranker cache, so the saves go on as they would
    here); ``path``: the map file, whose writer lock this process must hold; ``first_saved``: the file
    already holds a save (later ones are incremental); ``resumed``: the map was resumed (saves mark it
    unrefined). ``on_saved()`` is called on the calling thread for each save the process confirmed.

    ``save`` returns once the request is queued for the sender thread (at most one waits behind the one
    being sent); ``drain`` waits for every reply; ``view`` returns the writer's map after applying edits
    and objects, with its pieces joined (``MapReplica.joined_view``). A save that failed there is raised
    here as it was raised there, by the next call; a process that died raises ``WriterProcessDied`` naming
    the map file. ``stop`` ends it and records its CPU seconds and peak resident memory (``stats``)."""

    def __init__(self, replica: MapReplica, path: str | Path, first_saved: bool, resumed: bool,
                 on_saved: Callable[[], None] | None = None) -> None:
        from segment2d.worker import worker_environment

        self.path = Path(path)
        self.stats: dict[str, float] = {}
        self._on_saved = on_saved
        self._awaited = 0  # requests sent (or queued) whose reply is not read yet
        self._error: BaseException | None = None
        self._view: InstanceMap | None = None
        sys_path = os.pathsep.join(p for p in sys.path if p)
        self._process = subprocess.Popen([sys.executable, "-m", "scene.map_writer"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, env=worker_environment(sys_path))
        self._sender = MapWriter(background=True)
        self._send((replica, str(self.path), bool(first_saved), bool(resumed)), reply=False)

    def save(self, edits: list, objects: list | None) -> None:
        self._collect_ready()
        self._raise_error()
        self._send(("save", edits, objects))

    def drain(self) -> None:
        """Wait until every request sent was answered; raise a save's error or ``WriterProcessDied``."""
        try:
            self._sender.drain()
        except OSError:
            self._died()
        while self._awaited:
            self._take_reply()
        self._raise_error()

    def view(self, edits: list, objects: list | None) -> InstanceMap:
        self.drain()
        self._send(("view", edits, objects))
        self.drain()
        imap, self._view = self._view, None
        return imap

    def stop(self) -> None:
        """Wait for the saves, end the process (killed when it does not end in 10 s); stopping twice is fine."""
        if self._process.stdin.closed:
            return
        try:
            self.drain()
            self._send(None)
            self.drain()
        finally:
            self.close()

    def close(self) -> None:
        """End the process without waiting for its saves (``stop`` waits); closing twice is fine."""
        try:
            self._sender.stop()
        except OSError:
            pass
        for pipe in (self._process.stdin, self._process.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    @property
    def pid(self) -> int:
        return self._process.pid

    def _send(self, message, reply: bool = True) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._awaited += reply
        try:
            self._sender.submit(lambda: self._write(payload))
        except OSError:
            self._died()

    def _write(self, payload: bytes) -> None:
        self._process.stdin.write(payload)
        self._process.stdin.flush()

    def _collect_ready(self) -> None:
        """Read the replies already there, without waiting."""
        while self._awaited and select.select([self._process.stdout], [], [], 0)[0]:
            self._take_reply()

    def _take_reply(self) -> None:
        try:
            kind, body = pickle.load(self._process.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            self._died()
        self._awaited -= 1
        if kind == "saved" and self._on_saved is not None:
            self._on_saved()
        elif kind == "view":
            self._view = body
        elif kind == "stopped":
            self.stats = body
        elif kind == "error" and self._error is None:
            self._error = body

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _died(self):
        self._awaited = 0
        try:
            code = self._process.wait(timeout=1)
        except subprocess.TimeoutExpired:  # alive, but its replies broke off (a Ctrl-C while reading one)
            self._process.kill()
            code = self._process.wait()
        raise WriterProcessDied(f"{self.path}: the map writer process (pid {self._process.pid}) died (exit code "
                                f"{code}); the saves it had not confirmed are lost") from None


def _serve() -> None:
    """The writer process: a (replica, path, first_saved, resumed), then ("save" | "view", edits, objects)
    requests from stdin, one reply each to stdout, until None arrives. After a failed save it answers
    the error and skips the saves that follow (as ``MapWriter``). Anything else printing to stdout goes
    to stderr instead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = sys.stdin.buffer
    try:
        replica, path, first_saved, resumed = pickle.load(requests)
    except EOFError:
        return
    store, failed, reported = None, None, False
    try:
        store = MapStore(path, parent_lock=True)
    except Exception as error:  # answered at the first request
        failed = error
    while True:
        try:
            message = pickle.load(requests)
        except EOFError:  # the mapping process ended without stopping us
            break
        if message is None:
            break
        kind, edits, objects = message
        try:
            if failed is not None:
                reply, reported = (("skipped", None) if reported else ("error", _picklable(failed))), True
            elif kind == "save":
                write_save(replica, store, edits, objects, not first_saved, resumed)
                first_saved, reply = True, ("saved", None)
            else:
                replica.apply(edits)
                replica.finish(objects)
                reply = ("view", replica.joined_view(replica.imap))
        except Exception as error:
            failed, reported, reply = error, True, ("error", _picklable(error))
        pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()
    if store is not None:
        store.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    pickle.dump(("stopped", {"cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_bytes": usage.ru_maxrss * 1024}),
                replies, protocol=pickle.HIGHEST_PROTOCOL)
    replies.flush()


def _picklable(error: BaseException) -> BaseException:
    from segment2d.worker import _picklable as picklable

    return picklable(error)


if __name__ == "__main__":
    _serve()
