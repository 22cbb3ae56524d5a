"""Every ``scene`` command against broken copies of real data (issue 15). For each bad input: the exit
code, one clear line naming the file or flag (a second line may say what was kept), no traceback, and no
map file lost or altered that should not be.

The copies are a few frames of the shared sets (7-Scenes redkitchen, 3DMatch, ScanNet scene0448_01),
broken in ``tmp_path``; the shared originals are never touched."""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from broken_data import copy_7scenes, copy_scannet, resize_depth, truncate, write_pose, zero_depth
from scene.app.cli import main
from scene.storage import MapStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def good_map(shared_set, tmp_path_factory) -> Path:
    """A real map: 3 frames of 3DMatch's study room."""
    folder = tmp_path_factory.mktemp("good")
    data = copy_7scenes(shared_set("3dmatch_studyroom"), folder / "studyroom", frames=3)
    out = folder / "map.sqlite"
    assert main(["run", str(data), "--out", str(out), "--quiet"]) == 0
    return out


@dataclass
class Case:
    """``prepare(tmp, shared_set, good_map)`` builds the inputs and returns the argv (strings; "{tmp}" and
    "{map}" are filled in); ``line``: regex the first stderr line must match; ``kept``: files (relative to
    tmp, "{map}" for a copy of the good map) that must be byte-identical afterwards; ``absent``: files that
    must not exist afterwards; ``after``: an extra check of the outcome."""

    argv: list[str]
    code: int
    line: str
    prepare: Callable | None = None
    kept: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    after: Callable | None = None


def kitchen(tmp, shared_set, frames=3, name="data"):
    return copy_7scenes(shared_set("7scenes_redkitchen"), tmp / name, frames=frames)


def break_with(action):
    """A ``prepare`` that copies 3 kitchen frames and applies ``action(folder)``."""

    def prepare(tmp, shared_set, good_map):
        action(kitchen(tmp, shared_set))

    return prepare


def each(pattern, action):
    return lambda folder: [action(p) for p in sorted(folder.glob(pattern))]


def map_copy(tmp, shared_set, good_map):
    shutil.copy(good_map, tmp / "map.sqlite")


def kitchen_and_map(tmp, shared_set, good_map):
    kitchen(tmp, shared_set)
    map_copy(tmp, shared_set, good_map)


def garbage_map(tmp, shared_set, good_map):
    (tmp / "map.sqlite").write_bytes(b"not a map" * 100)


def truncated_map(tmp, shared_set, good_map):
    map_copy(tmp, shared_set, good_map)
    truncate(tmp / "map.sqlite", 0.3)


def frames_of(path):
    with MapStore(path, read_only=True) as store:
        return store.load().num_frames


RUN = ["run", "{tmp}/data", "--out", "{tmp}/out.sqlite", "--quiet"]

CASES = {
    # ---- run: broken images, poses, intrinsics -----------------------------------------------------
    "run truncated depth PNG mid-sequence": Case(
        RUN, 2, r"scene run: error: .*frame-000010.depth.png: truncated PNG",
        break_with(lambda d: truncate(d / "frame-000010.depth.png")),
        after=lambda tmp, err: "the map so far (2 frames" in err and frames_of(tmp / "out.sqlite") == 2),
    "run truncated colour JPG first frame": Case(
        RUN, 2, r"scene run: error: .*frame-000000.color.jpg: truncated JPEG",
        break_with(lambda d: truncate(d / "frame-000000.color.jpg")), absent=["out.sqlite"],
        after=lambda tmp, err: "no frame was mapped, nothing saved" in err),
    "run missing depth file": Case(
        RUN, 2, r"scene run: error: .*frame-000005.color.jpg \(colour\) has no depth partner",
        break_with(lambda d: (d / "frame-000005.depth.png").unlink()), absent=["out.sqlite"]),
    "run missing pose file": Case(
        RUN, 2, r"scene run: error: .*frame-000005.pose.txt: matrix file is missing",
        break_with(lambda d: (d / "frame-000005.pose.txt").unlink()), absent=["out.sqlite"]),
    "run all poses NaN": Case(
        RUN, 2, r"scene run: error: .*all 3 frames have a non-finite .*frame-000000.pose.txt",
        break_with(each("*.pose.txt", lambda p: write_pose(p, np.nan))), absent=["out.sqlite"]),
    "run one pose inf": Case(
        RUN, 0, r"scene run: warning: .*skipped 1 of 3 frames .*frame-000005.pose.txt\)$",
        break_with(lambda d: write_pose(d / "frame-000005.pose.txt", np.inf)),
        after=lambda tmp, err: frames_of(tmp / "out.sqlite") == 2),
    "run empty depth": Case(
        RUN, 0, None, break_with(each("*.depth.png", zero_depth)),
        after=lambda tmp, err: frames_of(tmp / "out.sqlite") == 3),
    "run depth half the size of colour": Case(
        RUN, 2, r"scene run: error: .*frame-000000.depth.png: the intrinsics \(.*camera-intrinsics.txt.* 320x240",
        break_with(each("*.depth.png", resize_depth)), absent=["out.sqlite"]),
    "run unreadable intrinsics file": Case(
        RUN, 2, r"scene run: error: .*camera-intrinsics.txt: expected a 3x3 matrix, found 2 numbers",
        break_with(lambda d: (d / "camera-intrinsics.txt").write_text("585 585\n")), absent=["out.sqlite"]),
    "run missing dataset folder": Case(
        ["run", "{tmp}/nowhere", "--out", "{tmp}/out.sqlite"], 2, r"scene run: error: .*nowhere", absent=["out.sqlite"]),
    "run intrinsics of a 1280x960 camera": Case(
        RUN, 2, r"scene run: error: .*frame-000000.depth.png: the intrinsics \(.*camera-intrinsics.txt: cx 640, cy 480\)",
        break_with(lambda d: (d / "camera-intrinsics.txt").write_text("1170 0 640\n0 1170 480\n0 0 1\n")),
        absent=["out.sqlite"]),
    "run scannet intrinsics with a negative focal": Case(
        ["run", "{tmp}/scannet", "--out", "{tmp}/out.sqlite", "--quiet"], 2,
        r"scene run: error: .*intrinsic.txt: intrinsics must be a finite 3x3 matrix with positive focals",
        lambda tmp, shared_set, good_map: (copy_scannet(shared_set("scannet_scene0448_01"), tmp / "scannet", 2),
                                           (tmp / "scannet/posed_images/intrinsic.txt").write_text("-1170 0 648\n0 1170 484\n0 0 1\n")),
        absent=["out.sqlite"]),
    # ---- run: flags -------------------------------------------------------------------------------------
    "run --stride 0": Case(RUN + ["--stride", "0"], 2, r"scene run: error: argument --stride: expected a number >= 1"),
    "run --save-every -1": Case(RUN + ["--save-every", "-1"], 2, r"scene run: error: argument --save-every: .*>= 0"),
    "run --save-every 0 says what it means": Case(
        RUN + ["--save-every", "0"], 0, r"scene run: --save-every 0: no incremental saves",
        lambda tmp, shared_set, good_map: kitchen(tmp, shared_set, frames=2)),
    "run --view --port 99999": Case(RUN + ["--view", "--port", "99999"], 2,
                                    r"scene run: error: argument --port: expected a port from 1 to 65535, got 99999"),
    "run --max-frames abc": Case(RUN + ["--max-frames", "abc"], 2, r"scene run: error: argument --max-frames"),
    "run --out in a missing folder": Case(
        ["run", "{tmp}/data", "--out", "{tmp}/no/out.sqlite"], 2, r"scene run: error: --out .*folder .*no does not exist",
        lambda tmp, shared_set, good_map: kitchen(tmp, shared_set, frames=1)),
    "run --checkpoint not a checkpoint": Case(
        RUN + ["--segmenter", "sam", "--checkpoint", "{tmp}/notes.pth"], 2,
        r"scene run: error: .*notes.pth: not a PyTorch checkpoint of tensors \(", absent=["out.sqlite"],
        prepare=lambda tmp, shared_set, good_map: (kitchen(tmp, shared_set, 1), (tmp / "notes.pth").write_text("hi"))),
    # ---- run: never lose a map ------------------------------------------------------------------------
    "run onto an existing map": Case(
        ["run", "{tmp}/data", "--out", "{tmp}/map.sqlite", "--quiet"], 2, r"scene run: error: --out .*map.sqlite already exists",
        kitchen_and_map, kept=["map.sqlite"]),
    "run --overwrite of a map another process writes": Case(
        ["run", "{tmp}/data", "--out", "{tmp}/map.sqlite", "--quiet", "--overwrite"], 2,
        r"scene run: error: .*map.sqlite: another writer holds this map \(process \d+", kitchen_and_map,
        kept=["map.sqlite"]),  # the writer is started by the test (see ``locked``)
    "run --overwrite with a corrupt first frame": Case(
        ["run", "{tmp}/data", "--out", "{tmp}/map.sqlite", "--quiet", "--overwrite"], 2,
        r"scene run: error: .*frame-000000.depth.png: truncated PNG",
        lambda tmp, shared_set, good_map: (kitchen_and_map(tmp, shared_set, good_map),
                                           truncate(tmp / "data" / "frame-000000.depth.png")),
        kept=["map.sqlite"]),
    "run --resume with another dataset": Case(
        ["run", "{tmp}/data", "--out", "{tmp}/map.sqlite", "--resume", "--quiet"], 2,
        r"scene run: error: .*map.sqlite was made from .*studyroom.* differs from frame", kitchen_and_map,
        kept=["map.sqlite"]),
    "run --resume without a map": Case(
        ["run", "{tmp}/data", "--out", "{tmp}/none.sqlite", "--resume"], 2, r"scene run: error: --resume: no map file",
        lambda tmp, shared_set, good_map: kitchen(tmp, shared_set, 1), absent=["none.sqlite"]),
    # ---- view, info, query, export, eval -----------------------------------------------------------------
    "view --port -1": Case(["view", "{tmp}/map.sqlite", "--port", "-1"], 2,
                           r"scene view: error: argument --port: expected a port from 1 to 65535, got -1", map_copy,
                           kept=["map.sqlite"]),
    "view missing map": Case(["view", "{tmp}/none.sqlite"], 2, r"scene view: error: .*none.sqlite: no map file there"),
    "info garbage map": Case(["info", "{tmp}/map.sqlite"], 2, r"scene info: error: .*map.sqlite: .*not a SQLite database",
                             garbage_map, kept=["map.sqlite"]),
    "info truncated map": Case(["info", "{tmp}/map.sqlite"], 2, r"scene info: error: .*map.sqlite: ", truncated_map,
                               kept=["map.sqlite"]),
    "info --top 0": Case(["info", "{tmp}/map.sqlite", "--top", "0"], 2, r"scene info: error: argument --top", map_copy),
    "query --max-distance -1": Case(
        ["query", "{tmp}/map.sqlite", "--at", "0", "0", "0", "--max-distance", "-1"], 2,
        r"scene query: error: argument --max-distance: expected a finite distance >= 0 in metres, got -1", map_copy,
        kept=["map.sqlite"]),
    "query --radius negative": Case(["query", "{tmp}/map.sqlite", "--radius", "0", "0", "0", "-2"], 2,
                                    r"scene query: error: --radius: R must be a distance >= 0", map_copy),
    "query --nearest K 0.5": Case(["query", "{tmp}/map.sqlite", "--nearest", "0", "0", "0", "0.5"], 2,
                                  r"scene query: error: --nearest: K must be a whole number", map_copy),
    "query --at not a number": Case(["query", "{tmp}/map.sqlite", "--at", "0", "x", "0"], 2,
                                    r"scene query: error: argument --at: invalid float value: 'x'", map_copy),
    "export --scannet without --vertices": Case(["export", "{tmp}/map.sqlite", "--scannet", "{tmp}/pred"], 2,
                                                r"scene export: error: --scannet needs --vertices", map_copy,
                                                kept=["map.sqlite"]),
    "export --vertices missing": Case(
        ["export", "{tmp}/map.sqlite", "--scannet", "{tmp}/pred", "--vertices", "{tmp}/none.bin"], 2,
        r"scene export: error: .*none.bin", map_copy, kept=["map.sqlite"]),
    "export --ply onto a folder": Case(["export", "{tmp}/map.sqlite", "--ply", "{tmp}"], 2,
                                       r"scene export: error: .*Is a directory", map_copy, kept=["map.sqlite"]),
    "export --max-distance -1": Case(["export", "{tmp}/map.sqlite", "--ply", "{tmp}/m.ply", "--max-distance", "-1"], 2,
                                     r"scene export: error: argument --max-distance", map_copy),
    "eval --gt missing": Case(["eval", "{tmp}/map.sqlite", "--gt", "{tmp}/none.json"], 2, r"scene eval: error: .*none.json: not a gt_boxes.json .*No such file",
                              map_copy, kept=["map.sqlite"]),
    "eval --gt corrupt json": Case(
        ["eval", "{tmp}/map.sqlite", "--gt", "{tmp}/gt_boxes.json"], 2,
        r"scene eval: error: .*gt_boxes.json: not a gt_boxes.json",
        lambda tmp, shared_set, good_map: (map_copy(tmp, shared_set, good_map),
                                           (tmp / "gt_boxes.json").write_text('{"boxes": [{"size"')),
        kept=["map.sqlite"]),
    "eval --max-distance -1": Case(["eval", "{tmp}/map.sqlite", "--gt", "{tmp}/x.json", "--max-distance", "-1"], 2,
                                   r"scene eval: error: argument --max-distance", map_copy),
    # ---- inspect, demo ------------------------------------------------------------------------------------
    "inspect truncated first depth": Case(
        ["inspect", "{tmp}/data"], 2, r"scene inspect: error: .*frame-000000.depth.png: truncated PNG",
        break_with(lambda d: truncate(d / "frame-000000.depth.png"))),
    "inspect all poses NaN": Case(
        ["inspect", "{tmp}/data"], 2, r"scene inspect: error: .*all 3 frames have a non-finite",
        break_with(each("*.pose.txt", lambda p: write_pose(p, np.nan)))),
    "inspect depth half the size of colour": Case(
        ["inspect", "{tmp}/data"], 2, r"scene inspect: error: .*frame-000000.depth.png: the intrinsics",
        break_with(each("*.depth.png", resize_depth))),
    "inspect unknown layout": Case(["inspect", "{tmp}"], 2, r"scene inspect: error: .*: cannot tell the dataset format"),
    "demo --width 8 --height 8": Case(["demo", "--width", "8", "--height", "8", "--out", "{tmp}/demo"], 2,
                                      r"scene demo: error: --width/--height: the demo needs images of at least 128x96",
                                      absent=["demo"]),
    "demo --frames 0": Case(["demo", "--frames", "0", "--out", "{tmp}/demo"], 2,
                            r"scene demo: error: argument --frames: expected a number >= 1", absent=["demo"]),
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, shared_set, good_map, capfd):
    case = CASES[name]
    if case.prepare is not None:
        case.prepare(tmp_path, shared_set, good_map)
    before = {k: _digest(tmp_path / k) for k in case.kept}
    argv = [a.format(tmp=tmp_path) for a in case.argv]
    holder = _hold_writer_lock(tmp_path / "map.sqlite") if "another process" in name else None
    try:
        code = main(argv)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    out, err = capfd.readouterr()
    assert "Traceback" not in err + out and "File \"" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == case.code, f"exit {code}, stderr: {err}"
    if case.line is not None:
        assert lines and re.search(case.line, lines[0]), f"first stderr line does not match {case.line!r}: {err}"
        assert len(lines) <= 2, f"more than one line (plus what was kept): {err}"
    for k, digest in before.items():
        assert _digest(tmp_path / k) == digest, f"{k} was altered"
    for k in case.absent:
        assert not (tmp_path / k).exists(), f"{k} was left behind"
    if case.after is not None:
        assert case.after(tmp_path, err), err


def _hold_writer_lock(path: Path) -> subprocess.Popen:
    code = ("import sys, time; from scene.storage import WriterLock; from pathlib import Path; "
            "lock = WriterLock(Path(sys.argv[1])); print('ready', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    return child


def test_empty_map_run_says_so(tmp_path, shared_set, capfd):
    data = kitchen(tmp_path, shared_set)
    for depth in data.glob("*.depth.png"):
        zero_depth(depth)
    assert main(["run", str(data), "--out", str(tmp_path / "out.sqlite"), "--quiet"]) == 0
    out, _ = capfd.readouterr()
    assert "0 objects (refined)" in out and "the map is empty: no object was found in its 3 frames" in out


def test_info_into_a_closed_pipe_exits_quietly(good_map):
    # The reader is gone before scene writes (as `scene info MAP | head -1` once head has its line).
    child = subprocess.Popen([sys.executable, "-m", "scene", "info", str(good_map)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=60) == 0 and err == ""


def test_resume_says_the_map_stays_online(tmp_path, shared_set, capfd):
    data = kitchen(tmp_path, shared_set)
    out = tmp_path / "out.sqlite"
    assert main(["run", str(data), "--out", str(out), "--quiet", "--max-frames", "2"]) == 0
    capfd.readouterr()
    assert main(["run", str(data), "--out", str(out), "--quiet", "--resume"]) == 0
    stdout, err = capfd.readouterr()
    assert "a resumed map stays online" in err and "online only: resumed, no global refinement" in stdout
    assert frames_of(out) == 3


def test_interrupt_counts_frames_not_file_numbers(tmp_path, shared_set, capfd, monkeypatch):
    from scene.pipeline import Mapper

    data = kitchen(tmp_path, shared_set)  # file numbers 0, 5, 10
    out = tmp_path / "out.sqlite"
    assert main(["run", str(data), "--out", str(out), "--quiet", "--max-frames", "2"]) == 0
    before = _digest(out)

    def interrupt(self, frame, masks=None, lifted=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(Mapper, "integrate", interrupt)
    capfd.readouterr()
    assert main(["run", str(data), "--out", str(out), "--quiet", "--resume"]) == 130
    err = capfd.readouterr().err
    assert "interrupted after 0 frames of this run: the map so far (2 frames, online" in err, err
    assert frames_of(out) == 2 and _digest(out) == before
