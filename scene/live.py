"""Live mapping: frames pushed by the caller (a ROS callback, a camera loop) are mapped on a worker thread.

The backlog between the sensor and the mapper is bounded (``LiveConfig.max_backlog`` frames). ``push``
never blocks, so a sensor callback is never held up; when mapping falls behind, frames are skipped by
``LiveConfig.policy`` and counted:

- ``"drop-oldest"`` (default): a full backlog discards its oldest frame to take the new one, so the
  mapper always works on the newest ``max_backlog`` frames (``max_backlog=1``: always the latest frame,
  lowest latency). The last frame pushed is never skipped.
- ``"drop-newest"``: a full backlog refuses the new frame (``push`` returns False), so the frames mapped
  are the earliest ones of every burst.

The map file is saved every ``MapperConfig.save_every`` frames in SQLite WAL mode: other processes can
open it read-only (``MapStore(path, read_only=True)``, ``scene query``) while it is written.

    live = LiveMapping(Mapper(config, out="map.sqlite"), LiveConfig(max_backlog=2))
    live.start()
    ... live.push(frame) from the sensor callback ...
    imap = live.stop()          # drains the backlog, finalizes; live.stats has the counts
"""
from __future__ import annotations

import collections
import threading
import warnings
from dataclasses import asdict, dataclass
from typing import Callable

from scene.datasets import Frame

POLICIES = ("drop-oldest", "drop-newest")


@dataclass
class LiveConfig:
    """``max_backlog``: frames waiting for the mapper at most (>= 1); ``policy``: what a full backlog does
    with a new frame (``POLICIES``, see the module docstring)."""

    max_backlog: int = 2
    policy: str = "drop-oldest"

    def __post_init__(self) -> None:
        if int(self.max_backlog) < 1:
            raise ValueError(f"LiveConfig: max_backlog must be >= 1, got {self.max_backlog}")
        if self.policy not in POLICIES:
            raise ValueError(f"LiveConfig: policy must be one of {POLICIES}, got {self.policy!r}")


@dataclass
class LiveStats:
    """Counts since the start: ``received`` frames pushed, ``integrated`` mapped, ``skipped`` dropped by the
    policy, ``max_backlog_seen`` the largest backlog observed (never above ``max_backlog``)."""

    received: int = 0
    integrated: int = 0
    skipped: int = 0
    max_backlog_seen: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class FrameQueue:
    """The bounded, thread-safe backlog: ``push`` from any thread, iterate in the consumer until ``close``."""

    def __init__(self, config: LiveConfig | None = None) -> None:
        self.config = config if config is not None else LiveConfig()
        self.stats = LiveStats()
        self._frames: collections.deque[Frame] = collections.deque()
        self._ready = threading.Condition()
        self._closed = False
        self._last_index: int | None = None

    def push(self, frame: Frame) -> bool:
        """Queue ``frame`` (checked first: a bad frame raises DatasetError here, in the caller). Returns False
        when the frame itself was skipped (``drop-newest`` with a full backlog)."""
        if not isinstance(frame, Frame):
            raise TypeError(f"push takes a scene.datasets.Frame, got {type(frame).__name__}")
        frame.validate()
        with self._ready:
            if self._closed:
                raise RuntimeError("push: the live source is closed")
            if self._last_index is not None and frame.index <= self._last_index:
                raise ValueError(f"push: frame index {frame.index} is not after the previous one ({self._last_index})")
            self._last_index = frame.index
            self.stats.received += 1
            accepted = True
            if len(self._frames) >= self.config.max_backlog:
                self.stats.skipped += 1
                if self.config.policy == "drop-oldest":
                    self._frames.popleft()
                else:
                    accepted = False
            if accepted:
                self._frames.append(frame)
                self.stats.max_backlog_seen = max(self.stats.max_backlog_seen, len(self._frames))
                self._ready.notify()
            return accepted

    def close(self) -> None:
        """No more frames: iteration ends once the backlog is drained."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    @property
    def backlog(self) -> int:
        with self._ready:
            return len(self._frames)

    def __iter__(self):
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._frames or self._closed)
                if not self._frames:
                    return
                frame = self._frames.popleft()
            yield frame


class LiveMapping:
    """A ``Mapper`` fed from a ``FrameQueue`` on a worker thread (see the module docstring).

    ``on_frame(result)`` is called on the worker thread after each integrated frame. An error while mapping
    stops the worker, saves the map so far, and is raised by the next ``push`` and by ``stop``.
    """

    def __init__(self, mapper, config: LiveConfig | None = None, on_frame: Callable | None = None) -> None:
        self.mapper = mapper
        self.queue = FrameQueue(config)
        self.on_frame = on_frame
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def stats(self) -> LiveStats:
        return self.queue.stats

    def start(self) -> "LiveMapping":
        if self._thread is not None:
            raise RuntimeError("LiveMapping.start: already started")
        self._thread = threading.Thread(target=self._work, name="scene-live-mapper", daemon=True)
        self._thread.start()
        return self

    def push(self, frame: Frame) -> bool:
        if self._error is not None:
            raise RuntimeError(f"live mapping stopped: {self._error}") from self._error
        return self.queue.push(frame)

    def stop(self, finalize: bool = True):
        """Drain the backlog, then finalize (or only save) the map and return it; warns with the counts
        when frames were skipped. The counts are also kept in ``metadata.extra['live']``."""
        self.queue.close()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"live mapping failed: {self._error}") from self._error
        self.mapper._map.metadata.extra["live"] = {**self.stats.as_dict(), "policy": self.queue.config.policy,
                                                   "max_backlog": self.queue.config.max_backlog}
        if self.stats.skipped:
            warnings.warn(f"live mapping skipped {self.stats.skipped} of {self.stats.received} frames "
                          f"(policy {self.queue.config.policy}, backlog {self.queue.config.max_backlog})",
                          stacklevel=2)
        try:
            if finalize:
                return self.mapper.finalize()
            self.mapper.save()
            return self.mapper.map
        finally:
            self.mapper.close()

    def __enter__(self) -> "LiveMapping":
        return self.start()

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.stop()
        else:  # keep the work: save what was mapped, do not refine
            self.queue.close()
            if self._thread is not None:
                self._thread.join()
            self.mapper.save()
            self.mapper.close()

    def _work(self) -> None:
        try:
            for frame in self.queue:
                result = self.mapper.integrate(frame)
                self.stats.integrated += 1
                if self.on_frame is not None:
                    self.on_frame(result)
        except BaseException as exc:  # reported by push/stop; the thread must not die silently
            self._error = exc
            self.queue.close()
            try:
                self.mapper.save()
            except Exception:
                pass
