"""The `scene` CLI: errors as one line (missing data, corrupt maps, bad arguments), queries, and the demo."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from scene.app.cli import main


def test_inspect_real_scannet(shared_set, capsys):
    assert main(["inspect", str(shared_set("scannet_scene0448_01")), "--stride", "50"]) == 0
    out = capsys.readouterr().out
    assert "format scannet-posed" in out
    assert "image 640x480" in out


def test_missing_dataset_is_one_line_error(tmp_path, capsys):
    code = main(["inspect", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "nowhere" in err


def test_unknown_format_is_one_line_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a dataset")
    code = main(["inspect", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("scene inspect: error:") and len(err.splitlines()) == 1


@pytest.fixture
def corrupt_map(tmp_path):
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"this is not an SQLite database" * 100)
    return path


def _one_line_error(capsys, code: int, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith(f"scene {command}: error:"), err
    return err


def test_run_on_missing_folder_is_one_line_error(tmp_path, capsys):
    code = main(["run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.sqlite")])
    assert "nowhere" in _one_line_error(capsys, code, "run")
    assert not (tmp_path / "m.sqlite").exists()


@pytest.mark.parametrize("command", [["info"], ["query", "--at", "0", "0", "0"], ["export", "--json", "x.json"],
                                     ["eval", "--gt", "gt_boxes.json"]])
def test_corrupt_map_file_is_one_line_error(corrupt_map, capsys, command):
    code = main([command[0], str(corrupt_map), *command[1:]])
    assert "broken.sqlite" in _one_line_error(capsys, code, command[0])


def test_missing_map_file_is_one_line_error(tmp_path, capsys):
    code = main(["info", str(tmp_path / "absent.sqlite")])
    assert "absent.sqlite" in _one_line_error(capsys, code, "info")


@pytest.mark.parametrize("arguments", [
    ["--at", "1", "2"],                      # too few numbers
    ["--at", "1", "x", "3"],                 # not a number
    ["--at", "0", "0", "0", "--radius", "0", "0", "0", "1"],  # two kinds at once
    [],                                      # no kind at all
])
def test_bad_query_arguments_are_one_line_errors(corrupt_map, capsys, arguments):
    code = main(["query", str(corrupt_map), *arguments])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "error" in err


@pytest.fixture(scope="module")
def tiny_map(tmp_path_factory):
    """A two-object map written directly (no mapping needed for argument checks)."""
    from scene.map import InstanceMap, MapObject
    from scene.storage import MapStore

    imap = InstanceMap()
    imap.add(MapObject(0, [[0, 0, 0], [0.1, 0, 0]]))
    imap.add(MapObject(1, [[1, 0, 0], [1.1, 0, 0]]))
    path = tmp_path_factory.mktemp("tiny") / "tiny.sqlite"
    with MapStore(path) as store:
        store.save(imap)
    return path


@pytest.mark.parametrize("arguments, words", [
    (["--radius", "0", "0", "0", "-1"], "radius"),
    (["--nearest", "0", "0", "0", "0"], "K"),
    (["--nearest", "0", "0", "0", "1.5"], "K"),
    (["--ray", "0", "0", "0", "0", "0", "0"], "direction"),
    (["--at", "nan", "0", "0"], "xyz"),
])
def test_bad_query_values_are_one_line_errors(tiny_map, capsys, arguments, words):
    code = main(["query", str(tiny_map), *arguments])
    assert words in _one_line_error(capsys, code, "query")


def test_query_on_a_known_map(tiny_map, capsys):
    assert main(["query", str(tiny_map), "--nearest", "0.9", "0", "0", "2"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["1", "0"]
    assert [float(r.split()[1]) for r in rows] == pytest.approx([0.1, 0.8])
    assert main(["query", str(tiny_map), "--at", "5", "5", "5"]) == 0
    assert capsys.readouterr().out.strip() == "no object"


def test_unknown_config_key_is_one_line_error(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("[tracking]\nvoxel = 1\n")
    code = main(["run", str(tmp_path), "--out", str(tmp_path / "m.sqlite"), "--config", str(config)])
    err = _one_line_error(capsys, code, "run")
    assert "'tracking.voxel'" in err and "c.toml" in err


def test_export_and_eval_argument_errors(tiny_map, tmp_path, capsys):
    assert "at least one" in _one_line_error(capsys, main(["export", str(tiny_map)]), "export")
    code = main(["export", str(tiny_map), "--scannet", str(tmp_path / "p")])
    assert "--vertices" in _one_line_error(capsys, code, "export")
    ids = tmp_path / "ids.npy"
    np.save(ids, np.zeros(3, np.int64))
    code = main(["eval", str(tiny_map), "--gt", str(ids)])
    assert "--vertices" in _one_line_error(capsys, code, "eval")
    code = main(["eval", str(tiny_map), "--gt", str(tmp_path / "nothing.xyz")])
    assert "nothing.xyz" in _one_line_error(capsys, code, "eval")


@pytest.mark.slow
def test_demo_writes_pictures_and_report(tmp_path):
    """Run the console entry point as a user would, on a short sequence."""
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "scene", "demo", "--out", str(out), "--frames", "4"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["objects"] >= 10
    assert 0.0 < report["segment2d"]["recall_at_0.5"] <= 1.0
    assert report["mapping"]["frames"] == 4 and report["refined_map"]["num_objects"] >= 1
    for part in ("online_map", "refined_map"):
        ap = report[part]["all_instances"]
        assert 0.0 <= ap["ap"] <= ap["ap25"] <= 1.0 and ap["num_gt"] >= 10
    assert (out / "frames.png").stat().st_size > 10_000
    assert len(list(out.glob("masks_*.png"))) == 4
    assert (out / "dataset" / "scene.json").exists() and (out / "map.sqlite").stat().st_size > 0
    assert "instance AP" in (out / "report.md").read_text()
    import cv2

    video = cv2.VideoCapture(str(out / "run.mp4"))
    assert video.get(cv2.CAP_PROP_FRAME_COUNT) == 4 and video.read()[0]
    # The demo's map is a normal map file: `scene info` reads it.
    info = subprocess.run([sys.executable, "-m", "scene", "info", str(out / "map.sqlite")],
                          capture_output=True, text=True, timeout=120)
    assert info.returncode == 0 and f"objects {report['refined_map']['num_objects']}" in info.stdout


def test_view_serves_a_saved_map(tmp_path):
    """`scene view MAP` starts the viewer on the given port and answers HTTP until stopped."""
    import socket
    import time
    import urllib.request

    import numpy as np

    pytest.importorskip("viser")
    from scene.map import InstanceMap, MapMetadata, MapObject
    from scene.storage import MapStore

    rng = np.random.default_rng(0)
    imap = InstanceMap(MapMetadata(voxel_size=0.02))
    for i, centre in enumerate([(0, 0, 0), (1, 0, 0)]):
        imap.add(MapObject.from_points(i + 1, rng.normal(centre, 0.05, (200, 3)).astype(np.float32)))
    path = tmp_path / "map.sqlite"
    with MapStore(path) as store:
        store.save(imap)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "scene", "view", str(path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        status, deadline = None, time.time() + 60
        while status is None and time.time() < deadline and proc.poll() is None:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status
            except OSError:
                time.sleep(0.5)
        assert status == 200, proc.stderr.read() if proc.poll() is not None else "viewer did not answer"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
