"""HQ-SAM in the pipeline: the ``sam-hq`` generator and ``scene run --segmenter sam-hq`` end to end on real
frames, with a small HQ-SAM at seeded random weights (this proves the plumbing, not mask quality)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scene.app.cli import main
from scene.storage import MapStore
from segment2d.build import build_sam
from segment2d.factory import available_generators, make_generator
from segment2d.types import MaskSet

# img_size 256 keeps the random-weight model fast; everything else is HQ-SAM's released decoder
SMALL = dict(img_size=256, global_attn_indexes=(0, 1))


def save_random_model(path, model_type: str) -> None:
    torch.manual_seed(0)
    model = build_sam(model_type, **SMALL)
    torch.save(model.state_dict(), path)


@pytest.fixture(scope="module")
def hq_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("hq") / "sam_hq_small.pth"
    save_random_model(path, "vit_test_hq")
    return path


def test_sam_hq_is_listed_and_needs_a_checkpoint():
    assert "sam-hq" in available_generators()
    with pytest.raises(ValueError, match=r"sam-hq generator needs an HQ-SAM checkpoint path \(--checkpoint"):
        make_generator("sam-hq", points_per_side=4)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['hq_token_only'\] for the sam generator"):
        make_generator("sam", checkpoint="x.pth", hq_token_only=True)


def test_sam_hq_rejects_a_plain_sam_checkpoint(tmp_path):
    path = tmp_path / "sam_vit_small.pth"
    save_random_model(path, "vit_test")
    with pytest.raises(ValueError, match=r"sam_vit_small\.pth: a custom SAM checkpoint without HQ-SAM's weights"):
        make_generator("sam-hq", checkpoint=str(path))


def test_sam_hq_generator_gives_one_mask_per_point(hq_checkpoint):
    rng = np.random.default_rng(0)
    image = np.repeat(np.repeat(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), 10, axis=0), 10, axis=1)
    masks = {}
    for hq_token_only in (False, True):
        generator = make_generator(
            "sam-hq", checkpoint=str(hq_checkpoint), points_per_side=3, pred_iou_thresh=0.0,
            stability_score_thresh=0.0, box_nms_thresh=1.0, hq_token_only=hq_token_only, device="cpu",
        )
        assert generator.name == "sam-hq" and generator.generator.predictor.hq_token_only is hq_token_only
        result = generator.generate(image)
        # HQ-SAM answers each point with one mask: with the filters and NMS off and one crop, 9 prompts -> 9 masks
        assert isinstance(result, MaskSet) and result.image_size == (60, 80) and len(result) == 9
        assert len(np.unique(result.extra["point_coords"], axis=0)) == 9
        masks[hq_token_only] = result.masks
    assert not np.array_equal(masks[False], masks[True])  # the HQ token alone is another answer


def test_scene_run_with_sam_hq_on_real_frames(shared_set, hq_checkpoint, tmp_path, capsys):
    data = shared_set("3dmatch_studyroom")
    config = tmp_path / "hq.toml"
    config.write_text("[segmenter_options]\npoints_per_side = 4\npred_iou_thresh = 0.0\n"
                      "stability_score_thresh = 0.0\ndevice = \"cpu\"\n")
    out = tmp_path / "hq.sqlite"
    argv = ["run", str(data), "--out", str(out), "--segmenter", "sam-hq", "--checkpoint", str(hq_checkpoint),
            "--config", str(config), "--max-frames", "3", "--quiet"]
    assert main(argv) == 0
    assert "mapped 3 frames" in capsys.readouterr().out
    with MapStore(out, read_only=True) as store:
        imap = store.load()
    assert imap.num_frames == 3 and len(imap) >= 1


def test_scene_run_names_a_checkpoint_that_is_not_hq_sam(shared_set, tmp_path, capsys):
    data = shared_set("3dmatch_studyroom")
    bad = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7)}, bad)
    argv = ["run", str(data), "--out", str(tmp_path / "m.sqlite"), "--segmenter", "sam-hq", "--checkpoint", str(bad)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "resnet.pth: not a SAM checkpoint" in err and "Traceback" not in err
