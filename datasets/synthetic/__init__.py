"""Seeded synthetic indoor scenes with ground truth (``scene.datasets.synthetic``).

World frame: metres, z up, the room's corner at ``scene.layout.origin`` (a seeded sub-voxel offset, see
``SceneConfig.world_offset``), floor at its z. Poses: camera-to-world, OpenCV camera axes. Example::

    scene = make_scene("room", seed=0, noisy=True, num_frames=100)
    for frame in scene.source(stride=2): ...
    xyz, ids, colors = scene.gt_points()
    write_scene(scene, "out/room0")
"""
from .gt import GTPoints
from .layout import LayoutConfig, SceneObject
from .presets import PRESET_NAMES, CameraConfig, SceneConfig, preset
from .render import LightingConfig
from .scene import SyntheticScene, make_scene
from .sensor import SensorConfig
from .source import SyntheticSource
from .trajectory import TrajectoryConfig
from .writer import write_scene
from .preview import render_contact_sheet

__all__ = [
    "CameraConfig", "GTPoints", "LayoutConfig", "LightingConfig", "PRESET_NAMES", "SceneConfig", "SceneObject",
    "SensorConfig", "SyntheticScene", "SyntheticSource", "TrajectoryConfig", "make_scene", "preset",
    "render_contact_sheet", "write_scene",
]
