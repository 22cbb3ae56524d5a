"""SAM's automatic mask generator and its utilities, driven by a fake predictor whose answers are known."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from scene.datasets import Frame
from segment2d.amg import (
    MaskData,
    area_from_rle,
    batched_nms,
    build_all_layer_point_grids,
    build_point_grid,
    calculate_stability_score,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_to_rle,
    masks_to_boxes,
    nms,
    remove_small_regions,
    rle_to_mask,
    uncrop_masks,
)
from segment2d.automatic import AMGConfig, AutomaticMaskGenerator, PromptablePredictor, postprocess_small_regions
from segment2d.types import MaskGenerator, boxes_from_masks


# ---------------------------------------------------------------- the fake model


class FakePredictor:
    """Segments by the label stored in the red channel: every mask of a point prompt is its label's region.

    Logits are +10 on the region. Off the region they are -10, or -0.5 for labels listed as ``unstable``
    (inside the +/-1 stability band), so their stability score is region area / crop area.
    ``iou`` maps label -> predicted IoU (default 0.99).
    """

    mask_threshold = 0.0

    def __init__(self, iou: dict | None = None, unstable=(), n_masks: int = 3) -> None:
        self.iou = iou or {}
        self.unstable = set(unstable)
        self.n_masks = n_masks
        self.labels: torch.Tensor | None = None
        self.image_shapes: list[tuple] = []
        self.batch_sizes: list[int] = []

    def set_image(self, image: np.ndarray) -> None:
        self.labels = torch.from_numpy(image[..., 0].astype(np.int64))
        self.image_shapes.append(image.shape)

    def reset_image(self) -> None:
        self.labels = None

    def predict_torch(self, point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True, return_logits=False):
        assert self.labels is not None and multimask_output and return_logits
        h, w = self.labels.shape
        n = point_coords.shape[0]
        self.batch_sizes.append(n)
        x = point_coords[:, 0, 0].floor().long().clamp(0, w - 1)
        y = point_coords[:, 0, 1].floor().long().clamp(0, h - 1)
        ids = self.labels[y, x]
        inside = self.labels[None] == ids[:, None, None]
        outside = torch.tensor([-0.5 if int(i) in self.unstable else -10.0 for i in ids])
        logits = torch.where(inside, torch.tensor(10.0), outside[:, None, None])
        iou = torch.tensor([self.iou.get(int(i), 0.99) for i in ids], dtype=torch.float32)
        c = self.n_masks
        return logits[:, None].expand(n, c, h, w).clone(), iou[:, None].expand(n, c).clone(), torch.zeros(n, c, 256, 256)


def image_of(labels: np.ndarray) -> np.ndarray:
    return np.stack([labels, np.zeros_like(labels), np.zeros_like(labels)], axis=-1).astype(np.uint8)


def four_rects() -> np.ndarray:
    """64 x 96 labels: background 0 and rectangles 1-4, each hit by the 8 x 8 default-style grid."""
    labels = np.zeros((64, 96), np.uint8)
    labels[8:24, 8:28] = 1
    labels[8:24, 40:60] = 2
    labels[36:56, 8:30] = 3
    labels[36:56, 44:70] = 4
    return labels


def grid_config(**overrides) -> AMGConfig:
    return AMGConfig(points_per_side=8, **overrides)


def labels_found(masks: np.ndarray, labels: np.ndarray) -> list[int]:
    """The label each output mask equals exactly (fails if a mask is not exactly one region)."""
    found = []
    for mask in masks:
        ids = np.unique(labels[mask])
        assert len(ids) == 1 and np.array_equal(mask, labels == ids[0]), f"mask is not one whole region: {ids}"
        found.append(int(ids[0]))
    return found


# ---------------------------------------------------------------- grids and crops


def test_point_grid_centres_cells_with_x_fastest():
    grid = build_point_grid(4)
    assert grid.shape == (16, 2)
    np.testing.assert_allclose(np.unique(grid[:, 0]), [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(grid[:4], [[0.125, 0.125], [0.375, 0.125], [0.625, 0.125], [0.875, 0.125]])
    layers = build_all_layer_point_grids(32, 2, 2)
    assert [len(g) for g in layers] == [32 * 32, 16 * 16, 8 * 8]
    with pytest.raises(ValueError, match="no points"):
        build_all_layer_point_grids(2, 2, 2)


def test_crop_boxes_match_hand_computed_layers():
    boxes, layers = generate_crop_boxes((480, 640), 0, 512 / 1500)
    assert boxes.tolist() == [[0, 0, 640, 480]] and layers.tolist() == [0]
    # layer 1: overlap int(512/1500*480) = 163, crop 402 x 322, origins x 0/239, y 0/159
    boxes, layers = generate_crop_boxes((480, 640), 2, 512 / 1500)
    assert boxes[1:5].tolist() == [[0, 0, 402, 322], [0, 159, 402, 480], [239, 0, 640, 322], [239, 159, 640, 480]]
    # layer 2: overlap 81, crop 221 x 181, origins x 0/140/280/420, y 0/100/200/300
    x0s, y0s, x1s, y1s = [0, 140, 280, 420], [0, 100, 200, 300], [221, 361, 501, 640], [181, 281, 381, 480]
    expected = [[x0s[i], y0s[j], x1s[i], y1s[j]] for i in range(4) for j in range(4)]
    assert boxes[5:].tolist() == expected
    assert layers.tolist() == [0] + [1] * 4 + [2] * 16


# ---------------------------------------------------------------- scores, boxes, NMS


def test_stability_score_on_hand_made_logits():
    logits = torch.tensor([[[2.0, 0.5, -0.5], [3.0, -2.0, 1.5], [-1.5, 0.2, 5.0]]])
    # > 1: {2, 3, 1.5, 5} = 4 pixels; > -1: all but {-2, -1.5} = 7 pixels
    assert calculate_stability_score(logits, 0.0, 1.0).item() == pytest.approx(4 / 7)
    # shifting the threshold to 0.4: > 1.4 -> 4 pixels; > -0.6 -> {2, .5, -.5, 3, 1.5, .2, 5} = 7
    assert calculate_stability_score(logits, 0.4, 1.0).item() == pytest.approx(4 / 7)
    assert calculate_stability_score(logits, 0.0, 0.3).item() == pytest.approx(5 / 6)  # 0.2 is in the band
    assert calculate_stability_score(torch.full((1, 2, 2), -5.0), 0.0, 1.0).item() == 0.0


def test_masks_to_boxes_agrees_with_boxes_from_masks():
    rng = np.random.default_rng(0)
    masks = rng.random((20, 13, 17)) > 0.97
    masks[3] = False
    np.testing.assert_array_equal(masks_to_boxes(torch.from_numpy(masks)).numpy(), boxes_from_masks(masks))


def reference_nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union

    kept = []
    for i in sorted(range(len(boxes)), key=lambda k: -scores[k]):
        if all(iou(boxes[i], boxes[j]) <= thresh for j in kept):
            kept.append(i)
    return kept


def random_boxes(rng, n: int) -> np.ndarray:
    xy = rng.random((n, 2)) * 100
    wh = 2 + rng.random((n, 2)) * 40
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


@pytest.mark.parametrize("thresh", [0.2, 0.5, 0.7])
def test_nms_matches_brute_force_reference(thresh):
    rng = np.random.default_rng(int(thresh * 10))
    boxes, scores = random_boxes(rng, 300), rng.random(300).astype(np.float32)
    kept = nms(torch.from_numpy(boxes), torch.from_numpy(scores), thresh)
    assert kept.tolist() == reference_nms(boxes.astype(np.float64), scores, thresh)
    assert 10 < len(kept) < 300


def test_batched_nms_suppresses_only_within_a_category():
    rng = np.random.default_rng(5)
    boxes, scores = random_boxes(rng, 240), rng.random(240).astype(np.float32)
    cats = rng.integers(0, 4, 240)
    kept = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(cats), 0.5).tolist()
    expected = []
    for c in range(4):
        idx = np.flatnonzero(cats == c)
        expected += [int(idx[k]) for k in reference_nms(boxes[idx].astype(np.float64), scores[idx], 0.5)]
    assert kept == sorted(expected, key=lambda k: -scores[k])
    assert len(kept) > len(nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5))


def test_nms_of_no_boxes_is_empty():
    assert nms(torch.zeros((0, 4)), torch.zeros(0), 0.5).shape == (0,)


# ---------------------------------------------------------------- RLE


def reference_rle(mask: np.ndarray) -> list[int]:
    """pycocotools semantics written the slow way: column-major runs, starting with the count of zeros."""
    flat = mask.T.ravel().tolist()
    counts = [len(list(run)) for _, run in itertools.groupby(flat)]
    return counts if not flat[0] else [0] + counts


def test_rle_hand_example_is_column_major_and_starts_with_zeros():
    mask = np.array([[0, 1], [1, 1], [0, 0]], bool)  # columns: 0 1 0 | 1 1 0
    assert mask_to_rle(mask[None]) == [{"size": [3, 2], "counts": [1, 1, 1, 2, 1]}]
    assert mask_to_rle(~mask[None])[0]["counts"] == [0, 1, 1, 1, 2, 1]


def test_rle_round_trip_and_area_on_random_masks():
    rng = np.random.default_rng(1)
    masks = rng.random((12, 9, 14)) > rng.random((12, 1, 1))
    masks[0], masks[1] = False, True
    rles = mask_to_rle(torch.from_numpy(masks))
    for mask, rle in zip(masks, rles):
        assert rle["size"] == [9, 14]
        assert rle["counts"] == reference_rle(mask)
        np.testing.assert_array_equal(rle_to_mask(rle), mask)
        assert area_from_rle(rle) == int(mask.sum())


def test_rle_decoding_rejects_bad_counts():
    with pytest.raises(ValueError, match="sum to h\\*w"):
        rle_to_mask({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(ValueError, match="uncompressed RLE"):
        rle_to_mask({"counts": [4]})


# ---------------------------------------------------------------- crops and small regions


def test_box_near_crop_edge_ignores_image_edges():
    crop, image = [93, 53, 240, 160], [0, 0, 240, 160]
    boxes = torch.tensor([[0, 10, 30, 40], [60, 60, 147, 100], [30, 30, 60, 60], [30, 0, 60, 40]], dtype=torch.float32)
    assert is_box_near_crop_edge(boxes, crop, image).tolist() == [True, False, False, True]
    assert not is_box_near_crop_edge(boxes, image, image).any()


def test_uncrop_masks_places_the_crop():
    masks = torch.ones((1, 2, 3), dtype=torch.bool)
    full = uncrop_masks(masks, [4, 1, 7, 3], 5, 9)
    assert full.shape == (1, 5, 9) and full.sum() == 6 and full[0, 1:3, 4:7].all()


def rect_with_hole_and_island() -> np.ndarray:
    mask = np.zeros((64, 96), bool)
    mask[10:40, 10:50] = True
    mask[20:23, 20:23] = False  # 9-pixel hole
    mask[50:53, 70:73] = True  # 9-pixel island
    return mask


def test_remove_small_regions_fills_holes_and_drops_islands():
    mask = rect_with_hole_and_island()
    filled, changed = remove_small_regions(mask, 20, "holes")
    assert changed and filled[20:23, 20:23].all() and filled.sum() == mask.sum() + 9
    cleaned, changed = remove_small_regions(filled, 20, "islands")
    assert changed and not cleaned[50:53, 70:73].any() and cleaned.sum() == 30 * 40
    assert remove_small_regions(cleaned, 20, "islands")[1] is False
    only_small = np.zeros((20, 20), bool)
    only_small[2:4, 2:4], only_small[10:13, 10:13] = True, True
    kept, changed = remove_small_regions(only_small, 50, "islands")
    assert changed and kept.sum() == 9 and kept[10:13, 10:13].all()  # the largest survives


def test_postprocess_prefers_the_mask_that_needed_no_change():
    with_island = rect_with_hole_and_island()
    with_island[20:23, 20:23] = True
    clean = with_island.copy()
    clean[50:53, 70:73] = False
    data = MaskData(
        masks=torch.from_numpy(np.stack([with_island, clean])),
        boxes=masks_to_boxes(torch.from_numpy(np.stack([with_island, clean]))),
        iou_preds=torch.tensor([0.99, 0.90]),
    )
    postprocess_small_regions(data, 20, 0.7)
    assert len(data) == 1 and data["iou_preds"].item() == pytest.approx(0.90)
    np.testing.assert_array_equal(data["masks"][0].numpy(), clean)
    assert data["boxes"][0].tolist() == [10, 10, 50, 40]


# ---------------------------------------------------------------- the generator, filter by filter


def test_fake_satisfies_the_protocols():
    generator = AutomaticMaskGenerator(FakePredictor(), grid_config())
    assert isinstance(generator.predictor, PromptablePredictor) and isinstance(generator, MaskGenerator)
    with pytest.raises(TypeError, match="predict_torch"):
        AutomaticMaskGenerator(object())


def test_all_regions_found_exactly_when_every_mask_is_good():
    labels = four_rects()
    result = AutomaticMaskGenerator(FakePredictor(), grid_config()).generate(image_of(labels))
    assert sorted(labels_found(result.masks, labels)) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(result.boxes, boxes_from_masks(result.masks))
    np.testing.assert_allclose(result.extra["stability_score"], 1.0)
    point_labels = labels[result.extra["point_coords"][:, 1].astype(int), result.extra["point_coords"][:, 0].astype(int)]
    assert point_labels.tolist() == labels_found(result.masks, labels)


def test_iou_filter_drops_exactly_the_low_iou_masks():
    labels = four_rects()
    iou = {0: 0.99, 1: 0.95, 2: 0.5, 3: 0.89, 4: 0.87}
    result = AutomaticMaskGenerator(FakePredictor(iou=iou), grid_config()).generate(image_of(labels))
    found = labels_found(result.masks, labels)
    assert found == [0, 1, 3]  # best first
    np.testing.assert_allclose(result.scores, [iou[k] for k in found], rtol=1e-6)
    relaxed = AutomaticMaskGenerator(FakePredictor(iou=iou), grid_config(pred_iou_thresh=0.0)).generate(image_of(labels))
    assert sorted(labels_found(relaxed.masks, labels)) == [0, 1, 2, 3, 4]


def test_stability_filter_drops_exactly_the_unstable_masks():
    labels = four_rects()
    fake = FakePredictor(unstable={2, 4})
    result = AutomaticMaskGenerator(fake, grid_config()).generate(image_of(labels))
    assert sorted(labels_found(result.masks, labels)) == [0, 1, 3]
    kept_all = AutomaticMaskGenerator(FakePredictor(unstable={2, 4}), grid_config(stability_score_thresh=0.0)).generate(
        image_of(labels)
    )
    found = labels_found(kept_all.masks, labels)
    expected = {k: (labels == k).sum() / labels.size if k in (2, 4) else 1.0 for k in range(5)}
    np.testing.assert_allclose(kept_all.extra["stability_score"], [expected[k] for k in found], rtol=1e-6)


def striped_pair() -> tuple[np.ndarray, np.ndarray]:
    """Labels 5 and 6 interleaved column by column: different masks with nearly the same box (IoU 0.9)."""
    labels = np.zeros((64, 96), np.uint8)
    labels[8:24, 40:60] = np.where(np.arange(40, 60) % 2 == 0, 5, 6)[None, :]
    points = np.array([[40.5 / 96, 12 / 64], [41.5 / 96, 12 / 64]])
    return labels, points


def test_box_nms_removes_a_duplicate():
    labels, points = striped_pair()
    fake = FakePredictor(iou={5: 0.97, 6: 0.93}, n_masks=1)
    config = AMGConfig(points_per_side=None, point_grids=[points])
    assert labels_found(AutomaticMaskGenerator(fake, config).generate(image_of(labels)).masks, labels) == [5]
    no_nms = AutomaticMaskGenerator(fake, replace_config(config, box_nms_thresh=1.0)).generate(image_of(labels))
    assert labels_found(no_nms.masks, labels) == [5, 6]


def replace_config(config: AMGConfig, **changes) -> AMGConfig:
    from dataclasses import replace

    return replace(config, **changes)


def crop_scene() -> np.ndarray:
    """160 x 240 labels for one crop layer (crops A [0,0,147,107], B [0,53,147,160], C [93,0,240,107],
    D [93,53,240,160]): 1 lies inside A, 3 inside D, 2 spans all crops, 0 is the background."""
    labels = np.zeros((160, 240), np.uint8)
    labels[20:50, 20:60] = 1
    labels[60:100, 30:210] = 2
    labels[120:150, 160:220] = 3
    return labels


def test_crop_layers_return_full_image_masks_and_drop_masks_cut_by_crops():
    labels = crop_scene()
    fake = FakePredictor()
    result = AutomaticMaskGenerator(fake, grid_config(crop_n_layers=1)).generate(image_of(labels))
    assert fake.image_shapes == [(160, 240, 3)] + [(107, 147, 3)] * 4
    found = labels_found(result.masks, labels)
    assert sorted(found) == [0, 1, 2, 3]
    crop_of = dict(zip(found, result.extra["crop_box"].tolist()))
    assert crop_of[1] == [0, 0, 147, 107]  # the smaller crop wins the cross-crop NMS
    assert crop_of[3] == [93, 53, 240, 160]  # uncropped from an offset crop
    assert crop_of[2] == [0, 0, 240, 160]  # every sub-crop cuts it: only the whole image keeps it
    assert crop_of[0] == [0, 0, 240, 160]
    xy = result.extra["point_coords"].astype(int)
    assert labels[xy[:, 1], xy[:, 0]].tolist() == found


def test_crop_edge_filter_can_be_seen_without_cross_crop_nms():
    labels = crop_scene()
    grids = [np.array([[0.5, 0.01]]), build_point_grid(8)]  # layer 0 prompts only the background
    config = AMGConfig(points_per_side=None, point_grids=grids, crop_n_layers=1, crop_nms_thresh=1.0)
    result = AutomaticMaskGenerator(FakePredictor(), config).generate(image_of(labels))
    found = labels_found(result.masks, labels)
    assert sorted(found) == [0, 1, 3]  # 2 is cut by every sub-crop; the sub-crops' background pieces too
    assert result.extra["crop_box"][found.index(0)].tolist() == [0, 0, 240, 160]


def test_min_mask_region_area_removes_islands_and_fills_holes():
    mask = rect_with_hole_and_island()
    labels = np.where(mask, 7, 0).astype(np.uint8)
    labels[20:23, 20:23] = 8
    config = AMGConfig(points_per_side=None, point_grids=[np.array([[30 / 96, 15 / 64]])])
    raw = AutomaticMaskGenerator(FakePredictor(), config).generate(image_of(labels))
    np.testing.assert_array_equal(raw.masks[0], mask)
    cleaned = AutomaticMaskGenerator(FakePredictor(), replace_config(config, min_mask_region_area=20)).generate(image_of(labels))
    assert len(cleaned) == 1 and cleaned.masks[0].sum() == 30 * 40
    assert cleaned.masks[0][10:40, 10:50].all() and cleaned.boxes[0].tolist() == [10, 10, 50, 40]


def test_batching_does_not_change_the_result():
    labels = four_rects()
    fake = FakePredictor(iou={k: 0.9 + k / 100 for k in range(5)})
    one = AutomaticMaskGenerator(fake, grid_config(points_per_batch=64)).generate(image_of(labels))
    fake.batch_sizes.clear()
    many = AutomaticMaskGenerator(fake, grid_config(points_per_batch=24)).generate(image_of(labels))
    assert fake.batch_sizes == [24, 24, 16]
    np.testing.assert_array_equal(one.masks, many.masks)
    np.testing.assert_array_equal(one.scores, many.scores)


# ---------------------------------------------------------------- outputs


def test_records_in_rle_mode_agree_with_the_mask_set():
    labels = crop_scene()
    generator = AutomaticMaskGenerator(FakePredictor(), grid_config(crop_n_layers=1, output_mode="uncompressed_rle"))
    masks = generator.generate(image_of(labels))
    records = generator.generate_records(image_of(labels))
    assert len(records) == len(masks) == 4
    for i, rec in enumerate(records):
        assert set(rec["segmentation"]) == {"size", "counts"} and rec["segmentation"]["size"] == [160, 240]
        np.testing.assert_array_equal(rle_to_mask(rec["segmentation"]), masks.masks[i])
        assert rec["area"] == masks.areas[i] == area_from_rle(rec["segmentation"])
        x0, y0, x1, y1 = masks.boxes[i]
        assert rec["bbox"] == [x0, y0, x1 - x0, y1 - y0]
        assert rec["predicted_iou"] == pytest.approx(masks.scores[i])
        assert rec["stability_score"] == pytest.approx(masks.extra["stability_score"][i])
        assert rec["point_coords"] == [masks.extra["point_coords"][i].tolist()]
        cx0, cy0, cx1, cy1 = masks.extra["crop_box"][i].tolist()
        assert rec["crop_box"] == [cx0, cy0, cx1 - cx0, cy1 - cy0]


def test_binary_records_and_frame_input():
    labels = four_rects()
    image = image_of(labels)
    generator = AutomaticMaskGenerator(FakePredictor(), grid_config())
    frame = Frame(0, 0.0, image, np.ones((64, 96), np.float32), np.eye(3), np.eye(4))
    from_frame = generator.generate(frame)
    records = generator.generate_records(image)
    assert len(records) == len(from_frame) == 5
    for rec, mask in zip(records, from_frame.masks):
        assert rec["segmentation"].dtype == bool
        np.testing.assert_array_equal(rec["segmentation"], mask)


@pytest.mark.parametrize("crop_n_layers", [0, 1])
def test_empty_result_when_nothing_passes(crop_n_layers):
    generator = AutomaticMaskGenerator(FakePredictor(iou={0: 0.1}), grid_config(crop_n_layers=crop_n_layers))
    result = generator.generate(np.zeros((20, 30, 3), np.uint8))
    assert len(result) == 0 and result.image_size == (20, 30) and result.extra["crop_box"].shape == (0, 4)
    assert generator.generate_records(np.zeros((20, 30, 3), np.uint8)) == []


def test_bad_inputs_raise_clear_errors():
    generator = AutomaticMaskGenerator(FakePredictor(), grid_config())
    with pytest.raises(ValueError, match="image_or_frame"):
        generator.generate(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="output_mode"):
        AMGConfig(output_mode="coco_rle")
    with pytest.raises(ValueError, match="point_grids"):
        AMGConfig(point_grids=[build_point_grid(2)], crop_n_layers=1)

    class WrongSize(FakePredictor):
        def predict_torch(self, *args, **kwargs):
            masks, iou, low = super().predict_torch(*args, **kwargs)
            return masks[..., :-1], iou, low

    with pytest.raises(ValueError, match="predict_torch returned masks of shape"):
        AutomaticMaskGenerator(WrongSize(), grid_config()).generate(image_of(four_rects()))


# ---------------------------------------------------------------- the fast batch step against SAM's original one


class OriginalBatchAMG(AutomaticMaskGenerator):
    """The generator with SAM's batch step as first written here: full-resolution float logits for every mask
    of the batch (``full_res_logits``), then IoU filter, stability, threshold, boxes, crop-edge filter."""

    def full_res_logits(self, coords, labels):
        logits, iou_preds, _ = self.predictor.predict_torch(coords, labels, multimask_output=True, return_logits=True)
        return logits, iou_preds

    def _process_batch(self, points, crop_box, image_size):
        cfg = self.config
        coords = torch.as_tensor(points, dtype=torch.float32)[:, None, :]
        labels = torch.ones((len(points), 1), dtype=torch.int64)
        logits, iou_preds = self.full_res_logits(coords, labels)
        n_out = logits.shape[1]
        data = MaskData(
            logits=logits.flatten(0, 1),
            iou_preds=iou_preds.flatten(0, 1).to(torch.float32),
            points=torch.as_tensor(np.repeat(points, n_out, axis=0), dtype=torch.float32),
        )
        if cfg.pred_iou_thresh > 0.0:
            data.filter(data["iou_preds"] > cfg.pred_iou_thresh)
        threshold = float(self.predictor.mask_threshold)
        data["stability_score"] = calculate_stability_score(data["logits"], threshold, cfg.stability_score_offset)
        data["masks"] = data["logits"] > threshold
        del data["logits"]
        if cfg.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= cfg.stability_score_thresh)
        data["boxes"] = masks_to_boxes(data["masks"])
        image_box = [0, 0, image_size[1], image_size[0]]
        data.filter(~is_box_near_crop_edge(data["boxes"], crop_box, image_box, cfg.crop_edge_tolerance))
        return MaskData(**{k: data[k] for k in ("masks", "boxes", "iou_preds", "stability_score", "points")})


def assert_same_mask_sets(got, expected) -> None:
    assert len(got) == len(expected) > 0
    np.testing.assert_array_equal(got.masks, expected.masks)
    np.testing.assert_array_equal(got.scores, expected.scores)
    np.testing.assert_array_equal(got.boxes, expected.boxes)
    for key in expected.extra:
        np.testing.assert_array_equal(got.extra[key], expected.extra[key], err_msg=key)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"crop_n_layers": 1}, {"points_per_batch": 7, "min_mask_region_area": 30}, {"pred_iou_thresh": 0.0}],
)
def test_fast_batch_step_equals_the_original_on_the_fake(overrides):
    labels = crop_scene()
    labels[5:15, 100:120] = 4
    iou = {0: 0.99, 1: 0.95, 2: 0.93, 3: 0.5, 4: 0.97}
    config = grid_config(**overrides)
    fast = AutomaticMaskGenerator(FakePredictor(iou=iou, unstable={4}), config)
    fast.logit_chunk = 5  # not a divisor of the batch: the last chunk is partial
    original = OriginalBatchAMG(FakePredictor(iou=iou, unstable={4}), config)
    assert_same_mask_sets(fast.generate(image_of(labels)), original.generate(image_of(labels)))


def test_threshold_logits_equals_whole_batch_thresholding():
    from segment2d.automatic import threshold_logits

    rng = torch.Generator().manual_seed(3)
    logits = torch.randn((11, 17, 23), generator=rng) * 2 + torch.linspace(-3, 3, 11)[:, None, None]
    logits[4] = -5.0  # empty even at the low threshold: stability 0
    rows = torch.tensor([0, 2, 3, 4, 7, 10])
    for chunk in (1, 4, 64):
        masks, stability = threshold_logits(lambda r: logits[r], rows, (17, 23), 0.3, 1.0, chunk)
        assert masks.dtype == torch.bool
        torch.testing.assert_close(masks, logits[rows] > 0.3, rtol=0, atol=0)
        torch.testing.assert_close(stability, calculate_stability_score(logits[rows], 0.3, 1.0), rtol=0, atol=0)
    masks, stability = threshold_logits(lambda r: logits[r], torch.zeros(0, dtype=torch.int64), (17, 23), 0.0, 1.0, 4)
    assert masks.shape == (0, 17, 23) and stability.shape == (0,)
    with pytest.raises(ValueError, match="expected \\(17, 22\\)"):
        threshold_logits(lambda r: logits[r], rows, (17, 22), 0.0, 1.0, 4)


# ---------------------------------------------------------------- the fast path on the tiny reference SAM


REF = Path(__file__).resolve().parents[1].parent / "shared" / "sam_reference"
KITCHEN = REF.parent / "data" / "7scenes_redkitchen" / "frame-000000.color.jpg"


def shifted_iou_predictor(model):
    """SamPredictor whose IoU predictions are raised by 0.1: the random-weight tiny SAM predicts IoUs just
    under 0, so that the IoU filter keeps some masks and drops others."""
    from segment2d.predictor import SamPredictor

    class ShiftedIoU(SamPredictor):
        def predict_low_res(self, *args, **kwargs):
            low_res, iou = super().predict_low_res(*args, **kwargs)
            return low_res, iou + 0.1

    return ShiftedIoU(model)


class InterpolatedOriginalAMG(OriginalBatchAMG):
    """The original batch step on SAM, with SAM's own post-processing (F.interpolate twice)."""

    def full_res_logits(self, coords, labels):
        predictor = self.predictor
        low_res, iou_preds = predictor.predict_low_res(coords, labels, multimask_output=True)
        return predictor.model.postprocess_masks(low_res, predictor.input_size, predictor.original_size), iou_preds


@pytest.mark.skipif(not KITCHEN.is_file(), reason=f"{KITCHEN} not found")
def test_fast_path_on_tiny_sam_matches_the_original_step():
    from PIL import Image

    from segment2d.automatic import LowResPredictor
    from segment2d.build import load_sam

    model = load_sam(REF / "tiny_sam_state_dict.pt")
    image = np.asarray(Image.open(KITCHEN).convert("RGB"))[::2, ::2].copy()  # 240 x 320 keeps the test quick
    # random weights: logits within +/-0.4, so a small stability offset; IoUs shifted to straddle the threshold;
    # the masks are large and their boxes nearly all the image, so box NMS is off to keep many to compare
    config = AMGConfig(
        points_per_side=4, pred_iou_thresh=0.06, stability_score_thresh=0.6, stability_score_offset=0.02, box_nms_thresh=1.0
    )
    predictor = shifted_iou_predictor(model)
    assert isinstance(predictor, LowResPredictor)
    fast = AutomaticMaskGenerator(predictor, config).generate(image)
    original = InterpolatedOriginalAMG(predictor, config).generate(image)
    n_prompts = 3 * 16
    assert 5 < len(original) < n_prompts, len(original)
    assert len(fast) == len(original)
    np.testing.assert_allclose(fast.scores, original.scores, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fast.extra["stability_score"], original.extra["stability_score"], rtol=0, atol=1e-3)
    np.testing.assert_array_equal(fast.extra["point_coords"], original.extra["point_coords"])
    disagree = (fast.masks != original.masks).mean()
    assert disagree < 1e-4  # pixels whose logit is within float rounding of the threshold
    np.testing.assert_allclose(fast.boxes, original.boxes, rtol=0, atol=1.0)


@pytest.mark.skipif(not KITCHEN.is_file(), reason=f"{KITCHEN} not found")
def test_sam_mask_generator_takes_a_bf16_encoder_by_name():
    from PIL import Image

    from segment2d.automatic import SamMaskGenerator

    image = np.asarray(Image.open(KITCHEN).convert("RGB"))[::2, ::2].copy()
    options = dict(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    checkpoint = REF / "tiny_sam_state_dict.pt"
    fp32 = SamMaskGenerator(checkpoint, encoder_dtype="float32", **options)
    bf16 = SamMaskGenerator(checkpoint, encoder_dtype="bfloat16", **options)
    assert bf16.generator.predictor.encoder_dtype == torch.bfloat16
    a, b = fp32.generate(image), bf16.generate(image)
    assert len(a) == len(b) == 27  # filters off: 3 masks for each of the 9 prompts
    masks_a = torch.from_numpy(a.masks.reshape(len(a), -1)).to(torch.float32)
    masks_b = torch.from_numpy(b.masks.reshape(len(b), -1)).to(torch.float32)
    inter = masks_a @ masks_b.T
    union = masks_a.sum(1)[:, None] + masks_b.sum(1)[None] - inter
    best = (inter / union.clamp(min=1)).amax(1)
    assert float(best.min()) > 0.95  # measured 0.996: the bf16 encoder moves few pixels across the threshold
