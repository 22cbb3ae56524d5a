"""Two independent steps of the global pass side by side, on two threads.

numpy's sorts, sorted searches and gathers and scipy's sparse kernels (products, COO -> CSR) release
the GIL, so two such steps overlap on two cores: at the end of a run the segmenter process is done and
the second core idle. On one usable core the steps run one after the other, as before.
"""
from __future__ import annotations

import threading
from typing import Callable, TypeVar

from segment2d.worker import usable_cores

A = TypeVar("A")
B = TypeVar("B")


def pass_threads(requested: int) -> int:
    """Threads for the global pass: ``requested`` when > 0, else the usable cores, at most 2 (the pass
    has two independent chains at most)."""
    return requested if requested > 0 else min(usable_cores(), 2)


def side_by_side(first: Callable[[], A], second: Callable[[], B], threads: int) -> tuple[A, B]:
    """(first(), second()): ``second`` on a worker thread while ``first`` runs on this one when
    ``threads`` >= 2, else one after the other. An exception of either is raised here, after both end."""
    if threads < 2:
        return first(), second()
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["value"] = second()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="global-pass", daemon=True)
    worker.start()
    try:
        value = first()
    finally:
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return value, outcome["value"]
