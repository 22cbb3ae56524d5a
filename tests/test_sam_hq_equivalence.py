"""Our HQ-SAM against the official ``segment-anything-hq`` 0.3: released key/shape layouts and outputs.

The references are built by ``python scripts/build_references.py hq`` (``scripts/setup.sh`` runs it) into
``.references/hq/``: the official builder's key/shape layout of sam_hq_vit_{b,l,h,tiny}.pth, and the official
outputs of two HQ-SAMs at seeded random weights (a small ViT and the released TinyViT-5M size). The released
vit_b / vit_l / vit_h sizes are compared only when their opt-in references exist (``python
scripts/build_references.py hq --full-size``: long, several GB, never run by CI).
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from segment2d.build import CheckpointError, build_sam, infer_model_config, load_sam
from segment2d.predictor import SamPredictor

REF = Path(__file__).resolve().parents[1] / ".references" / "hq"
FULL_REF = REF.with_name("hq-full")
ATOL = 1e-4
BUILD_COMMAND = ".venv/bin/python scripts/build_references.py hq"
OFFICIAL_NAMES = {"vit_b": "vit_b_hq", "vit_l": "vit_l_hq", "vit_h": "vit_h_hq", "vit_tiny": "vit_t_hq"}
PROMPTS = ("points", "box", "points_box", "batch")

needs_ref = pytest.mark.skipif(
    not (REF / "manifest.json").is_file(), reason=f"HQ-SAM references not built: run `{BUILD_COMMAND}`"
)


def load_reference(name: str):
    return load_sam(REF / f"{name}_state_dict.pt"), np.load(REF / f"{name}_reference.npz")


@pytest.fixture(scope="module")
def tiny_vit():
    return load_reference("tiny_vit")


@pytest.fixture(scope="module")
def vit_tiny():
    return load_reference("vit_tiny")


def encode(model, ref) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.from_numpy(ref["image_chw_uint8"])[None].to(torch.float32)
    with torch.no_grad():
        return model.image_encoder.forward_with_interm(model.preprocess(image))


def decode(model, embedding, hq_features, ref, prompt, multimask, hq_only, mask_input=None):
    """Prompts in the 1024 input frame, straight into prompt encoder + mask decoder (as the reference)."""
    points = box = None
    if f"{prompt}_points" in ref:
        points = (torch.from_numpy(ref[f"{prompt}_points"]), torch.from_numpy(ref[f"{prompt}_labels"]))
    if f"{prompt}_box" in ref:
        box = torch.from_numpy(ref[f"{prompt}_box"])
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(points, box, mask_input)
        return model.mask_decoder(
            embedding, model.prompt_encoder.get_dense_pe(), sparse, dense, multimask, hq_features, hq_only
        )


def assert_matches_official(model, ref) -> None:
    embedding, interm = encode(model, ref)
    np.testing.assert_allclose(embedding.numpy(), ref["image_embedding"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(interm.numpy(), ref["interm_embedding"], rtol=0, atol=ATOL)
    with torch.no_grad():
        hq_features = model.mask_decoder.hq_features(embedding, interm)
    np.testing.assert_allclose(hq_features.numpy(), ref["hq_features"], rtol=0, atol=ATOL)
    mask_input = torch.from_numpy(ref["mask_input"])
    cases = [(p, p, None) for p in PROMPTS] + [("points_mask", "points", mask_input)]
    for (tag, prompt, mask), multimask, hq_only in itertools.product(cases, (1, 0), (1, 0)):
        logits, iou = decode(model, embedding, hq_features, ref, prompt, bool(multimask), bool(hq_only), mask)
        key = f"{tag}_multimask{multimask}_hqonly{hq_only}"
        np.testing.assert_allclose(logits.numpy(), ref[f"{key}_lowres_logits"], rtol=0, atol=ATOL, err_msg=key)
        np.testing.assert_allclose(iou.numpy(), ref[f"{key}_iou"], rtol=0, atol=ATOL, err_msg=key)


@needs_ref
@pytest.mark.parametrize("official", sorted(OFFICIAL_NAMES))
def test_released_layouts_build_infer_and_load_strictly(official):
    expected = json.loads((REF / "layouts.json").read_text())[official]
    with torch.device("meta"):
        model = build_sam(OFFICIAL_NAMES[official])
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(got) ^ set(expected)) == []
    assert {k: v for k, v in got.items() if v != expected[k]} == {}
    # a state dict with exactly the released keys and shapes is recognised and loads with strict=True
    state = {k: torch.empty(shape, device="meta") for k, shape in expected.items()}
    model_type, config = infer_model_config(state)
    assert model_type == OFFICIAL_NAMES[official]
    with torch.device("meta"):
        loaded = build_sam(model_type)
    loaded.load_state_dict(state, strict=True, assign=True)
    assert loaded.is_hq


@needs_ref
def test_small_vit_hq_sam_matches_official_outputs(tiny_vit):
    model, ref = tiny_vit
    assert model.model_type == "custom_hq" and model.is_hq
    assert model.image_encoder.global_attn_indexes == (1, 3)
    assert_matches_official(model, ref)


@needs_ref
def test_released_size_tiny_hq_sam_matches_official_outputs(vit_tiny):
    model, ref = vit_tiny
    assert model.model_type == "vit_t_hq"
    assert_matches_official(model, ref)


@pytest.mark.parametrize("official", ["vit_b", "vit_l", "vit_h"])
def test_released_sizes_match_official_outputs(official):
    if not ((FULL_REF / f"{official}_state_dict.pt").is_file() and (FULL_REF / "manifest.json").is_file()):
        pytest.skip(f"full-size HQ-SAM references not built (opt-in, long): run `{BUILD_COMMAND} --full-size`")
    model = load_sam(FULL_REF / f"{official}_state_dict.pt")
    assert model.model_type == OFFICIAL_NAMES[official]
    assert_matches_official(model, np.load(FULL_REF / f"{official}_reference.npz"))


@needs_ref
def test_early_feature_is_the_first_global_block(tiny_vit):
    # the official decoder reads the output of the FIRST global-attention block (block 1 here, not the last,
    # block 3): fusing the last block's tokens instead moves the HQ logits far beyond the tolerance
    model, ref = tiny_vit
    image = torch.from_numpy(ref["image_chw_uint8"])[None].to(torch.float32)
    with torch.no_grad():
        x = model.image_encoder.patch_embed(model.preprocess(image)) + model.image_encoder.pos_embed
        for block in model.image_encoder.blocks:
            x = block(x)
        embedding = torch.from_numpy(ref["image_embedding"])
        wrong = model.mask_decoder.hq_features(embedding, x)
    logits, _ = decode(model, embedding, wrong, ref, "points", False, True)
    assert float(np.abs(logits.numpy() - ref["points_multimask0_hqonly1_lowres_logits"]).max()) > 100 * ATOL


@needs_ref
@pytest.mark.parametrize("hq_token_only", [False, True])
def test_predictor_runs_hq_sam_like_official(tiny_vit, hq_token_only):
    # the image is already at the model's input scale (long side 1024), so prompts in image pixels are the
    # official prompts in the input frame and the predictor's low-res logits are the official ones
    model, ref = tiny_vit
    predictor = SamPredictor(model, hq_token_only=hq_token_only)
    predictor.set_image(np.ascontiguousarray(ref["image_chw_uint8"].transpose(1, 2, 0)))
    np.testing.assert_allclose(predictor.get_image_embedding().numpy(), ref["image_embedding"], rtol=0, atol=ATOL)
    points, labels = torch.from_numpy(ref["batch_points"]), torch.from_numpy(ref["batch_labels"])
    for multimask in (1, 0):
        masks, iou, low_res = predictor.predict_torch(points, labels, multimask_output=bool(multimask))
        key = f"batch_multimask{multimask}_hqonly{int(hq_token_only)}"
        np.testing.assert_allclose(low_res.numpy(), ref[f"{key}_lowres_logits"], rtol=0, atol=ATOL, err_msg=key)
        np.testing.assert_allclose(iou.numpy(), ref[f"{key}_iou"], rtol=0, atol=ATOL, err_msg=key)
        assert masks.shape == (4, 1, 768, 1024) and masks.dtype == torch.bool
    one_mask, one_iou, _ = predictor.predict(ref["points_points"][0], ref["points_labels"][0], multimask_output=False)
    assert one_mask.shape == (1, 768, 1024)
    np.testing.assert_allclose(one_iou, ref[f"points_multimask0_hqonly{int(hq_token_only)}_iou"][0], rtol=0, atol=ATOL)


@needs_ref
def test_hq_checkpoint_errors_name_the_file_and_the_keys(tmp_path):
    state = torch.load(REF / "tiny_vit_state_dict.pt", weights_only=True)
    broken = dict(state)
    del broken["mask_decoder.hf_mlp.layers.2.bias"]
    broken["mask_decoder.compress_vit_feat.0.weight"] = torch.zeros(32, 256, 2, 2)
    path = tmp_path / "sam_hq_broken.pth"
    torch.save(broken, path)
    with pytest.raises(CheckpointError, match=r"sam_hq_broken\.pth: not a custom_hq checkpoint: 1 missing keys "
                                              r"\['mask_decoder\.hf_mlp\.layers\.2\.bias'\].*1 shape mismatches "
                                              r"\['mask_decoder\.compress_vit_feat\.0\.weight \(32, 256, 2, 2\) != \(64, 256, 2, 2\)'\]"):
        load_sam(path)
    with pytest.raises(CheckpointError, match=r"tiny_vit_state_dict\.pt: model_type='vit_b_hq' was requested but the checkpoint is 'custom_hq'"):
        load_sam(REF / "tiny_vit_state_dict.pt", model_type="vit_b_hq")


def test_hq_model_types_and_errors():
    with torch.device("meta"):
        model = build_sam("vit_test_hq")
        assert model.is_hq and model.model_type == "vit_test_hq"
        assert model.mask_decoder.compress_vit_feat[0].in_channels == 64
        assert build_sam("vit_t_hq").mask_decoder.compress_vit_feat[0].in_channels == 160
        assert not build_sam("vit_test").is_hq
        with pytest.raises(ValueError, match="global-attention block"):
            build_sam("vit_test_hq", global_attn_indexes=())
        with pytest.raises(ValueError, match=r"unknown 'vit_x_hq'.*vit_b_hq"):
            build_sam("vit_x_hq")
    with pytest.raises(ValueError, match="hq_token_only needs an HQ-SAM model"):
        SamPredictor(build_sam("vit_test"), hq_token_only=True)


def test_build_references_knows_the_hq_family(capsys, monkeypatch):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("build_references", REF.parents[1] / "scripts" / "build_references.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    assert "hq" in module.FAMILIES and module.builder_path("hq").is_file()
    with pytest.raises(SystemExit) as exit_info:
        module.main(["nope"])
    assert exit_info.value.code == 2 and "unknown families ['nope']" in capsys.readouterr().err
