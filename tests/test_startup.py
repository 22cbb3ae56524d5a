"""`scene run` from process start to exit: the segmenter process started ahead of the mapping modules
(``segment2d.worker.WaitingWorker``) makes the same masks and maps, goes away when unused, and the
command ends with its map saved; the command line itself imports no numerical library."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from scene.app.cli import main
from scene.config import MapperConfig
from scene.datasets import open_dataset
from scene.datasets.synthetic import make_scene, write_scene
from scene.map import map_fingerprint
from scene.pipeline import run
from scene.storage import MapStore
from segment2d.factory import make_generator
from segment2d.worker import SegmenterProcess, WaitingWorker, usable_cores

FRAMES = 6
HEAVY = ("numpy", "scipy", "torch", "open3d", "cv2", "matplotlib", "PIL")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A small synthetic room written to disk (the project format), a source the worker can read."""
    scene = make_scene("room", seed=2, noisy=True, num_frames=60, width=320, height=240)
    return write_scene(scene, tmp_path_factory.mktemp("startup") / "data", frames=scene.source(stop=FRAMES))


def _fingerprint(path) -> str:
    with MapStore(path, read_only=True) as store:
        return map_fingerprint(store.load())["digest"]


def _python(code: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.mark.parametrize("warm_up", [None, "geometric", "sam"])
def test_a_worker_started_ahead_segments_as_one_started_with_its_generator(written, warm_up):
    """Started ahead, warmed up (or not: "sam" cannot be built without a checkpoint), the worker gives
    the generator's own masks."""
    source = open_dataset(written)
    generator = make_generator("geometric")
    waiting = WaitingWorker(warm_up=warm_up)
    worker = SegmenterProcess(generator, source, waiting=waiting)
    try:
        waiting.close()  # taken: nothing to close
        assert worker._process.poll() is None
        with pytest.raises(RuntimeError, match="taken or closed"):
            waiting.take()
        done, mine = worker.read_and_generate(3), generator.generate(source[3])
        assert done.frame.index == source[3].index and worker.started()
        assert done.masks.masks.shape == mine.masks.shape and (done.masks.masks == mine.masks).all()
        assert (done.masks.scores == mine.scores).all() and (done.masks.boxes == mine.boxes).all()
    finally:
        worker.close()
    assert worker._process.returncode == 0


def test_a_waiting_worker_the_run_does_not_use_is_ended(written, tmp_path):
    """A sequential run leaves the worker started ahead unused: ``run`` ends it, and the map is the one
    made without it."""
    source = open_dataset(written)
    config = MapperConfig(save_every=2)
    waiting = WaitingWorker()
    process = waiting._process
    run(source, config, out=tmp_path / "with.sqlite", pipelined=False, worker=waiting)
    assert process.poll() is not None and process.stdout.closed
    run(source, config, out=tmp_path / "without.sqlite", pipelined=False)
    assert _fingerprint(tmp_path / "with.sqlite") == _fingerprint(tmp_path / "without.sqlite")


def test_the_command_line_imports_no_numerical_library():
    """``scene --help`` and every command's argument parsing need argparse only: a heavy import at the
    top of ``scene.app.cli`` would slow every command (and ``scene run`` would start its segmenter
    process later)."""
    done = _python(f"""
        import sys
        from scene.app.cli import build_parser
        build_parser().parse_args(["run", "data", "--out", "map.sqlite"])
        print(",".join(m for m in {HEAVY!r} if m in sys.modules))
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


@pytest.mark.skipif(usable_cores() < 2, reason="the segmenter process needs a second CPU")
def test_scene_run_starts_its_segmenter_before_importing_the_mapping_modules(written, tmp_path):
    """The worker is started before scipy and the mapping layers are imported (their ~0.6 s then
    overlaps its start), and it is the one the run segments with."""
    done = _python("""
        import sys
        import segment2d.worker as worker
        seen = {}
        started, taken = worker.WaitingWorker.__init__, worker.WaitingWorker.take
        def start(self, *args, **kwargs):
            seen["loaded when started"] = [m for m in ("scipy", "tracking", "lift3d", "scene.pipeline") if m in sys.modules]
            started(self, *args, **kwargs)
        def take(self):
            seen["taken"] = True
            return taken(self)
        worker.WaitingWorker.__init__, worker.WaitingWorker.take = start, take
        from scene.app.cli import main
        code = main(["run", sys.argv[1], "--out", sys.argv[2], "--quiet"])
        print(seen)
        sys.exit(code)
        """, str(written), str(tmp_path / "map.sqlite"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "{'loaded when started': [], 'taken': True}"


def test_scene_run_as_a_command_exits_with_its_map_and_outputs_written(written, tmp_path):
    """``python -m scene.app run`` ends without the interpreter's teardown (``entry``): its summary, its
    timings and its map are all written, and the map is the one ``main`` makes in this process."""
    out, timings = tmp_path / "command.sqlite", tmp_path / "timings.json"
    done = subprocess.run([sys.executable, "-m", "scene.app", "run", str(written), "--out", str(out), "--quiet",
                           "--timings", str(timings)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"mapped {FRAMES} frames" in done.stdout and done.stdout.rstrip().endswith(f"map: {out}")
    assert len(json.loads(timings.read_text())["frames"]) == FRAMES
    assert not (tmp_path / "command.sqlite.lock").exists()
    assert main(["run", str(written), "--out", str(tmp_path / "here.sqlite"), "--quiet"]) == 0
    assert _fingerprint(out) == _fingerprint(tmp_path / "here.sqlite")
    failed = subprocess.run([sys.executable, "-m", "scene.app", "run", str(tmp_path / "missing"), "--out",
                             str(tmp_path / "m.sqlite")], capture_output=True, text=True, timeout=600)
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1 and "scene run: error:" in failed.stderr


def test_a_setup_larger_than_the_pipe_does_not_hold_the_caller(monkeypatch):
    """The generator and source go to the worker on a thread: ``SegmenterProcess`` returns at once even
    when they fill the pipe and the worker is not reading yet (it is still importing), so the caller can
    segment its first frames meanwhile. A worker that never reads stands in for a slow start."""
    import numpy as np

    import segment2d.worker as worker_module

    def never_reads(threads, options=()):
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)

    monkeypatch.setattr(worker_module, "_spawn", never_reads)
    worker = SegmenterProcess(make_generator("geometric"), np.zeros(2**20, np.uint8))  # 1 MiB, 16x the pipe
    try:
        assert not worker.started() and worker._setup.is_alive()
    finally:
        worker._process.kill()
        worker.close()
    assert worker._process.poll() is not None and not worker._setup.is_alive()
