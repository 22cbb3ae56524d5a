"""Hand-worked cases for the ScanNet-style class-agnostic instance AP.

The curve: for scores in ascending unique order, precision p_i and recall r_i, closed by (r=0, p=1);
AP = sum_i p_i * (r_{i-1} - r_{i+1}) / 2 with r_{-1} = r_0 and r_{n+1} = 0 (the script's step widths).
Scene used throughout: 1000 points, A = ids 1 on points 0..199, B = 2 on 200..399, C = 3 on 400..599,
the rest void (0) unless a test says otherwise.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from scene.eval.instance_ap import (
    SCANNET_OVERLAPS,
    InstanceAPConfig,
    ScenePredictions,
    evaluate_scenes,
    instance_ap,
    instance_ious,
    masks_from_labels,
    objects_only,
)

N = 1000


def scene_gt(rest: int = 0) -> np.ndarray:
    gt = np.full(N, rest, np.int32)
    gt[0:200], gt[200:400], gt[400:600] = 1, 2, 3
    return gt


def mask(start: int, stop: int) -> np.ndarray:
    m = np.zeros(N, bool)
    m[start:stop] = True
    return m


A, B, C = mask(0, 200), mask(200, 400), mask(400, 600)


def test_overlaps_are_the_scripts():
    assert len(SCANNET_OVERLAPS) == 10
    np.testing.assert_allclose(SCANNET_OVERLAPS[:9], 0.5 + 0.05 * np.arange(9))
    assert SCANNET_OVERLAPS[-1] == 0.25


def test_perfect_predictions_score_one():
    result = instance_ap(scene_gt(), np.stack([A, B, C]), [0.9, 0.8, 0.7])
    assert (result.ap, result.ap50, result.ap25) == (pytest.approx(1.0),) * 3
    assert result.num_gt == 3 and result.num_pred == 3


def test_missing_object_lowers_recall():
    # TPs at 0.9, 0.8 and one hard false negative: recall [2/3, 1/3, 0], precision 1 everywhere.
    # AP = 1 * (2/3 - 1/3)/2 + 1 * (2/3 - 0)/2 + 1 * (1/3 - 0)/2 = 1/6 + 1/3 + 1/6 = 2/3
    result = instance_ap(scene_gt(), np.stack([A, B]), [0.9, 0.8])
    np.testing.assert_allclose(result.ap_per_overlap, 2 / 3)


def test_duplicate_is_false_positive_at_lower_confidence():
    # A' = 190 of A's points (IoU 0.95 > every overlap), listed first, score 0.75; A itself scores 0.9.
    # The GT keeps 0.9, A' becomes a FP at 0.75: ascending thresholds 0.7, 0.75, 0.8, 0.9:
    # p = [3/4, 2/3, 1, 1, 1], r = [1, 2/3, 2/3, 1/3, 0]; widths [1/6, 1/6, 1/6, 1/3, 1/6]
    # AP = 3/4/6 + 2/3/6 + 1/6 + 1/3 + 1/6 = 65/72
    result = instance_ap(scene_gt(), np.stack([mask(0, 190), A, B, C]), [0.75, 0.9, 0.8, 0.7])
    np.testing.assert_allclose(result.ap_per_overlap, 65 / 72)


def test_merged_pair():
    # One prediction over A and B (IoU 0.5 with each, score 0.9), C exact (0.8).
    # Overlaps >= 0.5 (IoU must exceed): merged is a FP, A and B are missed:
    #   thresholds 0.8, 0.9: p = [1/2, 0, 1], r = [1/3, 0, 0]: AP = 1/2 * (1/3 - 0)/2 = 1/12
    # Overlap 0.25: merged matches A (first GT), B is missed: as test_missing_object: 2/3
    result = instance_ap(scene_gt(), np.stack([A | B, C]), [0.9, 0.8])
    np.testing.assert_allclose(result.ap_per_overlap[:9], 1 / 12)
    assert result.ap == pytest.approx(1 / 12) and result.ap50 == pytest.approx(1 / 12)
    assert result.ap25 == pytest.approx(2 / 3)


def test_prediction_on_void_is_not_a_false_positive():
    on_void = mask(600, 800)
    result = instance_ap(scene_gt(rest=0), np.stack([on_void, A, B, C]), [0.95, 0.9, 0.8, 0.7])
    np.testing.assert_allclose(result.ap_per_overlap, 1.0)


def test_prediction_on_background_is_a_false_positive():
    # FP at 0.95 above three TPs: p = [3/4, 2/3, 1/2, 0, 1], r = [1, 2/3, 1/3, 0, 0]
    # widths [1/6, 1/3, 1/3, 1/6, 0]: AP = 3/4/6 + 2/3/3 + 1/2/3 = 37/72
    result = instance_ap(scene_gt(rest=-1), np.stack([mask(600, 800), A, B, C]), [0.95, 0.9, 0.8, 0.7])
    np.testing.assert_allclose(result.ap_per_overlap, 37 / 72)


def test_void_share_is_compared_with_each_overlap():
    gt = scene_gt(rest=-1)
    gt[600:750] = 0  # the stray prediction: 150 void + 50 background points, void share 0.75
    result = instance_ap(gt, np.stack([mask(600, 800), A, B, C]), [0.95, 0.9, 0.8, 0.7])
    ignored = SCANNET_OVERLAPS < 0.75  # 0.5 .. 0.7 and 0.25: share exceeds the overlap
    np.testing.assert_allclose(result.ap_per_overlap[ignored], 1.0)
    np.testing.assert_allclose(result.ap_per_overlap[~ignored], 37 / 72)


def test_predictions_under_100_points_are_dropped():
    gt = scene_gt(rest=-1)
    small = instance_ap(gt, np.stack([mask(600, 699), A, B, C]), [0.95, 0.9, 0.8, 0.7])
    assert small.num_pred == 3 and small.ap == pytest.approx(1.0)
    kept = instance_ap(gt, np.stack([mask(600, 700), A, B, C]), [0.95, 0.9, 0.8, 0.7])
    assert kept.num_pred == 4 and kept.ap == pytest.approx(37 / 72)


def test_small_gt_is_ignored():
    gt = scene_gt(rest=-1)
    gt[600:650] = 4  # 50 points: below min_region_size, neither a miss nor a match
    result = instance_ap(gt, np.stack([A, B, C]), [0.9, 0.8, 0.7])
    assert result.num_gt == 3 and result.ap == pytest.approx(1.0)
    # A prediction on it plus 60 background points (IoU 50/110 = 0.45, ignored share 0.45):
    # at 0.25 it overlaps the small GT, so not a FP; at 0.5 .. 0.9 it is a FP at 0.95 (37/72 as above).
    result = instance_ap(gt, np.stack([mask(600, 710), A, B, C]), [0.95, 0.9, 0.8, 0.7])
    assert result.ap25 == pytest.approx(1.0)
    np.testing.assert_allclose(result.ap_per_overlap[:9], 37 / 72)


def test_min_region_size_is_configurable():
    gt = scene_gt()
    gt[600:650] = 4
    config = InstanceAPConfig(min_region_size=10)
    result = instance_ap(gt, np.stack([A, B, C]), [0.9, 0.8, 0.7], config)
    assert result.num_gt == 4  # D now counts and is missed: recall tops at 3/4
    assert result.ap == pytest.approx(3 / 4)


def test_nan_without_gt_and_zero_without_predictions():
    no_gt = instance_ap(np.full(N, -1), np.stack([A]), [0.9])
    assert np.isnan(no_gt.ap_per_overlap).all() and np.isnan(no_gt.ap)
    no_pred = instance_ap(scene_gt(), np.zeros((0, N), bool), [])
    np.testing.assert_array_equal(no_pred.ap_per_overlap, 0.0)
    only_void = instance_ap(scene_gt(), np.stack([mask(600, 800)]), [0.9])  # the script would crash here
    np.testing.assert_array_equal(only_void.ap_per_overlap, 0.0)


def test_scenes_are_accumulated_into_one_curve():
    # Scene 1 perfect, scene 2 one GT and no prediction: recall tops at 3/4, precision stays 1.
    # r = [3/4, 1/2, 1/4, 0]; widths [1/8, 1/4, 1/4, 1/8]: AP = 3/4 (not the mean of 1 and 0)
    second = np.zeros(N, np.int32)
    second[:300] = 9
    scenes = [
        ScenePredictions(scene_gt(), np.stack([A, B, C]), [0.9, 0.8, 0.7], "one"),
        ScenePredictions(second, np.zeros((0, N), bool), [], "two"),
    ]
    np.testing.assert_allclose(evaluate_scenes(scenes).ap_per_overlap, 3 / 4)


def test_label_input_and_objects_variant():
    labels = np.full(N, -1)
    labels[0:200], labels[200:400], labels[600:1000] = 0, 1, 2  # A, B, and one prediction on "wall" id 5
    gt = scene_gt(rest=-1)
    gt[600:1000] = 5
    masks = masks_from_labels(labels)
    assert masks.shape == (3, N)
    scores = [0.8, 0.7, 0.9]
    everything = instance_ap(gt, masks, scores)  # all instances: C missed, wall found
    assert everything.num_gt == 4 and everything.ap == pytest.approx(3 / 4)
    objects = instance_ap(objects_only(gt, [5]), masks, scores)  # wall is void: not a FP
    assert objects.num_gt == 3 and objects.ap == pytest.approx(2 / 3)
    # wall as background: FP at 0.9 over TPs 0.8, 0.7 and one miss:
    # p = [2/3, 1/2, 0, 1], r = [2/3, 1/3, 0, 0]; widths [1/6, 1/3, 1/6, 0]: AP = 1/9 + 1/6 = 5/18
    as_background = instance_ap(objects_only(gt, [5], as_void=False), masks, scores)
    assert as_background.ap == pytest.approx(5 / 18)
    from_labels = evaluate_scenes([ScenePredictions.from_labels(gt, labels, scores)])
    from_pairs = evaluate_scenes([ScenePredictions.from_pairs(gt, list(zip(masks, scores)))])
    np.testing.assert_array_equal(from_labels.ap_per_overlap, everything.ap_per_overlap)
    np.testing.assert_array_equal(from_pairs.ap_per_overlap, everything.ap_per_overlap)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="kitchen: masks must be P x 1000"):
        ScenePredictions(scene_gt(), np.zeros((2, 999), bool), [1, 1], "kitchen")
    with pytest.raises(ValueError, match="2 scores for 1 masks"):
        ScenePredictions(scene_gt(), A[None], [1, 1])
    with pytest.raises(ValueError, match="gt_ids"):
        ScenePredictions(scene_gt().astype(float), A[None], [1])


# ---------------------------------------------------------------------------------------------
# A direct re-implementation of the script's loops (dicts, per-GT and per-prediction), for a
# randomized cross-check. Class-agnostic: every positive id is an instance, id 0 is void.


def script_reference(scenes, overlaps=SCANNET_OVERLAPS, min_size=100):
    matches = []
    for s, (gt_ids, masks, scores) in enumerate(scenes):
        gts = [
            {"instance_id": int(i), "vert_count": int((gt_ids == i).sum()), "matched_pred": []}
            for i in np.unique(gt_ids)
            if i > 0
        ]
        preds = []
        for k, (m, conf) in enumerate(zip(masks, scores)):
            if m.sum() < min_size:
                continue
            pred = {"name": (s, k), "vert_count": int(m.sum()), "confidence": float(conf)}
            pred["void_intersection"] = int((m & (gt_ids == 0)).sum())
            pred["matched_gt"] = []
            for gt in gts:
                inter = int((m & (gt_ids == gt["instance_id"])).sum())
                if inter > 0:
                    pred["matched_gt"].append(dict(gt, intersection=inter))
                    gt["matched_pred"].append(dict(pred, intersection=inter))
            preds.append(pred)
        matches.append((gts, preds))
    aps = []
    for th in overlaps:
        visited = {p["name"]: False for _, preds in matches for p in preds}
        y_true, y_score, hard_fn = [], [], 0
        has_gt = has_pred = False
        for gts, preds in matches:
            gts = [g for g in gts if g["vert_count"] >= min_size]
            has_gt |= bool(gts)
            has_pred |= bool(preds)
            cur_true = [1.0] * len(gts)
            cur_score = [-np.inf] * len(gts)
            cur_match = [False] * len(gts)
            for gi, gt in enumerate(gts):
                found = False
                for pred in gt["matched_pred"]:
                    if visited[pred["name"]]:
                        continue
                    iou = pred["intersection"] / (gt["vert_count"] + pred["vert_count"] - pred["intersection"])
                    if iou > th:
                        if cur_match[gi]:
                            low, cur_score[gi] = sorted([cur_score[gi], pred["confidence"]])
                            cur_true.append(0.0)
                            cur_score.append(low)
                            cur_match.append(True)
                        else:
                            found = True
                            cur_match[gi] = True
                            cur_score[gi] = pred["confidence"]
                            visited[pred["name"]] = True
                if not found:
                    hard_fn += 1
            y_true += [t for t, m in zip(cur_true, cur_match) if m]
            y_score += [c for c, m in zip(cur_score, cur_match) if m]
            for pred in preds:
                if any(
                    g["intersection"] / (g["vert_count"] + pred["vert_count"] - g["intersection"]) > th
                    for g in pred["matched_gt"]
                ):
                    continue
                ignore = pred["void_intersection"] + sum(
                    g["intersection"] for g in pred["matched_gt"] if g["vert_count"] < min_size
                )
                if ignore / pred["vert_count"] <= th:
                    y_true.append(0.0)
                    y_score.append(pred["confidence"])
        if not has_gt:
            aps.append(np.nan)
            continue
        if not has_pred:
            aps.append(0.0)
            continue
        order = np.argsort(y_score)
        scores_sorted = np.array(y_score)[order]
        cumsum = np.cumsum(np.array(y_true)[order])
        _, firsts = np.unique(scores_sorted, return_index=True)
        total_true = cumsum[-1]
        cumsum = np.append(cumsum, 0)
        precision, recall = [], []
        for idx in firsts:
            below = cumsum[idx - 1]
            tp = total_true - below
            fp = len(scores_sorted) - idx - tp
            precision.append(tp / (tp + fp))
            recall.append(tp / (tp + below + hard_fn))
        precision.append(1.0)
        recall.append(0.0)
        widths = np.convolve(np.concatenate([[recall[0]], recall, [0.0]]), [-0.5, 0, 0.5], "valid")
        aps.append(float(np.dot(precision, widths)))
    return np.array(aps)


def random_scene(rng):
    """Blocky GT (some instances under 100 points, void and background) and noisy, merged, duplicate masks."""
    sizes = rng.integers(40, 400, size=12)
    gt = np.repeat(np.arange(1, 13), sizes)
    gt[rng.random(len(gt)) < 0.05] = 0
    gt = np.concatenate([gt, np.full(300, -1), np.zeros(200, np.int64)])
    ids = rng.choice(np.arange(1, 13), size=18)
    masks = (gt[None, :] == ids[:, None]) | (gt[None, :] == np.roll(ids, 1)[:, None]) * (rng.random(18) < 0.3)[:, None]
    masks ^= rng.random(masks.shape) < rng.uniform(0.0, 0.15, size=(18, 1))
    masks[rng.random(18) < 0.2] &= rng.random(len(gt)) < 0.5
    scores = np.round(rng.random(18), 1)  # coarse scores: ties exercise the unique-threshold logic
    return gt, masks, scores


@pytest.mark.parametrize("seed", range(4))
def test_matches_script_logic_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng) for _ in range(3)]
    expected = script_reference(scenes)
    got = evaluate_scenes([ScenePredictions(*s) for s in scenes]).ap_per_overlap
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert 0.0 < np.nanmean(expected) < 1.0  # a non-trivial case


# ---------------------------------------------------------------------------------------------
# Real scan: instances cut from ScanNet scene0448_01's vertices by its 11 GT boxes.

SCANNET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scannet_scene0448_01"


def box_instances_on_scan() -> np.ndarray:
    """Per-vertex id of the first GT box containing it (1-based), -1 outside all boxes."""
    if not (SCANNET / "gt_boxes.json").is_file():
        pytest.skip(f"shared ScanNet data not found at {SCANNET}")
    meta = json.loads((SCANNET / "gt_boxes.json").read_text())
    xyz = np.fromfile(SCANNET / "points" / "scene0448_01.bin", dtype=np.float32).reshape(-1, 6)[:, :3]
    align = np.asarray(meta["axis_align_matrix"], np.float64)
    aligned = xyz @ align[:3, :3].T + align[:3, 3]
    centers = np.array([b["center_aligned"] for b in meta["boxes"]])
    half = np.array([b["size"] for b in meta["boxes"]]) / 2
    inside = (np.abs(aligned[:, None, :] - centers[None]) <= half[None]).all(-1)
    return np.where(inside.any(1), inside.argmax(1) + 1, -1)


def test_real_scan_perfect_and_one_missing():
    gt = box_instances_on_scan()
    ids, sizes = np.unique(gt[gt > 0], return_counts=True)
    large = ids[sizes >= 100]
    assert len(large) >= 5
    masks = gt[None] == ids[:, None]
    scores = np.linspace(0.9, 0.5, len(ids))
    perfect = instance_ap(gt, masks, scores)
    assert perfect.num_gt == len(large) and perfect.ap == pytest.approx(1.0)
    # without the first large instance's prediction precision stays 1 and recall tops at (G-1)/G,
    # and with precision 1 everywhere the script's AP equals the top recall
    keep = ids != large[0]
    missing = instance_ap(gt, masks[keep], scores[keep])
    np.testing.assert_allclose(missing.ap_per_overlap, (len(large) - 1) / len(large))


def test_instance_ious_are_each_mask_against_each_instance_void_and_background_left_out():
    gt = np.array([3, 3, 3, 3, 0, 0, -1, -1, 7, 7])
    masks = np.array([[1, 1, 0, 0, 1, 0, 0, 0, 0, 0],   # half of instance 3, one void point
                      [0, 0, 0, 0, 0, 0, 1, 1, 1, 1],   # instance 7 and two background points
                      [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], bool)
    iou, ids, sizes = instance_ious(masks, gt)
    assert ids.tolist() == [3, 7] and sizes.tolist() == [4, 2]
    np.testing.assert_allclose(iou, [[2 / 5, 0.0], [0.0, 2 / 4], [0.0, 0.0]])
