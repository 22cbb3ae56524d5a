"""``python -m benchmarks.variants``: settings parsed like the config file's, tuned and held-out seeds apart."""
from __future__ import annotations

import pytest

from benchmarks.variants import main, parse_settings, sequences, variant_config
from scene.config import ConfigError

TINY = ["--only", "tuned", "--presets", "tabletop", "--frames", "6", "--size", "160", "120"]


def test_settings_are_dotted_keys_with_toml_values():
    data = parse_settings(["tracking.association.part_share=0.8", "refine.split_gap=none", "lift.stride = 2",
                           'geometric.join_height_quantiles=[0.1, 0.9]', "refine.from_online=false"])
    assert data == {"tracking": {"association": {"part_share": 0.8}}, "refine": {"split_gap": "none",
                    "from_online": False}, "lift": {"stride": 2},
                    "geometric": {"join_height_quantiles": [0.1, 0.9]}}
    config = variant_config(["tracking.association.part_share=0.8", "refine.split_gap=none",
                             'geometric.join_height_quantiles=[0.1, 0.9]'])
    assert config.tracking.association.part_share == 0.8 and config.refine.split_gap is None
    assert config.geometric.join_height_quantiles == (0.1, 0.9)
    with pytest.raises(ConfigError, match="unknown key 'tracking.association.part_sharex'"):
        variant_config(["tracking.association.part_sharex=0.8"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_settings(["part_share"])


def test_groups_keep_tuned_and_held_out_seeds_apart():
    chosen = sequences(["tuned", "heldout"], ["room"])
    assert [s.name for s in chosen] == ["room-s2", "room-s3", "room-s4", "room-s5", "room-s0", "room-s1"]
    assert {s.group for s in chosen[:4]} == {"heldout"} and {s.group for s in chosen[4:]} == {"tuned"}
    assert [s.group for s in sequences(["scannet"])] == ["scannet", "scannet"]


def test_a_variant_changes_the_refined_map_and_a_bad_key_is_one_line(capsys):
    assert main(TINY) == 0
    default = capsys.readouterr().out.splitlines()[-2:]
    assert default[0].startswith("defaults refined | tabletop 0-1 ") and default[1].startswith("defaults online")
    refined_ap50 = float(default[0].split()[-1].split("/")[1])
    assert refined_ap50 > 0
    # nothing survives a 100 m^2 smallest object: the refined map is empty, the online map as before
    assert main(TINY + ["--set", "refine.min_area=100"]) == 0
    varied = capsys.readouterr().out.splitlines()[-2:]
    assert varied[0].endswith("tabletop 0-1 0.000/0.000")
    assert varied[1].split("|")[1] == default[1].split("|")[1]
    with pytest.raises(SystemExit) as exit_info:
        main(TINY + ["--set", "refine.min_areax=1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown key 'refine.min_areax'" in err[0]


def test_kept_states_rerun_the_global_pass_alone(tmp_path, capsys, monkeypatch):
    import benchmarks.suites.common as common

    states = ["--states", str(tmp_path)]
    assert main(TINY + states) == 0
    mapped = capsys.readouterr().out.splitlines()[-2:]
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".sqlite", ".sqlite", ".state", ".state"]  # seeds 0, 1

    def no_mapping(*args, **kwargs):
        raise AssertionError("mapped again")

    monkeypatch.setattr(common, "map_sequence", no_mapping)
    assert main(TINY + states) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == mapped  # both maps as the mapping's
    assert main(TINY + states + ["--set", "refine.min_area=100"]) == 0
    assert capsys.readouterr().out.splitlines()[-2].endswith("tabletop 0-1 0.000/0.000")
    with pytest.raises(AssertionError, match="mapped again"):  # another lift maps afresh
        main(TINY + states + ["--set", "lift.stride=3"])


def test_costs_list_the_refined_false_positives_with_their_objects(capsys):
    assert main(TINY + ["--costs", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    start = next(k for k, line in enumerate(out) if line.startswith("costs, refined, tabletop 0-1 (points): AP50 "))
    header = out[start]
    ranked, by_iou = (float(header.split("AP50 ")[1].split(",")[0]), float(header.split("IoU ")[1]))
    assert ranked == float(out[start - 2].split()[-1].split("/")[1])  # the report line's refined AP50
    assert by_iou >= ranked
    listed = out[start + 1:]
    errors = [line for line in listed if line.startswith("  false positive, rank ")]
    misses = [line for line in listed if line.startswith("  missed, tabletop-s")]
    assert len(errors) + len(misses) == len(listed) and 1 <= len(errors) <= 2 and len(misses) <= 2
    for line in errors:
        assert "(object " in line and ", GT " in line and "AP50 without it" in line
    for line in misses:
        assert "AP50 had it covered the object" in line or line.endswith("no prediction overlaps it")


def test_another_mask_generator_is_a_setting_checked_before_any_mapping(tmp_path, capsys):
    small = ["--presets", "tabletop", "--frames", "8", "--size", "320", "240"]
    assert main(["--only", "tuned"] + small) == 0  # the default's ScanNet maps would only cost time here
    default = float(capsys.readouterr().out.splitlines()[-2].split()[-1].split("/")[1])
    small = ["--only", "scannet", "tuned"] + small
    assert main(small + ["--set", "segmenter=ground-truth"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("skipped: the ScanNet scenes") for line in out)
    assert not any("scannet" in line and "mapped" in line for line in out)
    refined = out[-2]
    assert refined.startswith("segmenter=ground-truth refined | tabletop 0-1 ")
    assert float(refined.split()[-1].split("/")[1]) > default  # true masks beat the weight-free ones
    # a checkpoint that is not there: one line naming it, before any sequence is mapped
    missing = tmp_path / "mobile_sam.pt"
    with pytest.raises(SystemExit) as exit_info:
        main(small + ["--set", "segmenter=sam", "--set", f'segmenter_options.checkpoint="{missing}"'])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "mapped" not in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0] and "no such checkpoint" in err[0]
