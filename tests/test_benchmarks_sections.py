"""The measuring sections of issue 14: robustness conditions, seed groups, pooled ScanNet box rows."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of the checkout, not an installed package

from benchmarks.suites import SECTION_MODULES, accuracy, boxes, robustness  # noqa: E402
from benchmarks.suites.sequences import FULL, QUICK, SCANNET_SCENES  # noqa: E402
from segment2d.degrade import ISSUE14_RATES  # noqa: E402


def test_robustness_conditions_are_clean_each_kind_alone_and_all_four():
    conditions = robustness.conditions()
    assert list(conditions)[0] == "clean" and conditions["clean"] is None
    assert conditions["all four"] == ISSUE14_RATES
    rates = ("merge_rate", "split_rate", "drop_rate", "boundary_rate")
    singles = [c for name, c in conditions.items() if name not in ("clean", "all four")]
    assert len(singles) == 4
    for config, rate in zip(singles, rates):
        assert [r for r in rates if getattr(config, r) > 0] == [rate]
        assert getattr(config, rate) == getattr(ISSUE14_RATES, rate)
    assert (ISSUE14_RATES.merge_rate, ISSUE14_RATES.split_rate, ISSUE14_RATES.drop_rate) == (0.05, 0.10, 0.15)
    assert ISSUE14_RATES.boundary_rate == 1.0 and tuple(ISSUE14_RATES.boundary_px) == (1, 3)


def test_full_runs_report_tuned_and_held_out_seeds_apart():
    assert FULL.accuracy_seed_groups == ((0, 1), (2, 3, 4, 5))
    assert FULL.robustness_seed_groups == ((0, 1), (2, 3, 4, 5))
    assert ("room", True) in FULL.robustness_scenes and len(FULL.robustness_scenes) >= 2
    assert set(FULL.accuracy_presets) == {"tabletop", "room", "cluttered"} and set(FULL.accuracy_noise) == {False, True}
    assert len(QUICK.robustness_scenes) == 1 and QUICK.accuracy_seed_groups == ((0,),)
    assert "robustness" in SECTION_MODULES
    assert SECTION_MODULES.index("robustness") > SECTION_MODULES.index("accuracy")  # shares its GT-mask runs


@pytest.mark.parametrize("group,label", [((0, 1), "0-1"), ((2, 3, 4, 5), "2-5"), ((0,), "0"), ((0, 2, 5), "0,2,5")])
def test_seed_labels(group, label):
    assert accuracy.seed_label(group) == label


def test_boxes_markdown_shows_each_scene_and_the_pooled_row():
    assert SCANNET_SCENES == ("scannet_scene0448_01", "scannet_scene0113_00")
    row = {"mode": "online", "predictions": "non-structure", "ap25": 0.5, "ap50": 0.25, "recall25": 0.6,
           "recall50": 0.4, "num_gt": 11, "num_pred": 20}
    data = {"protocol": "p", "frames": {"scannet_scene0448_01": 296, "scannet_scene0113_00": 300},
            "skipped": {}, "gt_labels": {},
            "rows": [{**row, "scene": "scannet_scene0448_01"}, {**row, "scene": "scannet_scene0113_00", "num_gt": 4},
                     {**row, "scene": "pooled", "num_gt": 15}]}
    text = boxes.markdown(data)
    assert "scannet_scene0448_01 296" in text and "| pooled | online | non-structure | 0.500 | 0.250" in text


def test_speed_section_reports_the_machine_reference_before_and_after_its_runs():
    from benchmarks.suites import speed

    assert 0.0 < speed.reference_workload_ms(repeats=2) < 10_000.0
    text = speed.markdown({"protocol": "p", "sequences": {}, "reference_ms": [25.0, 26.5], "load_average": [0.1, 0.2]})
    assert "25.0 ms before the runs, 26.5 ms after" in text
    assert "reference" not in speed.markdown({"protocol": "p", "sequences": {}}).lower()  # older reports: no line
