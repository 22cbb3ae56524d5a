"""`scene batch` on Dask: one map per scene, failures reported and not fatal, resumable after a kill
(finished maps skipped, half-written ones redone), pooled evaluation over the batch."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from scene.batch import BatchConfig, read_report, run_batch, scene_names
from scene.app.cli import main
from scene.datasets import ProjectSource
from scene.datasets.synthetic import make_scene, write_scene
from scene.eval import evaluate_scenes, instance_predictions
from scene.storage import MapStore


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    paths = []
    for seed in (0, 1, 2):
        dense = make_scene("room", seed=seed, noisy=True, num_frames=100, width=160, height=120)
        small = make_scene("room", seed=seed, noisy=True, num_frames=6, width=160, height=120)
        paths.append(write_scene(small, root / f"room{seed}", frames=(dense.frame(i) for i in range(6))))
    (root / "broken").mkdir()
    return root, paths


@pytest.fixture(scope="module")
def scheduler():
    """One small local cluster shared by the in-process runs (they connect by address, as --scheduler does)."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit="3GiB",
                           dashboard_address=None)
    yield cluster.scheduler_address
    cluster.close()


def test_scene_names_are_distinct_and_file_safe(tmp_path):
    for sub in ("a/scan", "b/scan", "c/x y"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "run.bag").write_bytes(b"")
    assert scene_names([tmp_path / "a/scan", tmp_path / "b/scan", tmp_path / "c/x y", tmp_path / "run.bag"]) == [
        "a_scan", "b_scan", "x_y", "run"]
    with pytest.raises(ValueError, match="listed twice"):
        scene_names([tmp_path / "a/scan", tmp_path / "a/../a/scan"])


def test_a_failed_scene_is_reported_and_the_others_are_mapped(tmp_path, scenes, scheduler, capsys):
    root, paths = scenes
    out = tmp_path / "out"
    code = main(["batch", str(paths[0]), str(paths[1]), str(root / "broken"), "--out", str(out),
                 "--scheduler", scheduler, "--quiet", "--online-only"])
    assert code == 1
    shown = capsys.readouterr()
    assert "2 mapped, 0 already done, 1 failed" in shown.out
    assert "broken" in shown.out and "cannot tell the dataset format" in shown.out
    report = read_report(out)
    assert [(s.name, s.status) for s in report.scenes] == [("room0", "done"), ("room1", "done"), ("broken", "failed")]
    for scene, path in zip(report.scenes[:2], paths):
        with MapStore(scene.map, read_only=True) as store:
            imap = store.load()
        assert imap.num_frames == 6 and len(imap) == scene.objects > 0 and scene.peak_rss_mib > 100
        assert imap.metadata.source_path == str(path.resolve())
    assert sorted(p.name for p in out.iterdir()) == ["batch.json", "room0.sqlite", "room1.sqlite"]

    # pooled AP: one ranking over both scenes, as evaluate_scenes computes it from the two maps
    assert main(["eval", str(out), "--json", str(tmp_path / "ap.json")]) == 0
    pooled = json.loads((tmp_path / "ap.json").read_text())
    expected = []
    for scene, path in zip(report.scenes[:2], paths):
        with MapStore(scene.map, read_only=True) as store:
            imap = store.load()
        points = ProjectSource(path).gt_points()
        expected.append(instance_predictions(imap, points.xyz, points.ids, 0.04, scene.name))
    assert pooled["all_instances"]["ap25"] == pytest.approx(evaluate_scenes(expected).ap25)
    assert pooled["all_instances"]["scenes"] == 2 and "not finished: ['broken']" in pooled["protocol"]


def test_a_killed_batch_resumes_keeping_finished_maps_and_redoing_half_written_ones(tmp_path, scenes, scheduler):
    _, paths = scenes
    out = tmp_path / "out"
    command = [sys.executable, "-m", "scene.app", "batch", *map(str, paths), "--out", str(out), "--workers", "1",
               "--memory-limit", "3GiB", "--quiet", "--online-only"]
    batch = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not any(out.glob("*.sqlite")) and time.monotonic() < deadline and batch.poll() is None:
            time.sleep(0.2)
    finally:
        os.killpg(batch.pid, signal.SIGKILL)  # the CLI, its scheduler and its worker: one process group
        batch.wait()
    finished = sorted(p.name for p in out.glob("*.sqlite"))
    assert finished, batch.stderr.read().decode()[-2000:]
    mtimes = {name: (out / name).stat().st_mtime_ns for name in finished}
    # a map left half-written by the kill (or anything unreadable under a final name) must be redone
    (out / "room2.sqlite.partial").write_bytes(b"half")
    if "room2.sqlite" not in finished:
        (out / "room2.sqlite").write_bytes(b"SQLite format 3\x00 torn")

    report = run_batch(paths, out, BatchConfig(scheduler=scheduler, mapper=_online()))
    status = {s.name: s.status for s in report.scenes}
    assert all(status[name.removesuffix(".sqlite")] == "skipped" for name in finished if name != "room2.sqlite")
    assert set(status.values()) <= {"done", "skipped"} and list(status.values()).count("done") >= 1
    for name in finished:
        if name != "room2.sqlite":
            assert (out / name).stat().st_mtime_ns == mtimes[name]  # kept, not rewritten
    assert sorted(p.name for p in out.iterdir()) == ["batch.json", "room0.sqlite", "room1.sqlite", "room2.sqlite"]
    with MapStore(out / "room2.sqlite", read_only=True) as store:
        assert store.load().num_frames == 6


def _online():
    from scene.config import MapperConfig

    return MapperConfig(online_only=True)


def test_batch_options_are_checked(tmp_path, scenes, capsys):
    _, paths = scenes
    assert main(["batch", str(paths[0]), "--out", str(tmp_path), "--workers", "2", "--scheduler", "tcp://x:1"]) == 2
    assert main(["batch", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "input" in capsys.readouterr().err
    with pytest.raises(ValueError, match="workers must be >= 1"):
        BatchConfig(workers=0)
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a batch folder" in capsys.readouterr().err


def test_a_scene_failing_midway_leaves_no_file_behind(tmp_path, scenes):
    from scene.batch import map_scene

    _, paths = scenes
    source = tmp_path / "room"
    shutil.copytree(paths[2], source)
    depth = sorted((source / "depth").iterdir())
    depth[3].write_bytes(depth[3].read_bytes()[:100])  # a truncated PNG: the run stops at frame 3
    out = tmp_path / "out"
    out.mkdir()
    result = map_scene("room", str(source), str(out / "room.sqlite"), BatchConfig())
    assert result.status == "failed" and "DatasetError" in result.error
    assert list(out.iterdir()) == []  # no half-written map, and no tracker state kept for a resume
