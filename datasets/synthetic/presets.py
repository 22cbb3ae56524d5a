"""Named scene configurations.

Presets (each ``-clean`` or ``-noisy``; a bare name is clean):
  - ``tabletop``: a small room (4.2-5 m square) with one large central table holding most of the 10-20
    objects; the camera orbits the table looking at it.
  - ``room``: a 5.2-6.5 x 4.4-5.5 m room with 15-25 objects (tables, chairs, shelves, boxes, cabinets, sofas,
    bins, lamps, balls, small objects on supports); the camera loops around the room centre looking across.
  - ``cluttered``: a 5.6-6.8 x 4.8-5.8 m room with 30-40 objects and a narrower free corridor for the camera.
Counts are non-structure objects; structure (floor, 4 walls, ceiling) comes on top.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .layout import LayoutConfig
from .render import LightingConfig
from .sensor import SensorConfig
from .trajectory import TrajectoryConfig


@dataclass
class CameraConfig:
    """Pinhole camera: image size in pixels, focal lengths in pixels, principal point at the image centre
    ((W - 1) / 2, (H - 1) / 2), frame rate in Hz."""

    width: int = 640
    height: int = 480
    fx: float = 525.0
    fy: float = 525.0
    fps: float = 30.0

    def __post_init__(self):
        if self.width < 8 or self.height < 8:
            raise ValueError(f"CameraConfig: image must be at least 8x8 pixels, got {self.width}x{self.height}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"CameraConfig: focal lengths must be > 0, got fx={self.fx} fy={self.fy}")

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, (self.width - 1) / 2], [0.0, self.fy, (self.height - 1) / 2], [0.0, 0.0, 1.0]])

    def resized(self, width: int, height: int) -> "CameraConfig":
        """Same field of view at another resolution."""
        fx, fy = self.fx * width / self.width, self.fy * height / self.height
        return replace(self, width=width, height=height, fx=fx, fy=fy)


@dataclass
class SceneConfig:
    """Everything that defines a synthetic scene besides the seed. ``gt_density``: GT points per m^2.
    Objects covering fewer than ``min_visible_pixels`` pixels in ``visibility_views`` views along the
    camera loop, rendered at ``visibility_size``, are removed. ``world_offset``: the room's corner is placed
    at a seeded position uniform in [0, ``world_offset``) metres per axis, so that its floor and walls do
    not lie on the planes x, y, z = 0, which are cell boundaries of every voxel grid (a real scan's planes
    never are: exact depth would put them on a boundary, an artefact of the generator); 0: corner at the
    origin."""

    name: str = "room"
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    sensor: SensorConfig = field(default_factory=SensorConfig)
    lighting: LightingConfig = field(default_factory=LightingConfig)
    num_frames: int = 100
    gt_density: float = 2500.0
    visibility_views: int = 96
    visibility_size: tuple = (160, 120)
    min_visible_pixels: int = 40
    world_offset: float = 0.1

    def __post_init__(self):
        if not self.world_offset >= 0:
            raise ValueError(f"SceneConfig.world_offset must be >= 0 metres, got {self.world_offset}")


def _tabletop() -> SceneConfig:
    layout = LayoutConfig(
        room_x=(4.2, 5.0), room_y=(4.2, 5.0), num_objects=(10, 20), floor_fraction=0.2, central_table=True,
        floor_kinds={"chair": 2.0, "shelf": 1.0, "box": 1.0, "cabinet": 1.0, "bin": 1.0, "ball": 0.5},
    )
    return SceneConfig("tabletop", layout, TrajectoryConfig(mode="orbit", height=(1.25, 1.55), clearance=0.4))


def _room() -> SceneConfig:
    return SceneConfig("room")


def _cluttered() -> SceneConfig:
    layout = LayoutConfig(
        room_x=(5.6, 6.8), room_y=(4.8, 5.8), num_objects=(30, 40), floor_fraction=0.55, touch_prob=0.5
    )
    return SceneConfig("cluttered", layout, TrajectoryConfig(path_fraction=0.34, clearance=0.38))


_BASES = {"tabletop": _tabletop, "room": _room, "cluttered": _cluttered}
PRESET_NAMES = tuple(f"{b}-{v}" for b in _BASES for v in ("clean", "noisy"))


def preset(name: str) -> SceneConfig:
    """The configuration of preset ``name`` (``room``, ``room-clean``, ``room-noisy``, ``tabletop-noisy``, ...)."""
    base, _, variant = name.partition("-")
    if base not in _BASES or variant not in ("", "clean", "noisy"):
        raise ValueError(f"unknown synthetic preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    config = _BASES[base]()
    config.name = f"{base}-{variant or 'clean'}"
    config.sensor = SensorConfig.noisy() if variant == "noisy" else SensorConfig.clean()
    return config
