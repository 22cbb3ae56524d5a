"""`scene run` -> info -> query -> export -> eval, end to end on a small synthetic scene and on real data."""
from __future__ import annotations

import json

import numpy as np
import pytest

from scene.app.cli import main
from scene.datasets.synthetic import make_scene, write_scene
from scene.export import read_ply_vertex_properties
from scene.storage import MapStore

FRAMES = 10


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A written synthetic room (10 neighbouring views of a 100-frame loop) and its map from `scene run`."""
    root = tmp_path_factory.mktemp("cli")
    dense = make_scene("room", seed=3, noisy=True, num_frames=100, width=320, height=240)
    small = make_scene("room", seed=3, noisy=True, num_frames=FRAMES, width=320, height=240)
    data = write_scene(small, root / "room", frames=(dense.frame(i) for i in range(FRAMES)))
    out = root / "map.sqlite"
    code = main(["run", str(data), "--out", str(out), "--quiet", "--save-every", "4"])
    assert code == 0
    with MapStore(out, read_only=True) as store:
        imap = store.load()
    return {"root": root, "data": data, "out": out, "map": imap}


def test_run_writes_a_refined_map_with_every_frame(synthetic):
    imap = synthetic["map"]
    assert imap.num_frames == FRAMES and imap.metadata.extra["refined"] is True
    assert len(imap) >= 5 and imap.metadata.source_format == "project"
    assert imap.metadata.K is not None and imap.metadata.image_size == (240, 320)


def test_run_prints_a_summary(tmp_path, synthetic, capsys):
    out = tmp_path / "m.sqlite"
    assert main(["run", str(synthetic["data"]), "--out", str(out), "--max-frames", "3", "--online-only",
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "mapped 3 frames" in text and "online only" in text and str(out) in text
    assert "segment" in text and "lift_associate" in text
    # An existing output is never replaced silently.
    assert main(["run", str(synthetic["data"]), "--out", str(out), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_info_lists_counts_and_largest_objects(synthetic, capsys):
    assert main(["info", str(synthetic["out"]), "--top", "3"]) == 0
    text = capsys.readouterr().out
    imap = synthetic["map"]
    assert f"objects {len(imap)}" in text and f"frames {FRAMES}" in text and "schema version 1" in text
    largest = max(imap, key=lambda o: o.num_points)
    table = [line.split() for line in text.splitlines()[4:]]
    assert len(table) == 3 and int(table[0][0]) == largest.id and int(table[0][1]) == largest.num_points


def test_queries_answer_with_map_objects(synthetic, capsys):
    imap = synthetic["map"]
    obj = max((o for o in imap if not o.is_structure), key=lambda o: o.num_points)
    x, y, z = (str(v) for v in obj.points[0])
    assert main(["query", str(synthetic["out"]), "--at", x, y, z]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split()[0] == str(obj.id) and float(rows[1].split()[1]) == pytest.approx(0.0, abs=1e-6)

    assert main(["query", str(synthetic["out"]), "--nearest", x, y, z, "3"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 3 and rows[0].split()[0] == str(obj.id)
    distances = [float(r.split()[1]) for r in rows]
    assert distances == sorted(distances)

    assert main(["query", str(synthetic["out"]), "--radius", x, y, z, "0.5"]) == 0
    ids = {int(r.split()[0]) for r in capsys.readouterr().out.splitlines()[1:]}
    assert obj.id in ids and ids == set(imap.within_radius(obj.points[0], 0.5)[0].tolist())

    # A ray from 2 m away straight at the point hits something no farther than the point.
    origin = obj.points[0].astype(float) + np.array([0.0, 0.0, 2.0])
    assert main(["query", str(synthetic["out"]), "--ray", *map(str, origin), "0", "0", "-1"]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert float(row[1]) <= 2.0 + imap.metadata.voxel_size


def test_exports_ply_json_and_scannet(synthetic, tmp_path, capsys):
    imap = synthetic["map"]
    ply, summary, scannet = tmp_path / "map.ply", tmp_path / "map.json", tmp_path / "pred"
    assert main(["export", str(synthetic["out"]), "--ply", str(ply), "--json", str(summary)]) == 0
    vertices = read_ply_vertex_properties(ply)
    assert len(vertices["x"]) == imap.num_points
    assert set(np.unique(vertices["instance"]).tolist()) == set(imap.ids.tolist())
    data = json.loads(summary.read_text())
    assert data["num_objects"] == len(imap) and data["num_frames"] == FRAMES

    # ScanNet predictions for "scan vertices": the GT surface points written as a .bin (N x 6 float32).
    gt = np.load(synthetic["data"] / "gt" / "points.npz")
    bin_path = tmp_path / "scan.bin"
    np.concatenate([gt["xyz"], gt["colors"].astype(np.float32)], axis=1).astype(np.float32).tofile(bin_path)
    assert main(["export", str(synthetic["out"]), "--scannet", str(scannet), "--vertices", str(bin_path)]) == 0
    scene_file = scannet / "scan.txt"
    lines = scene_file.read_text().splitlines()
    assert 1 <= len(lines) <= len(imap)
    first_mask = np.loadtxt(scannet / lines[0].split()[0], dtype=np.int64)
    assert first_mask.shape == (len(gt["xyz"]),) and 0 < first_mask.sum() < len(first_mask)
    capsys.readouterr()


def test_eval_on_synthetic_ground_truth(synthetic, tmp_path, capsys):
    result_file = tmp_path / "eval.json"
    assert main(["eval", str(synthetic["out"]), "--gt", str(synthetic["data"]), "--json", str(result_file)]) == 0
    text = capsys.readouterr().out
    assert "all_instances:" in text and "objects:" in text
    results = json.loads(result_file.read_text())
    for part in ("all_instances", "objects"):
        r = results[part]
        assert 0.0 <= r["ap"] <= r["ap50"] <= r["ap25"] <= 1.0
        assert r["num_gt"] > 0 and r["num_pred"] > 0
    assert results["all_instances"]["ap25"] > 0.05  # the map finds some instances: not a vacuous score


def test_eval_with_per_point_ids_matches_the_folder_eval(synthetic, tmp_path, capsys):
    gt = np.load(synthetic["data"] / "gt" / "points.npz")
    ids_path, bin_path = tmp_path / "ids.npy", tmp_path / "points.bin"
    np.save(ids_path, gt["ids"].astype(np.int64))
    gt["xyz"].astype(np.float32).tofile(bin_path)
    out = tmp_path / "ids.json"
    assert main(["eval", str(synthetic["out"]), "--gt", str(ids_path), "--vertices", str(bin_path),
                 "--json", str(out)]) == 0
    folder = tmp_path / "folder.json"
    assert main(["eval", str(synthetic["out"]), "--gt", str(synthetic["data"]), "--json", str(folder)]) == 0
    capsys.readouterr()
    assert json.loads(out.read_text())["instances"]["ap"] == json.loads(folder.read_text())["all_instances"]["ap"]


def test_eval_boxes_on_own_objects_is_perfect(synthetic, tmp_path, capsys):
    """Box AP of the map against boxes built from its own objects (identity alignment) is 1."""
    imap = synthetic["map"]
    objects = [o for o in imap if not o.is_structure]
    boxes = [{"center_aligned": ((o.aabb_min + o.aabb_max) / 2).tolist(),
              "size": (o.aabb_max - o.aabb_min).tolist(), "label": "x"} for o in objects]
    path = tmp_path / "gt_boxes.json"
    path.write_text(json.dumps({"axis_align_matrix": np.eye(4).tolist(), "boxes": boxes}))
    out = tmp_path / "boxes.json"
    assert main(["eval", str(synthetic["out"]), "--gt", str(path), "--json", str(out)]) == 0
    capsys.readouterr()
    result = json.loads(out.read_text())["boxes"]
    assert result["num_gt"] == len(objects) and result["ap@0.50"] == pytest.approx(1.0)


def test_run_on_real_3dmatch_frames(shared_set, tmp_path, capsys):
    """All 5 frames of the 3DMatch study room (3 neighbours and 2 far-apart views), 640x480."""
    data = shared_set("3dmatch_studyroom")
    out = tmp_path / "real.sqlite"
    assert main(["run", str(data), "--out", str(out), "--max-frames", "5", "--quiet"]) == 0
    summary = capsys.readouterr().out
    with MapStore(out, read_only=True) as store:
        imap = store.load()
    assert imap.num_frames == 5 and len(imap) >= 2
    assert "mapped 5 frames" in summary and f"{len(imap)} objects (refined)" in summary
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert f"objects {len(imap)}" in info and f"points {imap.num_points}" in info and "3dmatch_studyroom" in info
    # Every map point lies in front of some camera of the trajectory, within the depth range.
    _, poses = imap.trajectory
    points = np.concatenate([o.points for o in imap]).astype(np.float64)
    depth = np.stack([(points - p[:3, 3]) @ p[:3, 2] for p in poses])
    assert np.all(depth.max(axis=0) > 0.1) and np.all(depth.min(axis=0) < 8.0)
    centre = imap.get(imap.ids[0]).centroid
    assert main(["query", str(out), "--nearest", *map(str, centre), "2"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 2 and {int(r.split()[0]) for r in rows} <= set(imap.ids.tolist())


def test_ctrl_c_saves_the_frames_so_far_and_resume_completes(synthetic, tmp_path, capsys, monkeypatch):
    from scene.pipeline import Mapper

    integrate, done = Mapper.integrate, []

    def interrupted_after_four(self, frame, masks=None, lifted=None):
        if len(done) == 4:
            raise KeyboardInterrupt
        done.append(frame.index)
        return integrate(self, frame, masks, lifted)

    monkeypatch.setattr(Mapper, "integrate", interrupted_after_four)
    out = tmp_path / "m.sqlite"
    # save_every 100: nothing is saved on the way, so the 4 frames come from the interrupt handler alone.
    code = main(["run", str(synthetic["data"]), "--out", str(out), "--save-every", "100", "--quiet"])
    err = capsys.readouterr().err
    assert code == 130 and "interrupted after 4 frames" in err and "--resume (it ends refined)" in err
    assert f"the tracker's state in {out}.state" in err
    with MapStore(out, read_only=True) as store:
        partial = store.load()
    assert partial.num_frames == 4 and len(partial) >= 3 and partial.metadata.extra.get("refined") is None

    monkeypatch.setattr(Mapper, "integrate", integrate)
    assert main(["run", str(synthetic["data"]), "--out", str(out), "--resume", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "so the run ends in the global refinement" in captured.err and "(refined)" in captured.out
    with MapStore(out, read_only=True) as store:
        resumed = store.load()
    assert resumed.trajectory[0].tolist() == list(range(FRAMES)) and resumed.metadata.extra["refined"] is True
    assert set(partial.ids.tolist()) & set(resumed.ids.tolist()) and not (tmp_path / "m.sqlite.state").exists()


def test_run_saving_in_a_writer_process_makes_the_same_map(tmp_path, synthetic):
    out, timings = tmp_path / "process.sqlite", tmp_path / "t.json"
    assert main(["run", str(synthetic["data"]), "--out", str(out), "--quiet", "--save-every", "4",
                 "--save-writer", "process", "--timings", str(timings)]) == 0
    with MapStore(out, read_only=True) as store:
        imap = store.load()
    from scene.map import map_fingerprint

    assert map_fingerprint(imap) == map_fingerprint(synthetic["map"])
    writer = json.loads(timings.read_text())["writer_process"]
    assert writer["cpu_s"] > 0 and writer["peak_rss_bytes"] > 2**20
