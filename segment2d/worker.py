"""A mask generator in a worker process (``SegmenterProcess``), for pipelines that segment the next frame
while the current one is fused: Python's GIL lets one thread of a process run Python at a time, and the
generators and the fusion are both mostly Python-driven numpy on small arrays, so a second thread gains
little where a second process gains a core. Only generators marked ``process_safe`` (``MaskGenerator``)
run here."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys

import numpy as np

from scene.datasets import Frame

from .types import MaskSet


class SegmenterProcess:
    """A worker process running a copy of a ``process_safe`` mask generator, one frame at a time: the
    frame's index, source, colour, depth, K and pose are pickled to its stdin, the masks come back
    bit-packed and cut to their extents on its stdout (identical to the generator's own). It is a fresh interpreter
    (``python -m segment2d.worker``), so the caller's script is not re-imported (no ``__main__`` guard
    needed) and none of its threads or locks are copied. The worker ignores Ctrl-C (the mapping process
    handles it and closes the worker). ``generate`` raises ``RuntimeError`` when the generator failed
    there (with its message) or the worker died; ``close`` ends the worker and waits for it."""

    def __init__(self, generator) -> None:
        # The caller's import path, so that the worker finds this package (and the generator's) as it does.
        path = os.pathsep.join(p for p in sys.path if p)
        self._process = subprocess.Popen([sys.executable, "-m", "segment2d.worker"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path})
        self._send(generator)

    def generate(self, frame: Frame) -> MaskSet:
        self._send((int(frame.index), frame.source, frame.color, frame.depth, frame.K, frame.pose))
        try:
            status, payload = pickle.load(self._process.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            raise RuntimeError(f"the segmenter process died (exit code {self._process.wait()})") from None
        if status == "error":
            raise RuntimeError(payload)
        return _unpacked_masks(payload)

    def close(self) -> None:
        """End the worker and wait for it (killed when it does not end in 10 s); closing twice is fine."""
        if self._process.stdin.closed:
            return
        try:
            self._send(None)
            self._process.stdin.close()
            self._process.wait(timeout=10)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        finally:
            self._process.stdout.close()

    def _send(self, message) -> None:
        try:
            pickle.dump(message, self._process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise RuntimeError(f"the segmenter process died (exit code {self._process.wait()})") from None


def _serve() -> None:
    """The worker: a generator, then frames, from stdin; packed masks (or an error message) to stdout,
    until None arrives. Anything else printing to stdout is sent to stderr instead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = sys.stdin.buffer
    generator = pickle.load(requests)
    while (message := pickle.load(requests)) is not None:
        index, source, color, depth, K, pose = message
        try:
            reply = ("ok", _packed_masks(generator.generate(Frame(index, 0.0, color, depth, K, pose, source=source))))
        except Exception as error:  # the mapping process raises it, naming the frame
            reply = ("error", f"{type(error).__name__}: {error}")
        pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


def _packed_masks(masks: MaskSet) -> tuple:
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


def _unpacked_masks(payload: tuple) -> MaskSet:
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
    _serve()
