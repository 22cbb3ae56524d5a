import numpy as np
import pytest

from scene.eval.box_ap import SceneBoxes, box_ap, box_iou_3d, evaluate_box_scenes, voc_ap

UNIT = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
FAR = [5.0, 5.0, 0.0, 6.0, 7.0, 2.0]  # 1 x 2 x 2


def shifted(box, dx):
    return [box[0] + dx, box[1], box[2], box[3] + dx, box[4], box[5]]


def test_iou_by_hand():
    iou = box_iou_3d(np.array([UNIT]), np.array([shifted(UNIT, 0.5), UNIT, FAR, [0, 0, 0, 2, 1, 1]]))
    # half overlap: 0.5 / 1.5; identical: 1; disjoint: 0; contained unit in 2 x 1 x 1: 1 / 2
    np.testing.assert_allclose(iou, [[1 / 3, 1.0, 0.0, 0.5]])
    assert box_iou_3d(np.array([[0, 0, 0, 0, 0, 0]]), np.array([[0, 0, 0, 0, 0, 0]]))[0, 0] == 0.0


def test_perfect_detections():
    result = box_ap(np.array([UNIT, FAR]), np.array([FAR, UNIT]), [0.6, 0.9])
    assert result.ap25 == 1.0 and result.ap50 == 1.0
    np.testing.assert_array_equal(result.max_recall, [1.0, 1.0])


def test_shifted_box_passes_025_fails_05():
    result = box_ap(np.array([UNIT]), np.array([shifted(UNIT, 0.5)]), [0.9])  # IoU 1/3
    assert result.ap25 == 1.0 and result.ap50 == 0.0


def test_duplicate_is_false_positive():
    # ranked: UNIT (TP), near-duplicate of UNIT (FP), FAR (TP); 2 GT.
    # rec [1/2, 1/2, 1], prec [1, 1/2, 2/3]; envelope at the recall steps: 1 then 2/3
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    preds = np.array([UNIT, shifted(UNIT, 0.1), FAR])
    result = box_ap(np.array([UNIT, FAR]), preds, [0.9, 0.8, 0.7])
    np.testing.assert_allclose(result.ap_per_overlap, [5 / 6, 5 / 6])


def test_no_fallback_to_second_best_gt():
    # The second detection's best GT (IoU 2/3) is taken; its IoU 0.6/1.4 with the free second GT is
    # ignored, as in eval_det_cls: rec [1/2, 1/2], prec [1, 1/2]: AP 1/2 at 0.25.
    gt = np.array([UNIT, shifted(UNIT, 0.6)])
    result = box_ap(gt, np.array([UNIT, shifted(UNIT, 0.2)]), [0.9, 0.8])
    assert result.ap25 == pytest.approx(0.5)


def test_scenes_do_not_mix_and_are_ranked_together():
    # Scene b's detection sits where scene a's GT is: it matches nothing in b (FP at 0.95).
    # Ranked: FP (0.95), TP (0.9): rec [0, 1/2], prec [0, 1/2]: AP = 1/2 * 1/2 = 1/4
    scenes = [
        SceneBoxes(np.array([UNIT]), np.array([UNIT]), [0.9], "a"),
        SceneBoxes(np.array([FAR]), np.array([UNIT]), [0.95], "b"),
    ]
    result = evaluate_box_scenes(scenes)
    np.testing.assert_allclose(result.ap_per_overlap, [0.25, 0.25])
    assert result.num_gt == 2 and result.num_pred == 2


def test_empty_cases():
    assert np.isnan(box_ap(np.zeros((0, 6)), np.array([UNIT]), [0.5]).ap25)
    assert box_ap(np.array([UNIT]), np.zeros((0, 6)), []).ap50 == 0.0


def test_bad_boxes_are_named():
    with pytest.raises(ValueError, match="kitchen: pred_boxes must be M x 6"):
        SceneBoxes(np.array([UNIT]), np.zeros((2, 4)), [1, 1], "kitchen")
    with pytest.raises(ValueError, match="box 1 has a max corner below its min corner"):
        SceneBoxes(np.array([UNIT, [1, 0, 0, 0, 1, 1]]), np.zeros((0, 6)), [])


# A loop re-implementation of eval_det_cls (votenet/mmdet3d) for a randomized cross-check.
def eval_det_reference(gt_by_scene, pred_by_scene, threshold):
    detected = {k: [False] * len(v) for k, v in gt_by_scene.items()}
    npos = sum(len(v) for v in gt_by_scene.values())
    dets = [(score, k, box) for k, preds in pred_by_scene.items() for box, score in preds]
    dets.sort(key=lambda d: -d[0])
    tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
    for d, (_, k, box) in enumerate(dets):
        ovmax, jmax = -np.inf, -1
        for j, g in enumerate(gt_by_scene[k]):
            iou = box_iou_3d(box[None], g[None])[0, 0]
            if iou > ovmax:
                ovmax, jmax = iou, j
        if ovmax > threshold and not detected[k][jmax]:
            tp[d], detected[k][jmax] = 1, True
        else:
            fp[d] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec, prec = tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    mrec, mpre = np.concatenate([[0], rec, [1]]), np.concatenate([[0], prec, [0]])
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def random_boxes(rng, n):
    low = rng.uniform(0, 3, size=(n, 3))
    return np.hstack([low, low + rng.uniform(0.2, 1.0, size=(n, 3))])


@pytest.mark.parametrize("seed", range(3))
def test_matches_eval_det_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    gts = {k: random_boxes(rng, 6) for k in "abc"}
    preds = {}
    for k, g in gts.items():
        jitter = g[rng.integers(0, 6, 9)] + rng.normal(0, 0.15, size=(9, 6))
        boxes = np.hstack([np.minimum(jitter[:, :3], jitter[:, 3:]), np.maximum(jitter[:, :3], jitter[:, 3:])])
        preds[k] = list(zip(boxes, rng.permutation(27)[:9] / 27))  # distinct scores: ranking is unambiguous
    scenes = [SceneBoxes(gts[k], np.array([b for b, _ in preds[k]]), [s for _, s in preds[k]], k) for k in "abc"]
    result = evaluate_box_scenes(scenes)
    expected = [eval_det_reference(gts, preds, t) for t in (0.25, 0.5)]
    np.testing.assert_allclose(result.ap_per_overlap, expected, atol=1e-12)
    assert 0.0 < expected[1] < expected[0] < 1.0


def test_voc_ap_envelope():
    # precision dips then recovers: the envelope lifts the dip. rec [.5, .5, 1], prec [1, .5, 2/3] -> 5/6
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(5 / 6)


def test_pooling_ranks_all_scenes_together_not_averaging_them():
    # a: its TP at 0.5 (AP 1 alone); b: an FP at 0.9, then its TP at 0.4 (AP 1/2 alone). The mean would be
    # 3/4; pooled, ranked FP 0.9 (b), TP 0.5 (a), TP 0.4 (b): rec [0, 1/2, 1], prec [0, 1/2, 2/3]: AP 2/3
    a = SceneBoxes(np.array([UNIT]), np.array([UNIT]), [0.5], "a")
    b = SceneBoxes(np.array([UNIT]), np.array([FAR, UNIT]), [0.9, 0.4], "b")
    assert evaluate_box_scenes([a]).ap50 == pytest.approx(1.0)
    assert evaluate_box_scenes([b]).ap50 == pytest.approx(0.5)
    pooled = evaluate_box_scenes([a, b])
    assert pooled.ap25 == pytest.approx(2 / 3) and pooled.ap50 == pytest.approx(2 / 3)
    assert pooled.num_gt == 2 and pooled.num_pred == 3
    np.testing.assert_allclose(pooled.max_recall, [1.0, 1.0])
