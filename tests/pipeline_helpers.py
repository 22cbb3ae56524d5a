"""Helpers shared by the pipelined-run tests (``scene.pipeline._SegmentAhead`` with a segmenter process)."""
from __future__ import annotations

import threading

from segment2d.worker import SegmenterProcess


def pipeline_threads() -> list[str]:
    """Names of the pipelined run's threads still alive."""
    return [t.name for t in threading.enumerate() if t.name in ("scene-reader", "scene-segmenter", "scene-map-writer")]


def wait_for_segmenter_start(monkeypatch) -> None:
    """Make the pipeline wait for the segmenter process to start instead of segmenting frames meanwhile."""
    started = SegmenterProcess.started

    def wait_started(self):
        while not started(self):
            threading.Event().wait(0.02)
        return True

    monkeypatch.setattr(SegmenterProcess, "started", wait_started)
