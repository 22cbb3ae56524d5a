"""A paced save on the writer thread (``scene.map_writer.MapWriter`` with ``share`` < 1): it pauses in
proportion to the CPU it ran, and never while a caller waits for it, the mapping thread waits for a frame,
or another save waits behind it; off the writer thread it never pauses."""
from __future__ import annotations

import threading
import time

import pytest

from scene.map_writer import PACE_QUANTUM, MapWriter


class _RecordedPauses(threading.Event):
    """The writer's pause event, recording each pause asked for: (timeout, whether it was cut short)."""

    def __init__(self, sleep: bool) -> None:
        super().__init__()
        self.sleep = sleep
        self.pauses: list[tuple[float, bool]] = []

    def wait(self, timeout=None):
        cut = super().wait(timeout if self.sleep else 0.0)
        self.pauses.append((timeout, cut))
        return cut


def _paced_writer(share: float, sleep: bool = False, background: bool = True) -> tuple[MapWriter, _RecordedPauses]:
    writer = MapWriter(background=background, share=share)
    writer._hurry = pauses = _RecordedPauses(sleep)
    return writer, pauses


def _burn(seconds: float) -> None:
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        sum(range(200))


def _job(writer: MapWriter, turns: int, ran: list[float]):
    def job():
        for _ in range(turns):
            start = time.thread_time()
            _burn(1.5 * PACE_QUANTUM)
            ran.append(time.thread_time() - start)
            writer.give_way()
    return job


def _run_alone(writer: MapWriter, job) -> None:
    """Run ``job`` on the writer with nobody waiting for it (``drain`` would unpace it), then stop."""
    done = threading.Event()
    writer.submit(lambda: (job(), done.set()))
    assert done.wait(60)
    writer.stop()


def test_a_paced_job_pauses_in_proportion_to_the_cpu_it_ran():
    writer, pauses = _paced_writer(share=0.25)
    ran: list[float] = []
    _run_alone(writer, _job(writer, 5, ran))
    assert len(pauses.pauses) == 5
    for (timeout, cut), cpu in zip(pauses.pauses, ran):
        assert not cut
        assert 2.5 * cpu <= timeout <= 3.5 * cpu  # (1 / share - 1) x the CPU run since the last pause


def test_no_pause_before_a_quantum_of_cpu_nor_when_unpaced_or_inline():
    for share, background in ((0.25, True), (1.0, True), (0.25, False)):
        writer, pauses = _paced_writer(share, background=background)
        quick = [0]

        def job():
            for _ in range(50):
                quick[0] += 1
                writer.give_way()  # far less than a quantum of CPU between these when paced
            if share < 1 or not background:
                _burn(1.5 * PACE_QUANTUM)
                writer.give_way()

        _run_alone(writer, job)
        expected = 1 if (share < 1 and background) else 0
        assert quick[0] == 50 and len(pauses.pauses) == expected


def test_no_pause_while_the_caller_waits_for_a_frame():
    writer, pauses = _paced_writer(share=0.25)
    ran: list[float] = []
    started, finished = threading.Event(), threading.Event()
    job = _job(writer, 4, ran)
    writer.submit(lambda: (started.wait(), job(), finished.set()))
    with writer.unpaced():  # as ``Mapper.waiting_for_frame`` while the mapping thread waits
        started.set()
        assert finished.wait(30)
    writer.stop()
    assert len(ran) == 4 and pauses.pauses == []


def test_no_pause_while_another_save_waits_behind():
    writer, pauses = _paced_writer(share=0.25)
    ran: list[float] = []
    queued, done = threading.Event(), threading.Event()
    job = _job(writer, 3, ran)
    writer.submit(lambda: (queued.wait(), job(), done.set()))
    writer.submit(lambda: None)  # waits in the queue behind the first job
    queued.set()
    assert done.wait(60)
    writer.stop()
    assert len(ran) == 3 and pauses.pauses == []


def test_drain_cuts_a_pause_short():
    writer, pauses = _paced_writer(share=1e-4, sleep=True)  # a 3 ms run would pause for 30 s
    ran: list[float] = []
    writer.submit(_job(writer, 1, ran))
    while not pauses.is_set() and not pauses.pauses and not ran:
        time.sleep(0.001)
    writer.drain()  # returns once the job ran: the pause ended when drain began
    writer.stop()
    assert len(ran) == 1 and len(pauses.pauses) == 1
    timeout, cut = pauses.pauses[0]
    assert timeout > 10 and cut


def test_share_must_lie_in_zero_one():
    for share in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="share"):
            MapWriter(share=share)
