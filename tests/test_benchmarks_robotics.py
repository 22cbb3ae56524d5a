"""The robotics benchmark section renders its numbers (bag speed, batch runs, pooled ScanNet box AP)."""
from __future__ import annotations

from benchmarks.suites import SECTION_MODULES, robotics


def test_robotics_section_renders_every_number():
    assert "robotics" in SECTION_MODULES
    bag = {"format": "mcap", "encoding": "rgb8 + 16UC1", "frames": 30, "mib": 44.0, "open_s": 0.8,
           "frames_per_s": 57.0, "ms_per_frame": 17.5}
    runs = [{"workers": w, "wall_s": 100.0 / w, "speedup": 0.9 * w, "cpu_s": 50.0, "fixed_s": 9.5,
             "overhead_per_scene_s": 0.04 if w == 1 else None, "peak_rss_mib_per_worker": [891.0] * w,
             "load_average": "1.0 -> 2.0"} for w in (1, 2)]
    scene = {"scene": "scannet_scene0448_01", "frames": 50, "objects": 60, "sequential_s": 30.0,
             "sequential_cpu_s": 20.0, "w1_s": 31.0, "w1_cpu_s": 21.0, "w2_s": 32.0, "w2_cpu_s": 22.0}
    data = {"bags": {"rows": [bag], "image": "640x480"},
            "batch": {"stride": 6, "sequential_s": 90.0, "sequential_cpu_s": 60.0, "load_average_start": 1.5,
                      "scenes": [scene], "runs": runs,
                      "pooled_scannet_boxes": {"ap@0.25": 0.612, "ap@0.50": 0.3, "num_gt": 15, "scenes": 2}}}
    text = robotics.markdown(data)
    for expected in ("| mcap | rgb8 + 16UC1 | 30 |", "57.000", "| 2 | 50.000 | 1.800 |", "891, 891",
                     "AP25 0.612, AP50 0.300", "load average 1.5", "| scannet_scene0448_01 | 50 | 60 |"):
        assert expected in text, expected
