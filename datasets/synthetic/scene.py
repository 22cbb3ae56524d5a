"""`SyntheticScene`: a generated room with its camera path; renders any frame on demand, with ground truth."""
from __future__ import annotations

import numpy as np

from ..frame import Frame
from .gt import GTPoints, sample_surface_points
from .layout import Layout, SceneObject, build_layout
from .presets import SceneConfig, preset
from .render import Renderer, RenderOutput
from .sensor import SensorConfig, degrade_color, degrade_depth, drift_poses
from .trajectory import camera_path, path_keepout
from .visibility import observed_points, prune_unseen

# Independent random streams, so changing e.g. the frame count does not change the room.
_LAYOUT, _PATH, _GT, _DRIFT, _FRAME, _ORIGIN = range(6)
_MAX_LAYOUT_ATTEMPTS = 8


class SyntheticScene:
    """A seeded synthetic scene: same config and seed give bit-identical frames and ground truth.

    World frame: metres, z up, the room's corner at ``layout.origin`` (seeded, within ``world_offset`` of the
    world origin per axis), floor at z = origin z, room in origin + [0, sx] x [0, sy]. ``poses`` are the
    reported camera-to-world poses (with drift when the sensor model has it), ``gt_poses`` the true ones.
    """

    def __init__(self, config: SceneConfig, seed: int = 0):
        if config.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {config.num_frames}")
        self.config = config
        self.seed = int(seed)
        room = self._build_layout()
        origin = self._rng(_ORIGIN).uniform(0.0, config.world_offset, 3) if config.world_offset > 0 else np.zeros(3)
        self.layout: Layout = room.translated(origin) if np.any(origin) else room
        self.gt_poses = camera_path(room.room_size, room.focus, config.trajectory, config.num_frames, self._rng(_PATH))
        self.gt_poses[:, :3, 3] += origin
        self.poses = drift_poses(self.gt_poses, config.sensor, self._rng(_DRIFT))
        self.renderer = Renderer(self.layout, config.lighting)
        self._gt_points: GTPoints | None = None
        self._observed: dict[int, GTPoints] = {}

    def _build_layout(self) -> Layout:
        """Build the room and drop objects the camera path never sees; rebuild (new sub-seed) while fewer
        than the configured minimum of objects remain. Independent of num_frames and image size."""
        config = self.config
        keepout = lambda size: path_keepout(size, None, config.trajectory)  # noqa: E731
        probe = config.camera.resized(*config.visibility_size)
        for attempt in range(_MAX_LAYOUT_ATTEMPTS):
            layout = build_layout(config.layout, self._rng(_LAYOUT, attempt), keepout)
            views = camera_path(
                layout.room_size, layout.focus, config.trajectory, config.visibility_views, self._rng(_PATH)
            )
            layout = prune_unseen(layout, views, probe.K, probe.width, probe.height, config.min_visible_pixels)
            if sum(not o.is_structure for o in layout.objects) >= config.layout.num_objects[0]:
                break
        return layout

    def _rng(self, stream: int, *extra: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream, *extra])

    # -- description ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def K(self) -> np.ndarray:
        return self.config.camera.K

    @property
    def width(self) -> int:
        return self.config.camera.width

    @property
    def height(self) -> int:
        return self.config.camera.height

    def __len__(self) -> int:
        return self.config.num_frames

    def provenance(self) -> dict:
        return {"generator": "scene.datasets.synthetic", "preset": self.name, "seed": self.seed,
                "num_frames": len(self), "room_size": list(self.layout.room_size),
                "room_origin": list(self.layout.origin)}

    # -- frames -----------------------------------------------------------------------------------
    def render_clean(self, i: int) -> RenderOutput:
        """Noise-free render of frame ``i`` from its true pose."""
        self._check_index(i)
        return self.renderer.render(self.gt_poses[i], self.K, self.width, self.height)

    def frame(self, i: int) -> Frame:
        """Frame ``i`` with sensor effects; ``instance_ids`` are the clean render's ids (also where depth
        dropped out); ``meta['gt_pose']`` holds the true pose."""
        clean = self.render_clean(i)
        sensor = self.config.sensor
        rng = self._rng(_FRAME, i)
        depth = degrade_depth(clean.depth, clean.luminance, sensor, rng, focal=float(self.K[0, 0]))
        color = degrade_color(clean.color, sensor, rng)
        return Frame(
            index=i, timestamp=i / self.config.camera.fps, color=color, depth=depth, K=self.K.copy(),
            pose=self.poses[i].copy(), instance_ids=clean.instance_ids,
            source=f"synthetic:{self.name}:seed{self.seed}:frame{i}",
            meta={"gt_pose": self.gt_poses[i].copy(), "preset": self.name, "seed": self.seed},
        )

    def frames(self):
        for i in range(len(self)):
            yield self.frame(i)

    def source(self, start: int = 0, stop: int | None = None, stride: int = 1):
        from .source import SyntheticSource

        return SyntheticSource(self, start=start, stop=stop, stride=stride)

    def _check_index(self, i: int) -> None:
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range for synthetic scene with {len(self)} frames")

    # -- ground truth -----------------------------------------------------------------------------
    def gt_points(self, density: float | None = None) -> GTPoints:
        """Surface points (xyz float32 m world, ids int32, colors uint8); ``density`` points per m^2
        (default: the config's). Unpacks as ``xyz, ids, colors``."""
        if density is not None and density != self.config.gt_density:
            return sample_surface_points(self.layout, density, self._rng(_GT))
        if self._gt_points is None:
            self._gt_points = sample_surface_points(self.layout, self.config.gt_density, self._rng(_GT))
        return self._gt_points

    def gt_observed(self, points: GTPoints | None = None, stride: int = 1, tolerance: float = 0.01) -> np.ndarray:
        """Bool per GT point (default: ``gt_points()``): inside the image of at least one true pose among
        every ``stride``-th frame with a clear line of sight to the camera (within ``tolerance`` m).
        Undersides of table tops, floor under boxes, shelf backs against walls etc. come out False."""
        points = points if points is not None else self.gt_points()
        return observed_points(
            self.renderer, points.xyz, self.gt_poses[::stride], self.K, self.width, self.height, tolerance
        )

    def observed_gt_points(self, max_views: int = 30) -> GTPoints:
        """The GT points on surfaces some frame sees (checked from up to ``max_views`` true poses): the
        ground truth a scan of this sequence would give, and what maps are evaluated against."""
        if max_views not in self._observed:
            points = self.gt_points()
            seen = self.gt_observed(points, stride=max(1, -(-len(self) // max_views)))
            self._observed[max_views] = GTPoints(points.xyz[seen], points.ids[seen], points.colors[seen])
        return self._observed[max_views]

    def gt_objects(self) -> list[SceneObject]:
        """All instances (structure first), with id, kind, is_structure, world AABB (m) and colour."""
        return list(self.layout.objects)


def make_scene(
    name: str = "room",
    seed: int = 0,
    noisy: bool | None = None,
    num_frames: int | None = None,
    width: int | None = None,
    height: int | None = None,
    sensor: SensorConfig | None = None,
) -> SyntheticScene:
    """Build a preset scene, e.g. ``make_scene("room", seed=0, noisy=True, num_frames=100)``.

    ``name`` is a preset name (see `presets`); ``noisy`` overrides its -clean/-noisy variant; ``width``
    and ``height`` change the resolution at the same field of view; ``sensor`` replaces the sensor model.
    """
    base = name.partition("-")[0]
    if noisy is not None:
        name = f"{base}-{'noisy' if noisy else 'clean'}"
    config = preset(name)
    if num_frames is not None:
        config.num_frames = int(num_frames)
    if width is not None or height is not None:
        w = width if width is not None else round(config.camera.width * height / config.camera.height)
        h = height if height is not None else round(config.camera.height * width / config.camera.width)
        config.camera = config.camera.resized(int(w), int(h))
    if sensor is not None:
        config.sensor = sensor
    return SyntheticScene(config, seed)
