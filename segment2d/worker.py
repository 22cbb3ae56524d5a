"""A mask generator in a worker process (``SegmenterProcess``), for pipelines that segment the next frame
while the current one is fused: Python's GIL lets one thread of a process run Python at a time, and the
generators and the fusion are both mostly Python-driven numpy on small arrays, so a second thread gains
little where a second process gains a core. Only generators marked ``process_safe`` (``MaskGenerator``)
run here. Given a frame source that can be copied to it (``SegmenterProcess.reads``), the worker also reads
the frames itself, so that decoding the images costs the mapping process nothing."""
from __future__ import annotations

import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from scene.datasets import Frame

from .types import MaskCrops, MaskSet


@dataclass
class ReadFrame:
    """One frame read and segmented by the worker (``SegmenterProcess.read_and_generate``): the ``frame``,
    its ``masks`` (None when the generator failed: ``error`` holds its message; or when the frame was not
    after ``after``: ``skipped``), the worker's seconds reading it (``read_s``) and segmenting it
    (``segment_s``, its ``finish`` included), and ``finished``: ``finish(frame, masks)`` when asked for
    (None when not asked, or when it failed: the caller then does that work itself and meets the error);
    ``cpu_s``: the worker's CPU seconds on this request (reading, segmenting, finishing, packing);
    ``started``: ``time.perf_counter()`` in the worker when it began reading the frame (a clock the
    processes of a machine share where it is CLOCK_MONOTONIC, as on Linux: compare it with care)."""

    frame: Frame
    masks: MaskSet | None
    read_s: float
    segment_s: float
    error: str = ""
    skipped: bool = False
    finished: object = None
    cpu_s: float = 0.0
    started: float = 0.0


class SegmenterProcess:
    """A worker process running a copy of a ``process_safe`` mask generator, one frame at a time: the
    frame's index, source, colour, depth, K and pose are pickled to its stdin, the masks come back
    bit-packed and cut to their extents on its stdout (identical to the generator's own). It is a fresh interpreter
    (``python -m segment2d.worker``), so the caller's script is not re-imported (no ``__main__`` guard
    needed) and none of its threads or locks are copied. The worker ignores Ctrl-C (the mapping process
    handles it and closes the worker). ``generate`` raises ``RuntimeError`` when the generator failed
    there (with its message) or the worker died; ``close`` ends the worker and waits for it.

    ``source``: a frame source (``source[k]`` gives a ``Frame``) copied to the worker, which then reads the
    frames itself (``read_and_generate``): the mapping process receives the decoded frame with its masks
    instead of decoding it (a JPEG and a 16-bit PNG per frame) and sending it over. Only sources that
    ``reads`` accepts.

    ``finish``: a picklable callable ``(frame, masks) -> result`` that the worker applies to a frame's
    masks when a request asks for it (``finish=True``), e.g. the lift of a mapping pipeline
    (``tracking.pipeline.FrameLifter``): work that depends on the frame and its masks alone moves to this
    process. A failure there is not reported: the result is None and the caller does the work itself.

    ``threads``: the size of the worker's library thread pools (``worker_environment``; None: the
    libraries' defaults). ``waiting``: a worker started beforehand (``WaitingWorker``, started with its own
    ``threads``) to run the generator, instead of starting one now."""

    def __init__(self, generator, source=None, finish=None, threads: int | None = 1,
                 waiting: WaitingWorker | None = None) -> None:
        self._process = waiting.take() if waiting is not None else _spawn(threads)
        # ``finish`` goes pickled apart: the worker unpickles it (importing its modules) only when a frame
        # first asks for it, not before its first frame
        setup = pickle.dumps((generator, source, None if finish is None else pickle.dumps(finish, protocol=pickle.HIGHEST_PROTOCOL)),
                             protocol=pickle.HIGHEST_PROTOCOL)
        # Written on a thread: a setup larger than the pipe's buffer (64 KiB; a 300-frame ScanNet source
        # pickles to ~80 KB) would hold this process until the worker's imports are done and it reads
        # (~0.3 s), while this process could be segmenting its first frames itself (``started``).
        self._setup = threading.Thread(target=self._write_setup, args=(setup,), name="segmenter-setup", daemon=True)
        self._setup.start()
        self._started = False

    def started(self) -> bool:
        """Whether the worker has started (interpreter and imports; it loads the generator, cheap for a
        ``process_safe`` one, before its first request): until then a caller with its own copy of the
        generator may segment frames itself. Does not wait."""
        if not self._started and select.select([self._process.stdout], [], [], 0)[0]:
            try:
                pickle.load(self._process.stdout)  # its first message says it started
            except (EOFError, OSError, pickle.UnpicklingError):
                pass  # it died: the next request reports it
            self._started = True
        return self._started

    @staticmethod
    def reads(source) -> bool:
        """Whether the worker can read ``source`` itself: a file reader (``scene.datasets.FrameSource``) that
        pickles to a small copy (paths, poses, options). Other sources (a generator of frames, a list, a
        live stream, a bag reader holding an open file) are read by the caller."""
        from scene.datasets.base import FrameSource

        if not isinstance(source, FrameSource) or not getattr(source, "process_readable", True):
            return False
        try:
            return len(pickle.dumps(source, protocol=pickle.HIGHEST_PROTOCOL)) <= _MAX_SOURCE_BYTES
        except Exception:  # anything that does not pickle (an open file, a lock, a renderer) stays here
            return False

    def generate(self, frame: Frame) -> MaskSet:
        return self.generate_finished(frame)[0]

    def generate_finished(self, frame: Frame, finish: bool = False, crops: bool = False
                          ) -> tuple[MaskSet | MaskCrops, object, float]:
        """(masks, ``finish(frame, masks)`` when ``finish`` and it succeeded, else None, the worker's CPU
        seconds on it) of ``frame``; ``crops``: the masks as ``MaskCrops`` (``unpack_crops``), else a MaskSet."""
        self.send_frame(frame, finish)
        return self.receive_masks(crops)

    def send_frame(self, frame: Frame, finish: bool = False) -> None:
        """Ask for ``frame``'s masks (``generate_finished`` without waiting; ``receive_masks`` takes them).
        Requests may run ahead of their replies: the worker answers them in the order sent, and takes the
        next one as soon as it has sent the last reply, so a request sent ahead leaves it no idle time.
        One thread may send while another receives."""
        self._send(("frame", (int(frame.index), frame.source, frame.color, frame.depth, frame.K, frame.pose, finish)))

    def receive_masks(self, crops: bool = False) -> tuple[MaskSet | MaskCrops, object, float]:
        """The reply to the oldest request not yet received, a ``send_frame``: as ``generate_finished``."""
        status, payload = self._reply()
        if status == "error":
            raise RuntimeError(payload)
        packed, finished, cpu_s = payload
        return _unpacked(packed, crops), finished, cpu_s

    def read_and_generate(self, position: int, after: int | None = None, finish: bool = False,
                          crops: bool = False) -> ReadFrame:
        """Frame ``position`` of the source given at start, read and segmented by the worker (only read when
        its index is not above ``after``: a resumed map skips the frames it holds). An error reading it is
        raised here as the reader raised it (a ``DatasetError`` naming the file); a generator failure comes
        back in ``ReadFrame.error`` (with the frame, so the caller can name it). ``finish``: apply the
        process's ``finish`` to the frame and its masks (``ReadFrame.finished``). ``crops``: the masks as
        ``MaskCrops`` (``unpack_crops``), else a MaskSet."""
        self.send_read(position, after, finish)
        return self.receive_read(crops)

    def send_read(self, position: int, after: int | None = None, finish: bool = False) -> None:
        """Ask the worker to read and segment frame ``position`` (``read_and_generate`` without waiting;
        ``receive_read`` takes the reply; requests may run ahead of their replies, as with ``send_frame``)."""
        self._send(("read", (int(position), after, finish)))

    def receive_read(self, crops: bool = False) -> ReadFrame:
        """The reply to the oldest request not yet received, a ``send_read``: as ``read_and_generate``."""
        status, payload = self._reply()
        if status == "read_error":
            raise payload
        frame, packed, read_s, segment_s, error, skipped, finished, started, cpu_s = payload
        return ReadFrame(frame, None if packed is None else _unpacked(packed, crops), read_s, segment_s, error, skipped,
                         finished, cpu_s, started)

    def _reply(self):
        try:
            while (reply := pickle.load(self._process.stdout))[0] == "started":  # not yet taken by ``started``
                self._started = True
            return reply
        except (EOFError, OSError, pickle.UnpicklingError):
            raise RuntimeError(f"the segmenter process died (exit code {self._process.wait()})") from None

    def close(self) -> None:
        """End the worker and wait for it (killed when it does not end in 10 s); closing twice is fine."""
        if self._process.stdout.closed:
            return
        try:
            self.stop()
            self._process.wait(timeout=10)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        finally:
            self._process.stdout.close()

    def stop(self) -> None:
        """Tell the worker to end, without waiting for it (``close`` waits): it winds down on its core while
        the caller goes on. No request may follow; stopping twice is fine."""
        if self._process.stdin.closed:
            return
        try:
            self._send(None)
        except RuntimeError:
            pass  # it died already: ``close`` reaps it
        try:
            self._process.stdin.close()
        except OSError:
            pass

    def _write_setup(self, setup: bytes) -> None:
        try:
            self._process.stdin.write(setup)
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker died: the next request reports it

    def _send(self, message) -> None:
        self._setup.join()  # requests follow the setup on the pipe
        try:
            pickle.dump(message, self._process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise RuntimeError(f"the segmenter process died (exit code {self._process.wait()})") from None


class WaitingWorker:
    """A segmenter process started before its generator exists: ``python -m segment2d.worker``, waiting on
    its stdin for what ``SegmenterProcess(..., waiting=this)`` then sends it. Its interpreter start and
    imports (~0.3 s) so overlap the caller's own start-up (``scene run`` starts one before importing the
    mapping modules) instead of delaying the first frames it could segment. ``close`` ends it when nothing
    took it (the run segments on one thread, or with a generator that is not ``process_safe``).

    ``warm_up``: the name of the generator the run is expected to use (``segment2d.factory``): while it
    waits, the worker builds one and segments a small synthetic frame with it (``_warm_up``), so that the
    one-time set-up of its first frame (the generator's modules, OpenCV's colour-conversion tables: ~0.09
    CPU s of the geometric generator's first 7-Scenes frame) is done before the first real frame."""

    def __init__(self, threads: int | None = 1, warm_up: str | None = None) -> None:
        self._process: subprocess.Popen | None = _spawn(threads, ("--warm-up", warm_up) if warm_up else ())

    def take(self) -> subprocess.Popen:
        """The worker's process, now owned by the caller (a ``SegmenterProcess``); taken once."""
        if self._process is None:
            raise RuntimeError("this waiting segmenter process was taken or closed already")
        process, self._process = self._process, None
        return process

    def close(self) -> None:
        """End the worker if nothing took it (it holds no work: killed, not asked); closing twice is fine."""
        if self._process is None:
            return
        process, self._process = self._process, None
        process.kill()
        process.wait()
        process.stdin.close()
        process.stdout.close()


def _spawn(threads: int | None, options: tuple[str, ...] = ()) -> subprocess.Popen:
    """A fresh worker interpreter on the caller's import path, so that it finds this package (and the
    generator's) as the caller does."""
    path = os.pathsep.join(p for p in sys.path if p)
    process = subprocess.Popen([sys.executable, "-m", "segment2d.worker", *options], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, env=worker_environment(path, threads))
    for pipe in (process.stdin, process.stdout):
        _widen(pipe)
    return process


def _widen(pipe) -> None:
    """Give ``pipe`` a buffer of ``PIPE_BYTES`` where the system allows it (Linux; up to its
    ``/proc/sys/fs/pipe-max-size``), else leave it as it is."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


def _warm_up(name: str) -> None:
    """Segment a small synthetic frame (a slanted wall with a box before it, 64 x 48) with a new generator
    ``name``, then drop it: a ``process_safe`` generator keeps nothing from frame to frame, so only the
    process's one-time set-up remains. A generator that cannot be built without options (a checkpoint) or
    fails on the frame is skipped."""
    from .factory import make_generator

    rows, columns = np.mgrid[0:48, 0:64]
    box = (columns > 20) & (columns < 40) & (rows > 10) & (rows < 30)
    depth = (1.5 + 0.01 * columns - 0.3 * box).astype(np.float32)
    color = np.stack([columns * 4 % 256, rows * 5 % 256, (columns + rows) * 3 % 256], axis=-1).astype(np.uint8)
    K = np.array([[50.0, 0.0, 32.0], [0.0, 50.0, 24.0], [0.0, 0.0, 1.0]])
    try:
        _generated(make_generator(name), Frame(0, 0.0, color, depth, K, np.eye(4), source="warm-up"))
    except Exception:
        pass


def usable_cores() -> int:
    """CPUs this process may run on (a segmenter process only pays off with a second one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# The pipes' buffer to and from a worker: a frame (640 x 480 colour and depth: ~2.1 MB pickled) then
# passes in 2-3 reads instead of ~33 of the default 64 KiB, each of which makes the receiving thread take
# the interpreter lock back from the mapping thread. 1 MiB: the most Linux gives an unprivileged process
# by default. Measured (ScanNet scene0448_01, 2 runs each, load 2.6-3.3): the worker's seconds writing
# its replies 1.07 / 0.63 s a run against 1.18 / 1.67 s with 64 KiB.
PIPE_BYTES = 2**20

_MAX_SOURCE_BYTES = 16 * 2**20  # a source larger than this pickled holds data, not paths: read it here

# The thread pools of the libraries the generators use (OpenMP, BLAS, OpenCV), read once at their import.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")


def worker_environment(path: str, threads: int | None = 1) -> dict[str, str]:
    """The worker's environment: this one, with ``path`` as its import path and, unless ``threads`` is
    None, its libraries' thread pools sized ``threads`` where the caller's environment does not size them.
    One by default: the worker is there to use a second core while the mapping process uses the first, and
    the extra threads of a pool only contend with that process (and spin while they wait)."""
    env = {**os.environ, "PYTHONPATH": path}
    if threads is not None:
        for name in THREAD_VARIABLES:
            env.setdefault(name, str(int(threads)))
    return env


def _serve(warm_up: str | None = None) -> None:
    """The worker: a generator, a frame source (or None) and a finish (or None), then requests, from stdin: a
    frame to segment or the position of one to read and segment (each saying whether to finish it);
    replies to stdout, until None arrives. Anything else printing to stdout is sent to stderr instead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = sys.stdin.buffer
    # Started once the interpreter is up and this module's imports are done: a worker started ahead
    # (``WaitingWorker``) is then ready when its generator arrives, which a ``process_safe`` generator
    # makes cheap to load.
    pickle.dump(("started", None), replies, protocol=pickle.HIGHEST_PROTOCOL)
    replies.flush()
    if warm_up:  # while the caller gets ready (``WaitingWorker``)
        _warm_up(warm_up)
    try:
        generator, source, finish = pickle.load(requests)
    except EOFError:  # started ahead and closed unused
        return
    sending = 0.0  # CPU seconds the last reply took to send, counted with the next one
    while (message := pickle.load(requests)) is not None:
        kind, body = message
        if isinstance(finish, bytes) and body[-1]:  # the first frame asking for it
            finish = _loaded(finish)
        cpu = time.process_time()
        reply = _read_and_segment(generator, source, finish, body) if kind == "read" else _segment(generator, finish, body)
        if reply[0] in ("ok", "read"):  # the worker's CPU seconds per request, for the caller's balance
            reply = reply[0], (*reply[1], time.process_time() - cpu + sending)
        cpu = time.process_time()
        pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()
        sending = time.process_time() - cpu


def _segment(generator, finish, body: tuple) -> tuple:
    index, where, color, depth, K, pose, finishing = body
    frame = Frame(index, 0.0, color, depth, K, pose, source=where)
    try:
        packed, masks = _generated(generator, frame)
    except Exception as error:  # the mapping process raises it, naming the frame
        return "error", f"{type(error).__name__}: {error}"
    return "ok", (packed, _finished(finish, frame, masks) if finishing else None)


def _read_and_segment(generator, source, finish, body: tuple) -> tuple:
    position, after, finishing = body
    start = began = time.perf_counter()
    try:
        frame = source[position]
    except Exception as error:  # raised as is by the mapping process (a DatasetError names the file)
        return "read_error", _picklable(error)
    read_s, start = time.perf_counter() - start, time.perf_counter()
    if after is not None and frame.index <= after:
        return "read", (frame, None, read_s, 0.0, "", True, None, began)
    finished = None
    try:
        (packed, masks), error = _generated(generator, frame), ""
    except Exception as failure:
        packed, error = None, f"{type(failure).__name__}: {failure}"
    else:
        if finishing:
            finished = _finished(finish, frame, masks)
    return "read", (frame, packed, read_s, time.perf_counter() - start, error, False, finished, began)


def _finished(finish, frame: Frame, masks) -> object:
    """``finish(frame, masks)`` (masks: a MaskSet, or the generator's MaskCrops, given as they are to a finish
    whose ``takes_crops`` is True, else as their MaskSet), None without a finish or when it failed (the
    mapping process then does that work itself, and reports its error)."""
    if finish is None:
        return None
    try:
        as_crops = isinstance(masks, MaskCrops) and getattr(finish, "takes_crops", False)
        return finish(frame, masks if as_crops or not isinstance(masks, MaskCrops) else masks.to_maskset())
    except Exception:
        return None


def _loaded(finish: bytes):
    """The pickled ``finish``, or None when it does not load here (the caller then does that work)."""
    try:
        return pickle.loads(finish)
    except Exception:
        return None


def _picklable(error: Exception) -> Exception:
    """``error`` itself when it survives pickling, else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def _generated(generator, frame: Frame) -> tuple:
    """(the generator's masks for ``frame`` packed, the masks): from its crops when it makes them
    (``generate_crops``; the masks are then the ``MaskCrops``)."""
    if hasattr(generator, "generate_crops"):
        crops = generator.generate_crops(frame)
        return pack_crops(crops), crops
    masks = generator.generate(frame)
    return pack_masks(masks), masks


def pack_crops(masks: MaskCrops) -> tuple:
    """``pack_masks`` of ``masks.to_maskset()``, byte for byte, from the crops (no N x H x W stack): each crop
    is packed from the byte holding its first column, then cut to its rows and bytes with any pixel."""
    height, width = masks.image_size
    cuts, extents = [], np.zeros((len(masks), 4), np.int64)
    for i, (x0, y0, crop) in enumerate(masks.crops):
        rows = np.flatnonzero(crop.any(axis=1))
        if rows.size == 0:
            continue
        lead = x0 % 8  # pad to the byte boundary, so that bytes fall where packing whole rows puts them
        block = np.zeros((rows[-1] + 1 - rows[0], lead + crop.shape[1]), bool)
        block[:, lead:] = crop[rows[0]:rows[-1] + 1]
        packed = np.packbits(block, axis=-1)
        used = np.flatnonzero(np.bitwise_or.reduce(packed, axis=0))
        cuts.append(packed[:, used[0]:used[-1] + 1].ravel())
        extents[i] = (y0 + rows[0], y0 + rows[-1] + 1, x0 // 8 + used[0], x0 // 8 + used[-1] + 1)
    bits = np.concatenate(cuts) if cuts else np.zeros(0, np.uint8)
    return bits, extents, (len(masks), height, width), masks.scores, masks.boxes, masks.extra


def pack_masks(masks: MaskSet) -> tuple:
    """The masks bit-packed along x and cut to the rows and bytes each one occupies (a mask covers a
    small part of the frame: ~17x fewer bytes through the pipe than the packed stack), with the scores,
    boxes and extra."""
    packed = np.packbits(masks.masks, axis=-1)  # N x H x ceil(W / 8)
    rows = packed.any(axis=2)  # N x H
    columns = np.bitwise_or.reduce(packed, axis=1) > 0  # N x bytes
    crops, pieces = _extents(rows), _extents(columns)
    cuts = [packed[i, y0:y1, x0:x1].ravel() for i, ((y0, y1), (x0, x1)) in enumerate(zip(crops.tolist(), pieces.tolist()))]
    bits = np.concatenate(cuts) if cuts else np.zeros(0, np.uint8)
    return (bits, np.concatenate([crops, pieces], axis=1), masks.masks.shape, masks.scores, masks.boxes, masks.extra)


def unpack_crops(payload: tuple) -> MaskCrops:
    """The masks ``pack_masks`` (or ``pack_crops``) packed, as crops: each mask's packed rows and bytes
    unpacked where they lie, without the N x H x W stack (``to_maskset()`` gives ``unpack_masks``'s MaskSet).
    A mapping process that only partitions the masks never needs the stack, whose fresh pages cost ~5 ms
    a frame (7-Scenes, ~70 masks of 640 x 480)."""
    bits, extents, shape, scores, boxes, extra = payload
    width, start, crops = shape[-1], 0, []
    for y0, y1, x0, x1 in extents.tolist():
        size = (y1 - y0) * (x1 - x0)
        if size == 0:
            crops.append((0, 0, np.zeros((0, 0), bool)))
            continue
        crop = np.unpackbits(bits[start:start + size].reshape(y1 - y0, x1 - x0), axis=-1).view(bool)
        crops.append((8 * x0, y0, crop[:, :min(8 * x1, width) - 8 * x0]))
        start += size
    return MaskCrops(crops, tuple(shape[1:]), scores, boxes, extra)


def _unpacked(payload: tuple, crops: bool) -> MaskSet | MaskCrops:
    return unpack_crops(payload) if crops else unpack_masks(payload)


def unpack_masks(payload: tuple) -> MaskSet:
    """The MaskSet ``pack_masks`` packed, bit for bit."""
    bits, extents, shape, scores, boxes, extra = payload
    masks = np.zeros(shape, bool)
    width, start = shape[-1], 0
    for i, (y0, y1, x0, x1) in enumerate(extents.tolist()):
        size = (y1 - y0) * (x1 - x0)
        if size:
            crop = np.unpackbits(bits[start:start + size].reshape(y1 - y0, x1 - x0), axis=-1).view(bool)
            masks[i, y0:y1, 8 * x0:min(8 * x1, width)] = crop[:, :min(8 * x1, width) - 8 * x0]
            start += size
    return MaskSet(masks, scores, boxes, extra)


def _extents(present: np.ndarray) -> np.ndarray:
    """N x 2 (first, end) of each row's True run bounds in an N x K bool array; (0, 0) for an empty row."""
    any_ = present.any(axis=1)
    first = np.where(any_, present.argmax(axis=1), 0)
    end = np.where(any_, present.shape[1] - present[:, ::-1].argmax(axis=1), 0)
    return np.stack([first, end], axis=1).astype(np.int64)


if __name__ == "__main__":
    _serve(warm_up=sys.argv[2] if sys.argv[1:2] == ["--warm-up"] else None)
