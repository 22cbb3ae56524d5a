"""The global pass (``Mapper.finalize``) on two threads makes the map it makes on one."""
from __future__ import annotations

from scene.config import MapperConfig
from scene.datasets.synthetic import make_scene
from scene.map import map_fingerprint
from scene.pipeline import Mapper
from tracking import RefineConfig


def test_the_two_thread_global_pass_makes_the_one_thread_map():
    frames = list(make_scene("room", seed=2, noisy=True, num_frames=10, width=320, height=240).frames())
    maps = []
    for threads in (1, 2):
        mapper = Mapper(MapperConfig(refine=RefineConfig(threads=threads)))
        for frame in frames:
            mapper.integrate(frame)
        maps.append(map_fingerprint(mapper.finalize()))
    assert maps[0]["objects"] >= 3 and maps[0]["points"] > 0
    assert maps[0] == maps[1]
