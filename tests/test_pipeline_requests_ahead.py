"""Requests sent to the segmenter process ahead of their replies (``SegmenterProcess.send_read`` /
``send_frame``, the pipelined run's reader thread): answered in the order sent, never more in flight than
``read_ahead`` frames beyond the one being integrated, the process given its next request before it
answered the last, and an error on a frame raised naming it while later requests are in flight, with the
threads and the process ended."""
from __future__ import annotations

import time

import pytest

from pipeline_helpers import pipeline_threads, wait_for_segmenter_start
from scene.config import MapperConfig
from scene.datasets import open_dataset
from scene.datasets.synthetic import make_scene, write_scene
from scene.pipeline import Mapper, SegmentationError, _SegmentAhead, run
from scene.storage import MapStore
from segment2d.factory import make_generator
from segment2d.worker import SegmenterProcess

NUM_FRAMES = 10


@pytest.fixture(scope="module")
def scene():
    return make_scene("room", seed=1, noisy=True, num_frames=60, width=320, height=240)


@pytest.fixture(scope="module")
def frames(scene):
    return list(scene.source(stop=NUM_FRAMES))


@pytest.fixture(scope="module")
def written(scene, tmp_path_factory):
    return write_scene(scene, tmp_path_factory.mktemp("ahead") / "data", frames=scene.source(stop=NUM_FRAMES))




class _Requests:
    """Counts the requests sent to segmenter processes and the replies received, recording how many were
    in flight after each send, which frames were sent, and the processes closed. ``hold`` (frame a, frame
    b): the reply to frame a is received only once frame b was sent (10 s at most)."""

    def __init__(self, monkeypatch, hold: tuple[int, int] | None = None):
        self.sent, self.received, self.in_flight, self.closed, self.hold = [], 0, [], [], hold
        for name in ("send_read", "send_frame"):
            monkeypatch.setattr(SegmenterProcess, name, self._sending(getattr(SegmenterProcess, name)))
        for name in ("receive_read", "receive_masks"):
            monkeypatch.setattr(SegmenterProcess, name, self._receiving(getattr(SegmenterProcess, name)))
        close = SegmenterProcess.close
        monkeypatch.setattr(SegmenterProcess, "close", lambda process: (self.closed.append(process), close(process))[1])

    def _sending(self, send):
        def sending(process, what, *args, **kwargs):
            self.sent.append(what if isinstance(what, int) else what.index)
            self.in_flight.append(len(self.sent) - self.received)
            return send(process, what, *args, **kwargs)
        return sending

    def _receiving(self, receive):
        def receiving(process, *args, **kwargs):
            if self.hold is not None and self.sent[self.received] == self.hold[0]:
                deadline = time.monotonic() + 10
                while self.hold[1] not in self.sent and time.monotonic() < deadline:
                    time.sleep(0.01)
            try:
                return receive(process, *args, **kwargs)
            finally:
                self.received += 1
        return receiving


def test_requests_sent_ahead_are_answered_in_the_order_sent(written, frames):
    source, generator = open_dataset(written), make_generator("geometric")
    worker = SegmenterProcess(generator, source)
    try:
        worker.send_read(3)
        worker.send_frame(frames[1])
        worker.send_read(5)
        first, (second, _, _), third = worker.receive_read(), worker.receive_masks(), worker.receive_read()
    finally:
        worker.close()
    assert first.frame.index == source[3].index and third.frame.index == source[5].index
    for done, position in ((first, 3), (third, 5)):
        assert (done.masks.masks == generator.generate(source[position]).masks).all()
    assert (second.masks == generator.generate(frames[1]).masks).all()
    assert first.started < third.started  # the third request waited for the two before it


@pytest.mark.parametrize("ahead", [1, 2])
def test_requests_in_flight_stay_within_read_ahead_and_keep_the_process_busy(written, monkeypatch, ahead):
    """Frame n is sent once the consumer took frame n - ``ahead`` (frames held: ``ahead`` + the one
    integrated); with ``ahead`` = 2 the process has the next request before it answered the one in hand,
    and the frames come in order."""
    wait_for_segmenter_start(monkeypatch)
    requests, taken = _Requests(monkeypatch), []
    measure = _SegmentAhead._measure
    monkeypatch.setattr(_SegmentAhead, "_measure", lambda self, cpu: (taken.append(len(requests.sent)), measure(self, cpu)))
    source = open_dataset(written)
    frames = _SegmentAhead(Mapper(MapperConfig()), source, len(source), ahead=ahead)
    try:
        got = [(done, frame.index) for done, frame, _, _ in frames]
    finally:
        frames.close()
    assert got == [(k + 1, source[k].index) for k in range(len(source))]
    assert len(requests.sent) == len(source) and requests.received == len(source)
    # when frame n was taken (1-based), at most n + ahead frames had been sent
    assert all(sent <= n + ahead for n, sent in enumerate(taken, 1)), taken
    assert max(requests.in_flight) == ahead, requests.in_flight
    assert not pipeline_threads()


def test_an_error_on_a_frame_with_requests_in_flight_names_it_and_ends_the_process(frames, tmp_path, monkeypatch):
    """The process fails on frame 6 while frame 7 was sent behind it: frames 0-5 are integrated and saved,
    the error names frame 6, the reply to frame 7 is taken, and the threads and the process end. Two frames
    ahead, always: the adaptive rule keeps one while the mapping thread finds its frames ready (as it may
    under load), and frame 7 would then wait for frame 6's reply, which waits for frame 7."""
    monkeypatch.setattr("scene.pipeline.ADAPTIVE_AHEAD", False)
    wait_for_segmenter_start(monkeypatch)
    bad = frames[6]
    requests = _Requests(monkeypatch, hold=(bad.index, frames[7].index))
    broken = bad.__class__(bad.index, 0.0, bad.color[:, :5], bad.depth, bad.K, bad.pose, source="bad.png")
    given = [*frames[:6], broken, *frames[7:]]
    out = tmp_path / "map.sqlite"
    with pytest.raises(SegmentationError, match=f"frame {bad.index} \\(bad.png\\): the geometric generator failed: "
                                                 ".*ValueError: bad.png: colour must be"):
        run(given, MapperConfig(save_every=100), out=out)
    with MapStore(out, read_only=True) as store:
        assert store.load().trajectory[0].tolist() == [f.index for f in frames[:6]]
    assert frames[7].index in requests.sent and requests.received == len(requests.sent)
    assert requests.closed and all(process._process.poll() is not None for process in requests.closed)
    assert not pipeline_threads()
