import numpy as np
import pytest

from scene.eval.masks2d import DEFAULT_THRESHOLDS, MaskRecall, mask_recall
from segment2d.types import MaskSet


def two_instance_image() -> np.ndarray:
    """10 x 10: instance 7 in the top-left 5 x 5 block, instance 9 in the bottom-right one, void elsewhere."""
    gt = np.zeros((10, 10), np.int32)
    gt[:5, :5] = 7
    gt[5:, 5:] = 9
    return gt


def test_hand_worked_recall():
    gt = two_instance_image()
    exact = gt == 7
    partial = np.zeros_like(exact)
    partial[5:, 5:9] = True  # 20 of instance 9's 25 pixels
    partial[5, 9] = True  # 21 pixels, all inside: IoU 21 / 25 = 0.84
    result = mask_recall(gt, np.stack([partial, exact]))
    np.testing.assert_array_equal(result.gt_ids, [7, 9])
    np.testing.assert_allclose(result.best_iou, [1.0, 0.84])
    np.testing.assert_array_equal(result.best_mask, [1, 0])
    # instance 7 is recalled at all ten thresholds, instance 9 at 0.50..0.80 (seven of them)
    expected_recall = np.where(DEFAULT_THRESHOLDS <= 0.84, 1.0, 0.5)
    np.testing.assert_allclose(result.recall, expected_recall)
    assert result.average_recall == pytest.approx((10 + 7) / 20)
    assert result.mean_best_iou == pytest.approx((1.0 + 0.84) / 2)


def test_prediction_pixels_on_void_count_as_spill():
    gt = two_instance_image()
    spill = gt == 7
    spill[0, 5:10] = True  # five void pixels: IoU 25 / 30
    result = mask_recall(gt, spill[None])
    assert result.best_iou[0] == pytest.approx(25 / 30)
    assert result.best_iou[1] == 0.0 and result.best_mask[1] == -1


def test_min_area_skips_small_instances():
    gt = two_instance_image()
    gt[0, 9] = 3  # a one-pixel instance
    result = mask_recall(gt, (gt == 7)[None], min_area=2)
    np.testing.assert_array_equal(result.gt_ids, [7, 9])
    assert mask_recall(gt, (gt == 7)[None]).num_gt == 3


def test_best_iou_takes_the_best_of_overlapping_masks():
    gt = two_instance_image()
    whole = np.ones((10, 10), bool)  # covers both: IoU 25 / 100 each
    top = np.zeros((10, 10), bool)
    top[:5, :] = True  # 25 / 50 with instance 7, nothing of 9
    result = mask_recall(gt, MaskSet.from_masks(np.stack([whole, top])))
    np.testing.assert_allclose(result.best_iou, [0.5, 0.25])
    np.testing.assert_array_equal(result.best_mask, [1, 0])


def test_empty_inputs():
    gt = two_instance_image()
    none = mask_recall(gt, np.zeros((0, 10, 10), bool))
    np.testing.assert_array_equal(none.best_iou, [0.0, 0.0])
    assert none.average_recall == 0.0
    no_gt = mask_recall(np.zeros((10, 10), np.int32), np.ones((1, 10, 10), bool))
    assert no_gt.num_gt == 0 and np.isnan(no_gt.average_recall) and np.isnan(no_gt.mean_best_iou)


def brute_force_best_iou(gt: np.ndarray, masks: np.ndarray, ids: np.ndarray) -> np.ndarray:
    flat = masks.reshape(len(masks), -1)
    best = []
    for k in ids:
        inside = gt.ravel() == k
        inter = (flat & inside).sum(1)
        union = (flat | inside).sum(1)
        best.append((inter / union).max())
    return np.array(best)


@pytest.mark.parametrize("id_offset", [0, 10**9])  # small ids use a lookup table, huge ones np.unique
def test_matches_brute_force_on_random_blobs(id_offset):
    rng = np.random.default_rng(3)
    h, w = 37, 150  # width not a multiple of 64: exercises the padded words
    coarse = rng.integers(-1, 12, size=(5, 10))
    gt = np.kron(coarse, np.ones((8, 15), np.int64))[:h, :w]
    gt = np.where(gt > 0, gt + id_offset, gt)
    masks = rng.random((30, h, w)) < 0.02
    masks |= np.stack([gt == gt.flat[k] for k in rng.integers(0, h * w, 30)]) & (rng.random((30, h, w)) < 0.9)
    result = mask_recall(gt, masks)
    np.testing.assert_array_equal(result.gt_ids, np.unique(gt[gt > 0]))
    np.testing.assert_allclose(result.best_iou, brute_force_best_iou(gt, masks, result.gt_ids))


def test_concatenate_pools_instances():
    gt = two_instance_image()
    a = mask_recall(gt, (gt == 7)[None])
    b = mask_recall(gt, (gt > 0)[None])  # IoU 0.5 with each
    pooled = MaskRecall.concatenate([a, b])
    np.testing.assert_allclose(pooled.best_iou, [1.0, 0.0, 0.5, 0.5])
    assert pooled.recall[0] == pytest.approx(3 / 4)


def test_bad_input_is_named():
    gt = two_instance_image()
    with pytest.raises(ValueError, match="masks must be N x 10 x 10"):
        mask_recall(gt, np.zeros((1, 10, 11), bool))
    with pytest.raises(ValueError, match="bool"):
        mask_recall(gt, np.zeros((1, 10, 10), np.uint8))
    with pytest.raises(ValueError, match="gt_instances"):
        mask_recall(gt.astype(np.float32), np.zeros((1, 10, 10), bool))


def test_image_without_void():
    gt = np.full((6, 70), 5, np.int32)
    gt[:, 60:] = 6
    result = mask_recall(gt, np.stack([gt == 5, np.ones_like(gt, bool)]))
    np.testing.assert_allclose(result.best_iou, [1.0, 60 / 420])
