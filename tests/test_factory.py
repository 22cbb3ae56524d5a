"""The generator factory: names, options, errors; the sam generator end to end on the tiny reference SAM."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segment2d.factory import available_generators, make_generator
from segment2d.types import MaskGenerator, MaskSet

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TINY_SAM = SHARED / "sam_reference" / "tiny_sam_state_dict.pt"


def test_available_generators_lists_the_default_first():
    names = available_generators()
    assert names[0] == "geometric" and "sam" in names


def test_unknown_generator_names_the_available_ones():
    with pytest.raises(ValueError, match="unknown mask generator 'fastsam'; available: geometric, sam"):
        make_generator("fastsam")


@pytest.mark.parametrize("options", [{}, {"checkpoint": None}, {"checkpoint": ""}, {"points_per_side": 8}])
def test_sam_without_checkpoint_asks_for_one(options):
    with pytest.raises(ValueError, match=r"the sam generator needs a checkpoint path \(--checkpoint\)"):
        make_generator("sam", **options)


def test_unknown_option_names_the_accepted_ones():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['points_per_sid'\] for the sam generator.*points_per_side"):
        make_generator("sam", checkpoint="x.pt", points_per_sid=8)


def test_geometric_is_the_default_and_takes_its_config_fields():
    pytest.importorskip("segment2d.geometric")
    generator = make_generator()
    assert isinstance(generator, MaskGenerator) and generator.name == "geometric"
    tuned = make_generator("Geometric", work_width=160, max_depth=None)  # None = not given
    assert tuned.config.work_width == 160 and tuned.config.max_depth == generator.config.max_depth
    with pytest.raises(ValueError, match="unknown option.*geometric generator"):
        make_generator("geometric", checkpoint="sam.pt")


def test_sam_with_a_missing_checkpoint_names_the_file(tmp_path):
    build = pytest.importorskip("segment2d.build")
    missing = tmp_path / "nope.pth"
    with pytest.raises(build.CheckpointError, match="nope.pth"):
        make_generator("sam", checkpoint=str(missing))


def test_sam_generator_runs_the_tiny_reference_model():
    pytest.importorskip("segment2d.predictor")
    if not TINY_SAM.is_file():
        pytest.skip(f"shared SAM reference data not found at {TINY_SAM}")
    generator = make_generator(
        "sam", checkpoint=str(TINY_SAM), points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0,
        box_nms_thresh=1.0, encoder_dtype="float32",
    )
    assert isinstance(generator, MaskGenerator) and generator.name == "sam"
    rng = np.random.default_rng(0)
    image = np.repeat(np.repeat(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), 10, axis=0), 10, axis=1)
    result = generator.generate(image)
    assert isinstance(result, MaskSet) and result.image_size == (60, 80)
    # with both score filters and NMS off and a single crop (the image), all 3 masks of the 9 prompts stay
    assert len(result) == 27
    np.testing.assert_array_equal(result.boxes, MaskSet.from_masks(result.masks).boxes)
    assert np.all((result.extra["point_coords"] >= 0) & (result.extra["point_coords"] <= [80, 60]))


def test_ground_truth_generator_gives_one_mask_per_visible_instance():
    from dataclasses import replace

    from scene.datasets.synthetic import make_scene

    frame = make_scene("tabletop", seed=0, num_frames=2, width=160, height=120).frame(0)
    generator = make_generator("ground-truth", min_area=30)
    masks = generator.generate(frame)
    ids, area = np.unique(frame.instance_ids[frame.instance_ids > 0], return_counts=True)
    assert masks.extra["instance_id"].tolist() == ids[area >= 30].tolist()
    for mask, instance in zip(masks.masks, masks.extra["instance_id"]):
        np.testing.assert_array_equal(mask, frame.instance_ids == instance)
    with pytest.raises(ValueError, match="frame 0 has no instance ids"):
        generator.generate(replace(frame, instance_ids=None))
