"""The benchmark harness (statistics, memory probes, machine description, Markdown) and a ``--quick`` dry
run of the smallest section through ``python -m benchmarks``'s entry point."""
from __future__ import annotations

import json
import mmap
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of the checkout, not an installed package

from benchmarks import __main__ as cli  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    MemoryProbe,
    cpu_model,
    current_rss_bytes,
    jsonable,
    linear_slope,
    machine_description,
    markdown_table,
    peak_rss_bytes,
    ratio_last_first,
    summarize,
    total_ram_bytes,
)
from benchmarks.suites.boxes import read_gt_boxes  # noqa: E402
from benchmarks.suites.common import SuiteSkipped, aligned_boxes  # noqa: E402
from benchmarks.suites.recall import frame_picks  # noqa: E402

SHARED_DATA = REPO.parent / "shared" / "data"


def test_summarize_matches_numpy_statistics():
    values = np.random.default_rng(0).exponential(0.05, 101)
    stats = summarize(values)
    assert stats["n"] == 101
    assert stats["median"] == pytest.approx(np.median(values))
    assert stats["p95"] == pytest.approx(np.percentile(values, 95))
    assert stats["min"] <= stats["median"] <= stats["p95"] <= stats["max"]


def test_summarize_of_nothing_is_nan_and_bad_durations_are_refused():
    empty = summarize([])
    assert empty["n"] == 0 and np.isnan(empty["median"])
    with pytest.raises(ValueError, match="durations"):
        summarize([0.1, -0.2])
    with pytest.raises(ValueError, match="durations"):
        summarize([0.1, float("nan")])


def test_ratio_and_slope_describe_growth():
    frames = [50, 100, 200, 300]
    assert linear_slope(frames, [3 * f + 2 for f in frames]) == pytest.approx(3.0)
    assert ratio_last_first([0.2, 0.25, 0.4]) == pytest.approx(2.0)
    assert np.isnan(ratio_last_first([0.2]))
    assert np.isnan(linear_slope([5, 5], [1, 2]))
    with pytest.raises(ValueError):
        linear_slope([1, 2, 3], [1, 2])


def test_cpu_model_and_ram_are_parsed_from_proc_text():
    cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9999 64-Core\nflags\t: fpu\n"
    assert cpu_model(cpuinfo) == "AMD EPYC 9999 64-Core"
    assert total_ram_bytes("MemTotal:       24576000 kB\nMemFree: 1 kB\n") == 24576000 * 1024
    assert total_ram_bytes("nothing here") == 0


def test_machine_description_names_cpu_cores_versions_and_load():
    machine = machine_description()
    assert machine["cores"] >= 1 and machine["usable_cores"] >= 1
    assert machine["numpy"] == np.__version__
    assert len(machine["load_average"]) == 3
    json.dumps(machine)  # goes into the report as it is


def test_rss_grows_when_memory_is_touched_and_peak_is_a_high_water_mark():
    # An anonymous mapping, not a numpy array: freed heap that the allocator keeps resident from
    # earlier tests would let an array reuse pages without the RSS growing.
    before = current_rss_bytes()
    block = mmap.mmap(-1, 64 * 2**20)
    block.write(b"\x01" * len(block))  # written so its pages are resident
    during = current_rss_bytes()
    assert during - before > 32 * 2**20
    block.close()  # unmapped: the current RSS drops, the high-water mark keeps the block
    assert current_rss_bytes() < during - 32 * 2**20
    assert peak_rss_bytes() > before + 32 * 2**20


def test_memory_probe_traces_the_heap_peak_only_when_asked():
    with MemoryProbe(trace=True) as probe:
        block = np.zeros(2**20, np.float64)  # 8 MiB
        block[:] = 1.0
        del block
    assert probe.report.traced_peak >= 8 * 2**20
    with MemoryProbe(trace=False) as untraced:
        np.zeros(1000).sum()
    assert untraced.report.traced_peak is None and untraced.report.peak_rss > 0


def test_markdown_table_formats_numbers_and_missing_values():
    table = markdown_table([{"a": 0.12345, "b": None}, {"a": float("nan"), "b": True}], ["a", "b"], ["A", "B"])
    lines = table.splitlines()
    assert lines[0] == "| A | B |" and lines[1] == "|---|---|"
    assert lines[2] == "| 0.123 | - |" and lines[3] == "| nan | yes |"
    with pytest.raises(ValueError, match="headers"):
        markdown_table([], ["a", "b"], ["A"])


def test_jsonable_turns_numpy_values_into_plain_json():
    data = jsonable({"a": np.float32(1.5), "b": np.arange(3), "c": (np.int64(2), "x")})
    assert json.loads(json.dumps(data)) == {"a": 1.5, "b": [0, 1, 2], "c": [2, "x"]}


def test_frame_picks_spread_over_the_sequence():
    assert frame_picks(48, 4) == [0, 16, 31, 47]
    assert frame_picks(3, 10) == [0, 1, 2]
    with pytest.raises(ValueError):
        frame_picks(0, 2)


def test_aligned_boxes_transform_points_before_taking_the_box():
    from scene.map import InstanceMap, MapObject

    imap = InstanceMap()
    imap.add(MapObject(0, np.array([[0, 0, 0], [1, 2, 3]], np.float32), confidence=0.9))
    imap.add(MapObject(1, np.array([[0, 0, 0], [1, 1, 1]], np.float32), confidence=0.4, is_structure=True))
    turn = np.array([[0, -1, 0, 10], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float64)  # 90 deg about z
    boxes, scores = aligned_boxes(imap, turn)
    order = np.argsort(-scores)
    np.testing.assert_allclose(boxes[order[0]], [8, 0, 0, 10, 1, 3])
    np.testing.assert_allclose(scores[order], [0.9, 0.4])
    kept, _ = aligned_boxes(imap, turn, structure=False)
    assert kept.shape == (1, 6)


def test_gt_boxes_of_scannet_are_read_as_min_max_corners():
    path = SHARED_DATA / "scannet_scene0448_01" / "gt_boxes.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    boxes, align, labels = read_gt_boxes(path)
    assert boxes.shape == (len(labels), 6) and len(labels) == 11
    assert (boxes[:, 3:] > boxes[:, :3]).all()
    np.testing.assert_allclose(align[3], [0, 0, 0, 1])


def test_unreadable_gt_boxes_skip_the_section_with_the_file_named(tmp_path):
    bad = tmp_path / "gt_boxes.json"
    bad.write_text("{not json")
    with pytest.raises(SuiteSkipped, match="gt_boxes.json"):
        read_gt_boxes(bad)


def test_quick_recall_section_writes_json_and_markdown_and_keeps_other_sections(tmp_path):
    earlier = {"sections": {"speed": {"title": "Per-stage speed", "machine": machine_description(),
                                      "timestamp": "2026-01-01T00:00:00Z", "seconds": 1.0,
                                      "status": "skipped", "reason": "kept from an earlier run"}}}
    (tmp_path / "quick.json").write_text(json.dumps(earlier))
    status = cli.main(["--quick", "--only", "recall", "--out", str(tmp_path)])
    assert status == 0
    report = json.loads((tmp_path / "quick.json").read_text())
    recall = report["sections"]["recall"]
    assert recall["status"] == "ok" and recall["quick"] is True
    assert recall["machine"]["cores"] >= 1
    overall = [row for row in recall["data"]["rows"] if row["scenes"] == "all"]
    assert len(overall) == 1 and overall[0]["generator"] == "geometric"
    assert 0.0 <= overall[0]["recall50"] <= 1.0 and overall[0]["num_gt"] > 0
    assert report["sections"]["speed"]["reason"] == "kept from an earlier run"
    markdown = (tmp_path / "quick.md").read_text()
    assert "recall@0.5" in markdown and "kept from an earlier run" in markdown


def test_missing_data_skips_a_section_and_a_crash_fails_only_that_section(tmp_path, monkeypatch):
    status = cli.main(["--quick", "--only", "boxes", "--data", str(tmp_path / "absent"), "--out", str(tmp_path)])
    entry = json.loads((tmp_path / "quick.json").read_text())["sections"]["boxes"]
    assert status == 0 and entry["status"] == "skipped" and "absent" in entry["reason"]

    from benchmarks.suites import recall

    def broken(ctx):
        raise RuntimeError("generator exploded")

    monkeypatch.setattr(recall, "run", broken)
    status = cli.main(["--quick", "--only", "recall", "boxes", "--data", str(tmp_path / "absent"),
                       "--out", str(tmp_path)])
    sections = json.loads((tmp_path / "quick.json").read_text())["sections"]
    assert status == 1
    assert sections["recall"]["status"] == "failed" and "generator exploded" in sections["recall"]["reason"]
    assert sections["boxes"]["status"] == "skipped"


def test_jsonable_writes_strict_json():
    import json

    from benchmarks.harness import jsonable

    data = jsonable({"a": float("nan"), "b": np.float32(np.inf), "c": [np.int64(3), (1.5, -np.inf)]})
    assert json.loads(json.dumps(data, allow_nan=False)) == {"a": None, "b": None, "c": [3, [1.5, None]]}


def test_greedy_matches_count_true_positives_as_the_ap_does():
    from benchmarks.diagnose import greedy_matches

    iou = np.array([[0.6, 0.1], [0.7, 0.0], [0.2, 0.55], [0.0, 0.3]])
    order, taken = greedy_matches(iou, np.array([0.9, 0.8, 0.7, 0.95]), 0.5)
    assert order.tolist() == [3, 0, 1, 2]
    assert taken.tolist() == [0, -1, 1, -1]  # the second match of GT 0 is a false positive


def _evidence_tracker(frames):
    """A stand-in tracker whose records hold ``frames``: per frame (surface keys, [(segment keys, structure
    vote)])."""
    from types import SimpleNamespace

    from lift3d.types import Segment3D
    from tracking.config import TrackerConfig
    from tracking.records import SegmentRecords, SurfaceRecords

    segments, surfaces = SegmentRecords(), SurfaceRecords()
    for index, (surface, masks) in enumerate(frames):
        surfaces.append(index, np.sort(surface))
        made = [Segment3D(index, k, 0, np.sort(keys), np.ones(keys.size, np.int32), keys.size, np.zeros(3),
                          np.zeros(3), np.zeros(3), 1.0, np.zeros(4, np.float32), 0.1)
                for k, (keys, _) in enumerate(masks)]
        segments.append(made, np.arange(len(made)), np.array([vote for _, vote in masks], bool))
    return SimpleNamespace(segments=segments, surfaces=surfaces, config=TrackerConfig())


def test_multiview_evidence_tells_an_object_held_whole_from_one_seen_as_a_piece():
    from benchmarks.diagnose import multiview_evidence
    from lift3d.voxels import pack_keys, voxel_centers

    voxel = 0.1
    cells = np.stack(np.meshgrid(np.arange(10), np.arange(10), np.arange(3), indexing="ij"), -1).reshape(-1, 3)
    keys = pack_keys(cells)
    a, b, c = keys[cells[:, 2] == 0], keys[cells[:, 2] == 1], keys[cells[:, 2] == 2]  # 100 voxels each
    everything = np.concatenate([a, b, c])
    tracker = _evidence_tracker([
        (everything, [(a, False), (np.concatenate([b, c]), True)]),  # a held whole; b and c one mask
        (everything, [(np.concatenate([a, b]), False)]),  # a and b one mask; c seen, no mask
        (np.concatenate([a, b]), [(a, False), (b, False)]),  # c out of view
    ])
    evidence = multiview_evidence(tracker, [voxel_centers(k, voxel) for k in (a, b, c)], voxel)
    assert evidence["seen"].tolist() == [3, 3, 2]
    np.testing.assert_allclose(evidence["view_iou"], [(1 + 0.5 + 1) / 3, (0.5 + 0.5 + 1) / 3, (0.5 + 0) / 2])
    np.testing.assert_allclose(evidence["purity"], [(1 + 0.5 + 1) / 3, (0.5 + 0.5 + 1) / 3, (0.5 + 0) / 2])
    # a mask lying half on each of two objects belongs to the first: b holds the b+c mask (voted
    # structure) and its own mask of frame 2, a the a+b mask and its own two
    np.testing.assert_allclose(evidence["plane"], [0, 0.5, 0])
    assert multiview_evidence(tracker, [], voxel)["seen"].size == 0


def test_view_pair_evidence_counts_the_views_holding_two_voxel_sets_together_and_apart():
    from benchmarks.diagnose import view_pair_evidence
    from lift3d.voxels import pack_keys

    cells = np.stack(np.meshgrid(np.arange(10), np.arange(10), np.arange(3), indexing="ij"), -1).reshape(-1, 3)
    keys = pack_keys(cells)
    a, b, other = (np.sort(keys[cells[:, 2] == z]) for z in range(3))  # 100 voxels each
    everything = np.concatenate([a, b, other])
    tracker = _evidence_tracker([
        (everything, [(np.concatenate([a, b]), False)]),  # one mask over both
        (everything, [(a, False), (b, False), (other, False)]),  # apart
        (everything, [(np.concatenate([a, b]), False), (a, False)]),  # a coarse mask over both, a finer one apart
        (everything, [(np.concatenate([a, b[:3]]), False)]),  # b hardly covered: not a view of both
        (everything, [(np.concatenate([a[:40], b[:40]]), False), (a[40:], False), (b[40:], False),
                      (other, False)]),  # a mask over under half of each, and apart
    ])
    assert view_pair_evidence(tracker, a, b) == (4, 2, 3)
    assert view_pair_evidence(tracker, a, other) == (2, 0, 2)
    assert view_pair_evidence(tracker, a, np.zeros(0, np.int64)) == (0, 0, 0)


def test_ranking_headroom_ranks_the_same_boxes_by_their_best_iou(capsys):
    import io

    from benchmarks.diagnose import _box_ap, _print_headroom

    gt = np.array([[0, 0, 0, 1, 1, 1], [2, 0, 0, 3, 1, 1]], np.float64)
    boxes = np.array([[5, 5, 5, 6, 6, 6], [0, 0, 0, 1, 1, 1], [2, 0, 0, 3, 1, 1.5]], np.float64)  # miss, exact, 0.67
    scores = np.array([0.9, 0.2, 0.1])  # the miss ranked first
    out = io.StringIO()
    _print_headroom(lambda score: _box_ap(gt, boxes, score, 0.5), scores, np.array([0.0, 1.0, 2 / 3]), 0.5, out)
    assert _box_ap(gt, boxes, scores, 0.5) < 1.0 == _box_ap(gt, boxes, np.array([0.0, 1.0, 2 / 3]), 0.5)
    assert out.getvalue().startswith("AP50: as ranked 0.") and out.getvalue().rstrip().endswith("IoU 1.000")


def test_diagnose_lists_a_small_synthetic_map(capsys):
    from benchmarks.diagnose import FAILURE_KINDS, diagnose_synthetic, main, parse_args

    counts = diagnose_synthetic(parse_args(["tabletop", "--frames", "8", "--size", "160", "120", "--top", "3"]))
    printed = capsys.readouterr().out
    assert counts["gt"] > 0 and 0 <= counts["tp"] <= min(counts["gt"], counts["predictions"])
    assert counts["tp"] + counts["missed"] == counts["gt"]
    assert printed.count("  TP  ") == counts["tp"] and f"missed ({counts['missed']})" in printed
    assert printed.count(" view IoU ") == printed.count("  TP  ") + printed.count("  fp  ") > 0
    assert "AP50: as ranked " in printed
    assert sum(counts[kind] for kind in FAILURE_KINDS) == counts["missed"]
    assert f"failures: dropped {counts['dropped']}, merged {counts['merged']}" in printed
    assert f"; {counts['pieces']} predictions are pieces of one GT object" in printed
    assert main(["kitchen"]) == 2 and "unknown scene 'kitchen'" in capsys.readouterr().err
    assert parse_args(["scannet", "--scene", "scannet_scene0113_00"]).scannet_scene == "scannet_scene0113_00"
    assert main(["scannet", "--scene", "nowhere", "--data", "/nonexistent"]) == 2
    assert "no nowhere/gt_boxes.json under /nonexistent" in capsys.readouterr().err
    args = parse_args(["room", "--set", "tracking.association.grow_by_vote=true", "--set", "parts.colour_join=0"])
    assert args.config.tracking.association.grow_by_vote and args.config.parts.colour_join == 0.0
    assert not parse_args(["room"]).config.tracking.association.grow_by_vote  # the defaults without --set
    with pytest.raises(SystemExit):
        parse_args(["room", "--set", "parts.no_such_key=1"])
    assert "no_such_key" in capsys.readouterr().err


def test_failure_kind_tells_dropped_merged_too_small_split_and_partial_apart():
    from benchmarks.diagnose import failure_kind

    # GT points 0-149 one object, 150-399 its neighbour; holder: the map object labelling each point
    gt = np.arange(400) < 150
    holder = np.full(400, -1)
    holder[:60] = 5
    assert failure_kind(gt, holder, [5]) == "dropped"  # 90 of 150 points unlabelled
    holder[:] = 7  # one object over both, most of it on the neighbour
    assert failure_kind(gt, holder, [7]) == "merged"
    holder[150:] = 8  # now only on this one ...
    assert failure_kind(gt, holder, [8]) == "too small"  # ... but not one of the protocol's predictions
    assert failure_kind(gt, holder, [7, 8]) == "partial"  # counted: it matched, the IoU threshold decides
    holder[:60], holder[60:120], holder[120:150] = 3, 4, -1  # two pieces, neither half of it
    assert failure_kind(gt, holder, [3, 4, 8]) == "split"
    holder[:70], holder[70:80], holder[80:150] = 3, 4, -1  # one piece under half, a sliver, the rest unmapped
    assert failure_kind(gt, holder, [3, 4, 8]) == "partial"


def test_piece_predictions_are_mostly_on_one_gt_object_and_miss_it():
    from benchmarks.diagnose import piece_predictions

    gt_ids = np.repeat([1, 2, 0], [300, 300, 100])  # two instances and unlabelled points
    masks = np.zeros((4, gt_ids.size), bool)
    masks[0, :280] = True  # the whole of instance 1: a match, not a piece
    masks[1, 300:420] = True  # a third of instance 2: a piece
    masks[2, 420:470] = True  # too small to count
    masks[3, 250:400] = True  # half on instance 1, half on 2: not a piece of one
    best_iou = np.array([280 / 300, 120 / 300, 50 / 300, 100 / 350])
    assert piece_predictions(masks, gt_ids, best_iou, 0.5).tolist() == [False, True, False, False]
    assert piece_predictions(masks[:0], gt_ids, best_iou[:0], 0.5).size == 0


def test_box_fit_names_the_few_observation_points_that_stretch_a_box_and_the_pieces_inside():
    import io

    from benchmarks.diagnose import _print_box_fits, box_fit, pieces_inside
    from scene.map import MapObject

    rng = np.random.default_rng(0)
    gt = np.array([[0.0, 0.0, 0.0, 0.7, 0.8, 0.8]])  # a chair's box
    body = rng.uniform([0.0, 0.0, 0.0], [0.7, 0.8, 0.8], (3000, 3))
    strays = rng.uniform([-1.0, -0.3, 0.2], [-0.9, -0.2, 0.3], (40, 3))  # seen in few frames, 1 m off
    points = np.concatenate([body, strays])
    weights = np.concatenate([np.full(3000, 15.0), np.full(40, 3.0)])
    fit = box_fit(gt[0], points, weights)
    assert fit["outside"] == 40 and fit["below"].tolist() == [40, 40, 0] and fit["above"].tolist() == [0, 0, 0]
    assert fit["weight_inside"] == 15 and fit["weight_outside"] == 3
    assert fit["size"][0] == pytest.approx(1.7, abs=0.01) and fit["gt_size"].tolist() == pytest.approx([0.7, 0.8, 0.8])
    assert box_fit(gt[0], body, None)["outside"] == 0
    seat, back = body[body[:, 2] < 0.45], body[body[:, 2] >= 0.45]
    far = rng.uniform(3, 4, (500, 3))
    assert [(k, n) for k, n, _ in pieces_inside(gt[0], [far, seat, back])] == sorted(
        [(1, len(seat)), (2, len(back))], key=lambda row: -row[1])
    objects = [MapObject.from_points(7, points.astype(np.float32), weights=weights.astype(np.float32)),
               MapObject.from_points(8, seat.astype(np.float32))]
    out = io.StringIO()
    _print_box_fits(objects, [points, seat], np.array([[0.3], [0.5]]), gt, ["chair #0"], out)
    printed = out.getvalue()
    assert "chair #0: id 8 IoU 0.50" in printed and "other pieces inside: id 7 3000 pts" in printed


def test_joining_oracle_joins_the_pieces_of_one_gt_object_and_leaves_the_rest():
    from benchmarks.diagnose import _instance_ap, joined_pieces, main_instance

    gt = np.repeat([1, 2, 0], 400)  # two objects of 400 points, 400 unlabelled
    masks = np.zeros((4, gt.size), bool)
    masks[0, :180] = masks[1, 180:400] = True  # two pieces of object 1, neither reaching IoU 0.5
    masks[2, 400:800] = True  # object 2 whole
    masks[3, 300:600] = True  # a merge: a third on object 1, two thirds on object 2
    scores = np.array([0.9, 0.5, 0.8, 0.3])
    owner = main_instance(masks, gt)
    assert owner.tolist() == [1, 1, 2, -1]
    joined, best = joined_pieces(masks, scores, owner)
    assert joined.shape == (3, gt.size) and best.tolist() == [0.3, 0.9, 0.8]
    assert joined[1, :400].all() and not joined[1, 400:].any()  # the halves, one prediction
    assert joined[0].sum() == 300  # the merge is no piece: left as it is
    assert _instance_ap(gt, masks, scores, 0.5) < _instance_ap(gt, joined, best, 0.5) == 1.0


def test_box_joining_oracle_takes_the_aabb_of_the_pieces_inside_one_gt_box():
    from benchmarks.diagnose import joined_box_pieces

    gt = np.array([[0, 0, 0, 1, 1, 1], [3, 0, 0, 4, 1, 1]], float)
    rng = np.random.default_rng(0)
    left = rng.uniform([0, 0, 0], [0.5, 1, 1], (50, 3))
    right = rng.uniform([0.5, 0, 0], [1, 1, 1], (50, 3))
    straddling = rng.uniform([0.5, 0, 0], [3.5, 1, 1], (50, 3))  # most of it between the boxes
    boxes, scores = joined_box_pieces([left, right, straddling], np.array([0.4, 0.7, 0.9]), gt)
    assert len(boxes) == 2 and sorted(scores.tolist()) == [0.7, 0.9]
    whole = boxes[scores.tolist().index(0.7)]
    np.testing.assert_allclose(
        whole, np.r_[np.minimum(left.min(0), right.min(0)), np.maximum(left.max(0), right.max(0))])
