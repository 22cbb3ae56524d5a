"""The CUDA paths of SAM 2.1 and HQ-SAM (skipped without a GPU): the same outputs as on the CPU in fp32,
and the encoder under bf16 / fp16 autocast giving nearly the same masks. Random seeded weights: these
prove the device plumbing, not mask quality. The automatic generators pick CUDA and autocast by default.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from segment2d.build import build_sam
from segment2d.predictor import SamPredictor
from segment2d.sam2 import build_sam2
from segment2d.sam2.predictor import Sam2ImagePredictor
from segment2d.sam2.video import Sam2VideoPredictor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
HALF = (torch.bfloat16, torch.float16)


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
    return np.kron(low, np.ones((20, 20, 1), np.uint8))  # 240 x 320: blocks, structure the masks can follow


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a > 0) == (b > 0)).float().mean())


@pytest.fixture(scope="module")
def sam2_model():
    torch.manual_seed(0)
    return build_sam2("hiera_test").eval()


def test_sam2_image_predictor_on_cuda_matches_cpu(sam2_model):
    cpu = Sam2ImagePredictor(sam2_model.to("cpu"))
    cpu.set_image(_image())
    points, labels = torch.tensor([[[100.0, 80.0]], [[250.0, 200.0]]]), torch.ones(2, 1, dtype=torch.int64)
    low_cpu, iou_cpu = cpu.predict_low_res(points, labels)
    for dtype in (torch.float32, *HALF):
        gpu = Sam2ImagePredictor(sam2_model.to("cuda"), device="cuda", encoder_dtype=dtype)
        gpu.set_image(_image())
        low, iou = gpu.predict_low_res(points.cuda(), labels.cuda())
        assert low.device.type == "cuda" and low.dtype == torch.float32
        if dtype == torch.float32:
            torch.testing.assert_close(low.cpu(), low_cpu, rtol=0, atol=2e-3)
            torch.testing.assert_close(iou.cpu(), iou_cpu, rtol=0, atol=2e-3)
        else:
            assert _agreement(low.cpu(), low_cpu) > 0.95, dtype


def test_sam2_video_predictor_on_cuda_tracks_like_cpu(sam2_model):
    frames = [_image(0), np.roll(_image(0), 6, axis=1), np.roll(_image(0), 12, axis=1)]
    mask = np.zeros(frames[0].shape[:2], bool)
    mask[60:140, 80:200] = True
    results = {}
    for device, dtype in (("cpu", torch.float32), ("cuda", torch.float32), ("cuda", torch.bfloat16)):
        video = Sam2VideoPredictor(sam2_model.to(device), device=device, encoder_dtype=dtype)
        out = []
        for t, frame in enumerate(frames):
            video.add_frame(frame)
            if t == 0:
                video.add_mask(1, mask)
            out.append(video.track().low_res.float().cpu())
        results[(device, dtype)] = torch.stack(out)
    torch.testing.assert_close(results[("cuda", torch.float32)], results[("cpu", torch.float32)], rtol=0, atol=2e-3)
    assert _agreement(results[("cuda", torch.bfloat16)], results[("cpu", torch.float32)]) > 0.9


def test_hq_sam_on_cuda_matches_cpu():
    torch.manual_seed(0)
    model = build_sam("vit_test_hq").eval()
    points, labels = torch.tensor([[[100.0, 80.0]]]), torch.ones(1, 1, dtype=torch.int64)
    cpu = SamPredictor(model.to("cpu"))
    cpu.set_image(_image())
    low_cpu, iou_cpu = _low_res(cpu, points, labels)
    for dtype in (torch.float32, *HALF):
        gpu = SamPredictor(model.to("cuda"), device="cuda", encoder_dtype=dtype)
        gpu.set_image(_image())
        low, iou = _low_res(gpu, points.cuda(), labels.cuda())
        if dtype == torch.float32:
            torch.testing.assert_close(low.cpu(), low_cpu, rtol=0, atol=2e-3)
            torch.testing.assert_close(iou.cpu(), iou_cpu, rtol=0, atol=2e-3)
        else:
            assert _agreement(low.cpu(), low_cpu) > 0.95, dtype


def _low_res(predictor, points, labels):
    _, iou, low = predictor.predict_torch(points, labels, multimask_output=True)
    return low, iou


def test_sam2_generator_defaults_to_cuda_and_autocast(tmp_path, sam2_model):
    from segment2d.sam2.automatic import Sam2MaskGenerator

    path = tmp_path / "sam2_random.pt"
    torch.save({"model": sam2_model.to("cpu").state_dict()}, path)
    generator = Sam2MaskGenerator(path, points_per_side=4)
    assert generator.image_predictor.device.type == "cuda"
    assert generator.image_predictor.encoder_dtype in HALF
    masks = generator.generate(_image())
    assert masks.masks.shape[1:] == (240, 320) and "track_id" in masks.extra
