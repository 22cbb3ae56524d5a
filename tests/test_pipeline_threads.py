"""Library thread pools while the pipeline runs one process per core: the segmenter process starts with its
OpenMP / BLAS / OpenCV pools at one thread (unless the caller's environment sizes them), and the mapping
process runs OpenCV on one thread while the segmenter process is there, and gets its pool size back after."""
from __future__ import annotations

import cv2
import pytest

from scene.config import MapperConfig
from scene.datasets import open_dataset
from scene.datasets.synthetic import make_scene, write_scene
from scene.pipeline import _usable_cores, run
from segment2d.factory import make_generator
from segment2d.worker import THREAD_VARIABLES, SegmenterProcess, worker_environment


def _opencv_threads(frame, masks) -> int:
    """A ``finish`` for the segmenter process: its OpenCV pool size (imported there by module name)."""
    return cv2.getNumThreads()


@pytest.fixture(scope="module")
def scene():
    return make_scene("tabletop", seed=0, num_frames=6, width=160, height=120)


def test_the_worker_environment_sizes_the_pools_the_caller_left_unsized(monkeypatch):
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    env = worker_environment("/some/path")
    assert env["PYTHONPATH"] == "/some/path"
    assert env["OMP_NUM_THREADS"] == "3"  # the caller's choice stands
    assert all(env[name] == "1" for name in THREAD_VARIABLES if name != "OMP_NUM_THREADS")
    assert worker_environment("/p", threads=2)["OPENCV_FOR_THREADS_NUM"] == "2"
    untouched = worker_environment("/p", threads=None)
    assert all(name not in untouched for name in THREAD_VARIABLES if name != "OMP_NUM_THREADS")


@pytest.mark.parametrize("threads", [1, 3])
def test_the_segmenter_process_runs_its_opencv_pool_at_the_size_given(threads, scene, monkeypatch):
    monkeypatch.delenv("OPENCV_FOR_THREADS_NUM", raising=False)
    frame = next(iter(scene.source(stop=1)))
    process = SegmenterProcess(make_generator("geometric"), finish=_opencv_threads, threads=threads)
    try:
        masks, finished, _ = process.generate_finished(frame, finish=True)
    finally:
        process.close()
    assert finished == threads and len(masks) > 0


@pytest.mark.skipif(_usable_cores() < 2, reason="the segmenter process needs a second CPU")
def test_the_mapping_process_runs_opencv_on_one_thread_beside_the_segmenter_process(scene, tmp_path):
    data = write_scene(scene, tmp_path / "data")
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        seen = []
        run(open_dataset(data), MapperConfig(), progress=lambda result, done, total: seen.append(cv2.getNumThreads()))
        assert seen and set(seen) == {1}
        assert cv2.getNumThreads() == 2  # given back
        run(open_dataset(data), MapperConfig(), pipelined=False,
            progress=lambda result, done, total: seen.append(cv2.getNumThreads()))
        assert seen[-1] == 2  # no segmenter process: the pool is left alone
    finally:
        cv2.setNumThreads(before)
