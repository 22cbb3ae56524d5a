"""The ``sam2`` generator in the pipeline, with a small random-weight SAM 2 (plumbing, not quality):
automatic masks on keyframes, propagated masks with track ids in between, and ``scene run --segmenter
sam2 --checkpoint FILE`` end to end on real frames."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scene.app.cli import main
from scene.datasets import open_dataset
from scene.storage import MapStore
from segment2d.factory import make_generator
from segment2d.sam2 import build_sam2
from segment2d.sam2.video import Sam2VideoPredictor

# a coarse grid and no quality filters: random weights predict IoU ~0.5, which SAM 2's filters would drop
AMG = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_sam2("hiera_test")
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(5.0)  # objects stay visible
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_test.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def kitchen_frames(shared_set):
    source = open_dataset(shared_set("7scenes_redkitchen"))
    return [source[i] for i in range(5)]


def test_keyframes_start_tracks_and_propagation_keeps_their_ids(checkpoint, kitchen_frames):
    generator = make_generator("sam2", checkpoint=str(checkpoint), keyframe_every=3, device="cpu", **AMG)
    sets = [generator.generate(frame) for frame in kitchen_frames]
    height, width = kitchen_frames[0].color.shape[:2]
    assert all(s.image_size == (height, width) for s in sets)
    ids = [set(s.extra["track_id"].tolist()) for s in sets]
    assert len(sets[0]) > 0 and len(ids[0]) == len(sets[0])  # one new track per keyframe mask
    # frames 1 and 2 are propagated: only keyframe tracks, no AMG extras
    assert ids[1] and ids[1] <= ids[0] and ids[2] <= ids[0]
    assert "predicted_iou" not in sets[1].extra and "predicted_iou" in sets[3].extra
    # frame 3 is a keyframe again: propagated tracks that its masks overlap keep their ids
    assert ids[3] & ids[2], "no keyframe mask continued a propagated track"
    assert ids[4] <= ids[3]
    # a propagated mask is the thresholded video output of that track
    assert all(m.any() for m in sets[1].masks)


def test_factory_asks_for_a_checkpoint_and_rejects_unknown_options(checkpoint):
    with pytest.raises(ValueError, match="checkpoint"):
        make_generator("sam2")
    with pytest.raises(ValueError, match="keyframe_every"):
        make_generator("sam2", checkpoint=str(checkpoint), keyframe_every=0)
    with pytest.raises(ValueError, match="unknown option"):
        make_generator("sam2", checkpoint=str(checkpoint), keyframes=3)


def test_video_predictor_memory_stays_bounded_and_objects_can_restart():
    torch.manual_seed(0)
    # short memory windows (3 frames, 4 pointers) so a few frames pass beyond them
    model = build_sam2("hiera_test", num_maskmem=3, max_obj_ptrs=4, memory_attention_layers=1)
    video = Sam2VideoPredictor(model)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (10, 48, 64, 3), dtype=np.uint8)
    video.add_frame(frames[0])
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:40] = True
    video.add_mask(7, mask)
    video.add_points(9, points=[[50, 40]], labels=[1])
    assert video.track().obj_ids == [7, 9]
    for t in range(1, 10):
        video.add_frame(frames[t])
        if t == 6:
            video.add_points(9, box=[5, 5, 30, 30])  # re-prompt: a new conditioning frame for object 9
        out = video.track()
        assert out.obj_ids == [7, 9] and out.masks().shape == (2, 48, 64)
    keep = max(model.config.num_maskmem - 1, model.config.max_obj_ptrs - 1)
    for track in video.objects.values():
        assert len(track.tracked) <= keep
    assert sorted(video.objects[9].cond) == [0, 6] and sorted(video.objects[7].cond) == [0]
    with pytest.raises(ValueError, match="frame size"):
        video.add_frame(np.zeros((10, 10, 3), np.uint8))


def test_scene_run_with_sam2_on_real_frames(checkpoint, shared_set, tmp_path, capsys):
    data = shared_set("7scenes_redkitchen")
    config = tmp_path / "sam2.toml"
    options = ", ".join(f"{k} = {v}" for k, v in AMG.items())
    config.write_text(f'segmenter = "sam2"\nsegmenter_options = {{ keyframe_every = 2, device = "cpu", {options} }}\n')
    out = tmp_path / "map.sqlite"
    code = main(["run", str(data), "--out", str(out), "--config", str(config), "--checkpoint", str(checkpoint),
                 "--max-frames", "4", "--online-only", "--quiet"])
    assert code == 0, capsys.readouterr().err
    with MapStore(out, read_only=True) as store:
        imap = store.load()
    assert imap.num_frames == 4 and len(imap) >= 1
    assert imap.metadata.extra["config"]["segmenter"] == "sam2"


def test_scene_run_names_a_bad_sam2_checkpoint(tmp_path, shared_set, capsys):
    bad = tmp_path / "sam2.1_hiera_tiny.pt"
    bad.write_bytes(b"truncated download")
    code = main(["run", str(shared_set("3dmatch_studyroom")), "--out", str(tmp_path / "m.sqlite"),
                 "--segmenter", "sam2", "--checkpoint", str(bad), "--quiet"])
    assert code != 0
    assert str(bad) in capsys.readouterr().err
