"""SamPredictor: original-image coordinates in, original-size masks out; batched == per-prompt."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segment2d.build import load_sam
from segment2d.predictor import SamPredictor

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REF = SHARED / "sam_reference"
KITCHEN = SHARED / "data" / "7scenes_redkitchen" / "frame-000000.color.jpg"

pytestmark = pytest.mark.skipif(not REF.is_dir(), reason=f"reference data not found at {REF}")


@pytest.fixture(scope="module")
def model():
    return load_sam(REF / "tiny_sam_state_dict.pt")


@pytest.fixture(scope="module")
def kitchen(model):
    """Predictor with a real 480 x 640 image set (resized to 768 x 1024 inside)."""
    if not KITCHEN.is_file():
        pytest.skip(f"{KITCHEN} not found")
    predictor = SamPredictor(model, device="cpu")
    predictor.set_image(np.asarray(Image.open(KITCHEN).convert("RGB")))
    return predictor


def test_predictor_reproduces_official_reference(model):
    ref = np.load(REF / "tiny_sam_reference.npz")
    predictor = SamPredictor(model)
    predictor.set_image(np.ascontiguousarray(ref["image_chw_uint8"].transpose(1, 2, 0)))  # 1024 x 1024: no resize
    np.testing.assert_allclose(predictor.get_image_embedding().numpy(), ref["image_embedding"], rtol=0, atol=1e-4)
    _, iou, low_res = predictor.predict(ref["points_xy"][0], ref["point_labels"][0], box=ref["box_xyxy"][0])
    np.testing.assert_allclose(low_res, ref["points_box_multimask1_lowres_logits"][0], rtol=0, atol=1e-4)
    np.testing.assert_allclose(iou, ref["points_box_multimask1_iou"][0], rtol=0, atol=1e-4)


def test_masks_come_back_at_original_size(kitchen):
    assert kitchen.is_image_set and kitchen.original_size == (480, 640) and kitchen.input_size == (768, 1024)
    masks, iou, low_res = kitchen.predict(np.array([[320.0, 240.0]]), np.array([1]))
    assert masks.shape == (3, 480, 640) and masks.dtype == bool
    assert iou.shape == (3,) and low_res.shape == (3, 256, 256)
    logits, _, _ = kitchen.predict(np.array([[320.0, 240.0]]), np.array([1]), multimask_output=False, return_logits=True)
    assert logits.shape == (1, 480, 640) and logits.dtype == np.float32
    single, _, _ = kitchen.predict(np.array([[320.0, 240.0]]), np.array([1]), multimask_output=False)
    np.testing.assert_array_equal(single, logits > kitchen.mask_threshold)


def test_prompts_are_taken_in_original_pixels(kitchen, model):
    points, labels, box = np.array([[100.0, 50.0], [600.0, 400.0]]), np.array([1, 0]), np.array([40.0, 30.0, 500.0, 470.0])
    _, iou, low_res = kitchen.predict(points, labels, box)
    scale = 1024 / 640  # 480 x 640 -> 768 x 1024
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(
            (torch.tensor(points[None] * scale, dtype=torch.float32), torch.tensor(labels[None])),
            torch.tensor(box[None] * scale, dtype=torch.float32),
            None,
        )
        expected, expected_iou = model.mask_decoder(kitchen.features, model.prompt_encoder.get_dense_pe(), sparse, dense, True)
    np.testing.assert_allclose(low_res, expected[0].numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(iou, expected_iou[0].numpy(), rtol=0, atol=1e-5)


def test_batched_predict_torch_agrees_with_per_prompt_predict(kitchen):
    rng = np.random.default_rng(0)
    points = rng.uniform([0, 0], [640, 480], size=(4, 2, 2)).astype(np.float32)
    labels = np.array([[1, 0], [1, 1], [1, 0], [0, 1]])
    corners = rng.uniform([0, 0], [640, 480], size=(4, 2, 2))
    boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1).astype(np.float32)
    masks_b, iou_b, low_b = kitchen.predict_torch(torch.from_numpy(points), torch.from_numpy(labels), torch.from_numpy(boxes))
    logits_b, _, _ = kitchen.predict_torch(torch.from_numpy(points), torch.from_numpy(labels), torch.from_numpy(boxes), return_logits=True)
    assert masks_b.shape == (4, 3, 480, 640) and masks_b.dtype == torch.bool
    assert iou_b.shape == (4, 3) and low_b.shape == (4, 3, 256, 256)
    for i in range(4):
        masks, iou, low = kitchen.predict(points[i], labels[i], boxes[i])
        np.testing.assert_allclose(low, low_b[i].numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(iou, iou_b[i].numpy(), rtol=0, atol=1e-4)
        decided = np.abs(logits_b[i].numpy()) > 1e-3  # pixels not on a threshold tie
        np.testing.assert_array_equal(masks[decided], masks_b[i].numpy()[decided])


def test_mask_input_round_trip_changes_nothing_in_shape(kitchen):
    _, _, low = kitchen.predict(np.array([[320.0, 240.0]]), np.array([1]), multimask_output=False)
    masks, iou, low2 = kitchen.predict(np.array([[320.0, 240.0]]), np.array([1]), mask_input=low, multimask_output=False)
    assert masks.shape == (1, 480, 640) and low2.shape == (1, 256, 256)
    assert not np.allclose(low, low2)  # the mask prompt is used


def test_bf16_encoder_stays_close_and_decoder_is_float32(model, kitchen):
    predictor = SamPredictor(model, encoder_dtype=torch.bfloat16)
    predictor.set_image(np.asarray(Image.open(KITCHEN).convert("RGB")))
    assert predictor.features.dtype == torch.float32
    err = (predictor.features - kitchen.features).norm() / kitchen.features.norm()
    assert float(err) < 0.05
    _, iou, low = predictor.predict(np.array([[320.0, 240.0]]), np.array([1]))
    assert low.dtype == np.float32 and iou.dtype == np.float32


def test_predictor_rejects_bad_input(model, kitchen):
    fresh = SamPredictor(model)
    with pytest.raises(RuntimeError, match="set_image"):
        fresh.predict(np.array([[1.0, 1.0]]), np.array([1]))
    with pytest.raises(ValueError, match="image: expected H x W x 3 uint8"):
        fresh.set_image(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="image: expected H x W x 3 uint8"):
        fresh.set_image(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="point_labels"):
        kitchen.predict(np.array([[1.0, 1.0]]))
    with pytest.raises(ValueError, match="point_labels: expected shape"):
        kitchen.predict(np.array([[1.0, 1.0], [2.0, 2.0]]), np.array([1]))
    with pytest.raises(ValueError, match="box: expected shape"):
        kitchen.predict(box=np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="batch sizes differ"):
        kitchen.predict_torch(torch.zeros(2, 1, 2), torch.ones(2, 1), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="encoder_dtype"):
        SamPredictor(model, encoder_dtype=torch.int8)


def test_reset_image(model):
    predictor = SamPredictor(model)
    predictor.set_image(np.zeros((20, 30, 3), np.uint8))
    assert predictor.is_image_set and predictor.original_size == (20, 30) and predictor.input_size == (683, 1024)
    predictor.reset_image()
    assert not predictor.is_image_set and predictor.features is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_predictor_matches_cpu(model, kitchen):
    predictor = SamPredictor(load_sam(REF / "tiny_sam_state_dict.pt", device="cuda"))
    assert predictor.device.type == "cuda"
    predictor.set_image(np.asarray(Image.open(KITCHEN).convert("RGB")))
    points, labels = torch.tensor([[[320.0, 240.0]]]), torch.tensor([[1]])
    masks, iou, low = predictor.predict_torch(points, labels)
    _, iou_cpu, low_cpu = kitchen.predict_torch(points, labels)
    assert masks.device.type == "cuda" and masks.shape == (1, 3, 480, 640)
    torch.testing.assert_close(low.cpu(), low_cpu, rtol=0, atol=2e-3)
    torch.testing.assert_close(iou.cpu(), iou_cpu, rtol=0, atol=2e-3)


# ---------------------------------------------------------------- fast post-processing


@pytest.mark.parametrize("in_size, out_size", [(256, 1024), (768, 480), (1024, 640), (683, 20), (5, 5), (1, 3)])
def test_bilinear_matrix_is_interpolate(in_size, out_size):
    from segment2d.modeling.upsample import bilinear_matrix

    x = torch.randn(3, 1, 1, in_size, generator=torch.Generator().manual_seed(in_size))
    expected = torch.nn.functional.interpolate(x, (1, out_size), mode="bilinear", align_corners=False)
    got = (x.to(torch.float64) @ bilinear_matrix(in_size, out_size).T).to(torch.float32)
    # float32 source coordinates near 700 are exact to ~6e-5 px: that is the rounding left
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(bilinear_matrix(in_size, out_size).sum(1).numpy(), 1.0, atol=1e-12)


@pytest.mark.parametrize("original_size", [(480, 640), (600, 750), (640, 480), (107, 147), (20, 30)])
def test_upscale_logits_equals_sam_postprocessing(model, original_size):
    predictor = SamPredictor(model)
    predictor.set_image(np.zeros((*original_size, 3), np.uint8))
    low_res = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(7)) * 4
    expected = model.postprocess_masks(low_res, predictor.input_size, predictor.original_size)
    got = predictor.upscale_logits(low_res)
    assert got.shape == expected.shape == (2, 3, *original_size) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    decided = expected.abs() > 1e-3
    assert torch.equal((got > 0)[decided], (expected > 0)[decided])


def test_predict_low_res_is_predict_torch_before_upsampling(kitchen):
    points = torch.tensor([[[320.0, 240.0]], [[100.0, 400.0]]])
    labels = torch.ones((2, 1), dtype=torch.int64)
    low_res, iou = kitchen.predict_low_res(points, labels)
    logits, iou_t, low_t = kitchen.predict_torch(points, labels, return_logits=True)
    assert torch.equal(low_res, low_t) and torch.equal(iou, iou_t)
    torch.testing.assert_close(logits, kitchen.upscale_logits(low_res), rtol=0, atol=0)
    official = kitchen.model.postprocess_masks(low_res, kitchen.input_size, kitchen.original_size)
    torch.testing.assert_close(logits, official, rtol=0, atol=1e-4)
