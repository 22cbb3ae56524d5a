"""Offscreen renders of an ``InstanceMap``: a top-down floor plan and perspective views, as RGB images.

Headless and dependency-free (numpy z-buffer splatting + cv2 drawing): no GPU, display or OpenGL.
Units and frames: metres, world frame; poses are 4 x 4 camera-to-world with OpenCV axes (x right,
y down, z forward); ``K`` is 3 x 3 pixels. "Up" is the map's ``metadata.up`` (default +z).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import cKDTree

from scene.datasets.frame import is_valid_pose
from scene.map import InstanceMap, rows_times
from scene.structure import structure_ids
from viz.annotate import draw_labels, draw_legend, draw_scale_bar, draw_title, draw_trajectory, legend_width
from viz.camera import ground_axes, overview_camera, pinhole, unit_up
from viz.overlay import id_color
from viz.splat import fill_holes, outline, splat_points

COLOR_MODES = ("instance", "rgb")
STRUCTURE_MODES = ("show", "dim", "hide")


@dataclass
class RenderConfig:
    """How to draw a map.

    - ``color_mode``: "instance" (``id_color`` of each object id) or "rgb" (the points' own colours).
    - ``structure``: floor/walls/ceiling objects are "show"n, "dim"med (faded ``structure_fade`` of the
      way towards the background) or "hide"den.
    - ``cut_height``: metres above the floor (the 1st percentile of heights) above which points are
      dropped, so ceilings do not cover the view; None keeps everything.
    - ``cutaway_walls``: in perspective views, hide vertical planar structure objects (walls) that
      stand between the camera and the scene's centre, like a doll's house.
    - ``point_radius``: splat half-size in metres; default per object, ``spacing_factor`` x the median
      distance from a point to its third-nearest neighbour (randomly placed points need about 1x to
      cover a surface, grid-like voxel centres about 0.6x), so sparse and dense objects both render closed; on
      screen it is clipped to ``max_point_px`` pixels. Remaining pin-holes are filled in one pass.
    """

    width: int = 1024
    height: int = 768
    color_mode: str = "instance"
    structure: str = "dim"
    structure_fade: float = 0.6
    cut_height: float | None = 2.2
    cutaway_walls: bool = True
    labels: bool = True
    min_label_pixels: int = 25
    trajectory: bool = True
    legend: bool = True
    legend_rows: int = 14
    title: str | None = None
    outlines: bool = True
    background: tuple[int, int, int] = (255, 255, 255)
    point_radius: float | None = None
    spacing_factor: float = 1.0
    max_point_px: int = 8

    def __post_init__(self) -> None:
        if self.color_mode not in COLOR_MODES:
            raise ValueError(f"RenderConfig: color_mode must be one of {COLOR_MODES}, got {self.color_mode!r}")
        if self.structure not in STRUCTURE_MODES:
            raise ValueError(f"RenderConfig: structure must be one of {STRUCTURE_MODES}, got {self.structure!r}")
        if not (16 <= int(self.width) <= 8192 and 16 <= int(self.height) <= 8192):
            raise ValueError(f"RenderConfig: width and height must be in 16..8192, got {self.width} x {self.height}")
        if self.point_radius is not None and not float(self.point_radius) > 0:
            raise ValueError(f"RenderConfig: point_radius must be > 0 metres, got {self.point_radius}")


@dataclass
class _Cloud:
    """The points to draw: xyz M x 3 float64 (world), colours M x 3 uint8, owner ids M int64,
    splat half-size M float64 (metres)."""

    xyz: np.ndarray
    colors: np.ndarray
    owner: np.ndarray
    radius: np.ndarray


@dataclass
class _Projection:
    """Points projected into the image: pixels M x 2, depth key M (smaller = nearer), radius M (px),
    and ``valid`` M (in front of the camera)."""

    pixels: np.ndarray
    depth: np.ndarray
    radius: np.ndarray
    valid: np.ndarray


# --------------------------------------------------------------------------------------------------
# Public entry points


def render_top_down(instance_map: InstanceMap, config: RenderConfig | None = None) -> np.ndarray:
    """Orthographic floor plan seen from above (along -up), H x W x 3 uint8 RGB: world x to the right
    and y up the image for a z-up map; the highest point wins each pixel; a scale bar shows metres."""
    config = config or RenderConfig()
    cloud = _gather(instance_map, config)
    if len(cloud.xyz) == 0:
        return _empty(config, "empty map")
    axes = ground_axes(instance_map.metadata.up)
    plane = rows_times(cloud.xyz, axes[:2].T)
    lo, hi = np.percentile(plane, [0.5, 99.5], axis=0)
    top = 40 if config.title else 16
    side = _reserved_for_legend(instance_map, config)
    scale = min((config.width - side - 32) / max(hi[0] - lo[0], 1e-3),
                (config.height - top - 50) / max(hi[1] - lo[1], 1e-3))
    offset = np.array([(config.width - side - scale * (hi[0] - lo[0])) / 2.0, top + 8])

    def project(xyz: np.ndarray) -> _Projection:
        p = rows_times(np.asarray(xyz, np.float64).reshape(-1, 3), axes.T)
        pixels = np.stack([(p[:, 0] - lo[0]) * scale, (hi[1] - p[:, 1]) * scale], axis=1) + offset
        radius = np.clip(np.ceil(_radius_of(cloud, xyz) * scale - 0.5), 0, config.max_point_px).astype(np.int64)
        return _Projection(pixels, -p[:, 2], radius, np.ones(len(p), bool))

    image = _draw(instance_map, cloud, project, config)
    draw_scale_bar(image, scale)
    return image


def render_perspective(
    instance_map: InstanceMap, pose: np.ndarray | None = None, K: np.ndarray | None = None,
    config: RenderConfig | None = None,
) -> np.ndarray:
    """Perspective view, H x W x 3 uint8 RGB, from ``pose`` (camera-to-world) with intrinsics ``K``
    (pixels, for ``config.width`` x ``config.height``). Without a pose the camera looks at the map's
    centre from above at an angle (``viz.camera.overview_camera``); without K a 50 degree lens is used."""
    config = config or RenderConfig()
    everything = _gather(instance_map, config)
    if len(everything.xyz) == 0:
        return _empty(config, "empty map")
    if pose is None:
        auto_K, pose = overview_camera(everything.xyz, config.width, config.height, instance_map.metadata.up)
        K = auto_K if K is None else K
    elif not is_valid_pose(pose):
        raise ValueError("render_perspective: pose is not a finite rigid 4 x 4 camera-to-world transform")
    if K is None:
        K = pinhole(config.width, config.height, 50.0)
    K = np.asarray(K, np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)):
        raise ValueError(f"render_perspective: K must be a finite 3 x 3 matrix, got shape {K.shape}")
    pose = np.asarray(pose, np.float64)
    hidden = _walls_in_front(instance_map, pose[:3, 3], everything) if config.cutaway_walls else set()
    cloud = _without(everything, hidden)
    focal = float(K[0, 0])

    def project(xyz: np.ndarray) -> _Projection:
        camera = rows_times(np.asarray(xyz, np.float64).reshape(-1, 3) - pose[:3, 3], pose[:3, :3])
        z = camera[:, 2]
        valid = z > 0.05
        safe = np.where(valid, z, 1.0)
        projected = rows_times(camera, K.T)
        pixels = projected[:, :2] / safe[:, None]
        world_radius = _radius_of(cloud, xyz)
        radius = np.clip(np.ceil(world_radius * focal / safe - 0.5), 0, config.max_point_px).astype(np.int64)
        return _Projection(pixels, np.where(valid, z, np.inf), radius, valid)

    return _draw(instance_map, cloud, project, config)


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an H x W x 3 uint8 RGB image as PNG; raises OSError naming the path on failure."""
    path = Path(path)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"save_png({path}): need H x W x 3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
    if not path.parent.is_dir() or not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write PNG (does the folder exist?)")
    return path


# --------------------------------------------------------------------------------------------------
# Shared drawing


def _draw(instance_map: InstanceMap, cloud: _Cloud, project, config: RenderConfig) -> np.ndarray:
    proj = project(cloud.xyz)
    keep = np.flatnonzero(proj.valid)
    splat = fill_holes(splat_points(proj.pixels[keep], proj.depth[keep], cloud.colors[keep], proj.radius[keep],
                                    config.width, config.height, config.background))
    id_image = np.where(splat.index >= 0, cloud.owner[keep][np.maximum(splat.index, 0)], -1)
    image = outline(splat.rgb, id_image) if config.outlines else splat.rgb
    labelled = _labelled_objects(instance_map, config)
    if config.trajectory:
        _, poses = instance_map.trajectory
        path = project(poses[:, :3, 3]) if len(poses) else None
        if path is not None:
            draw_trajectory(image, path.pixels, path.valid)
    ids, positions = _label_positions(instance_map, id_image, labelled, project, config.min_label_pixels)
    if config.labels:
        draw_labels(image, ids, positions)
    if config.legend:
        draw_legend(image, _legend_rows(instance_map, ids, id_image, config))
    if config.title:
        draw_title(image, config.title)
    return image


def _gather(instance_map: InstanceMap, config: RenderConfig) -> _Cloud:
    """All drawable points with their display colours (structure faded or left out, ceiling cut)."""
    backdrop = backdrop_ids(instance_map)
    objects = [o for o in instance_map if not (o.id in backdrop and config.structure == "hide")]
    if not objects:
        return _Cloud(np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0, np.int64), np.zeros(0))
    xyz = np.concatenate([o.points for o in objects]).astype(np.float64)
    counts = np.array([o.num_points for o in objects], np.int64)
    if config.point_radius is not None:
        radius = np.full(len(xyz), float(config.point_radius))
    else:
        radius = np.repeat([config.spacing_factor * _object_spacing(o) for o in objects], counts)
    ids = np.array([o.id for o in objects], np.int64)
    owner = np.repeat(ids, counts)
    if config.color_mode == "instance":
        colors = np.repeat(id_color(ids), counts, axis=0)
    else:
        colors = np.concatenate([o.colors for o in objects])
    if config.structure == "dim":
        faded = np.repeat(np.array([o.id in backdrop for o in objects]), counts)
        colors[faded] = _faded(colors[faded], config)
    if config.cut_height is not None:
        height = rows_times(xyz, unit_up(instance_map.metadata.up)[:, None])[:, 0]
        below = height <= np.percentile(height, 1.0) + float(config.cut_height)
        xyz, colors, owner, radius = xyz[below], colors[below], owner[below], radius[below]
    return _Cloud(xyz, colors, owner, radius)


def _without(cloud: _Cloud, hidden: set[int]) -> _Cloud:
    if not hidden:
        return cloud
    keep = ~np.isin(cloud.owner, np.fromiter(hidden, np.int64))
    return _Cloud(cloud.xyz[keep], cloud.colors[keep], cloud.owner[keep], cloud.radius[keep])


def _faded(colors: np.ndarray, config: RenderConfig) -> np.ndarray:
    """Half desaturated, then moved ``structure_fade`` of the way to the background."""
    c = colors.astype(np.float32)
    grey = c.mean(axis=1, keepdims=True)
    c = 0.5 * c + 0.5 * grey
    background = np.asarray(config.background, np.float32)
    return (c * (1 - config.structure_fade) + background * config.structure_fade).astype(np.uint8)


def _radius_of(cloud: _Cloud, xyz: np.ndarray) -> np.ndarray | float:
    """Splat half-sizes (metres) for ``xyz``: the cloud's own when ``xyz`` is the cloud, else 0 (markers)."""
    return cloud.radius if xyz is cloud.xyz else 0.0


def _object_spacing(obj, samples: int = 400, seed: int = 0) -> float:
    return point_spacing(obj.points, samples, seed)


def point_spacing(points: np.ndarray, samples: int = 400, seed: int = 0) -> float:
    """Median distance (metres) from a point to its third-nearest neighbour among N x 3 ``points``
    (0 for fewer than 4 points), from ``samples`` random query points."""
    points = np.asarray(points)
    if len(points) < 4:
        return 0.0
    rng = np.random.default_rng(seed)
    queries = points[rng.choice(len(points), min(samples, len(points)), replace=False)]
    distances, _ = cKDTree(points, balanced_tree=False).query(queries, k=4)
    return float(np.median(distances[:, 3]))


def _labelled_objects(instance_map: InstanceMap, config: RenderConfig) -> np.ndarray:
    """Ids that get a label: objects, and structure too when it is shown at full colour."""
    backdrop = backdrop_ids(instance_map)
    return np.array([o.id for o in instance_map if config.structure == "show" or o.id not in backdrop], np.int64)


def _label_positions(
    instance_map: InstanceMap, id_image: np.ndarray, candidates: np.ndarray, project, min_pixels: int,
) -> tuple[np.ndarray, np.ndarray]:
    """For objects with at least ``min_pixels`` visible pixels: the visible pixel of the object nearest
    to its projected centroid (the centroid itself when it is visible; occluded objects get none).
    Returns (ids K int64, positions K x 2 float64), most visible first."""
    flat = id_image.reshape(-1)
    on = np.flatnonzero(np.isin(flat, candidates))
    if len(on) == 0:
        return np.zeros(0, np.int64), np.zeros((0, 2))
    ids, inverse, counts = np.unique(flat[on], return_inverse=True, return_counts=True)
    centroids = project(np.array([instance_map.get(i).centroid for i in ids]))
    rows, cols = np.divmod(on, id_image.shape[1])
    gap = np.hypot(cols - centroids.pixels[inverse, 0], rows - centroids.pixels[inverse, 1])
    order = np.lexsort((gap, inverse))
    first = order[np.concatenate([[True], inverse[order][1:] != inverse[order][:-1]])]
    positions = np.stack([cols[first], rows[first]], axis=1).astype(np.float64)
    shown = (counts >= min_pixels) & centroids.valid
    rank = np.argsort(-counts[shown], kind="stable")
    return ids[shown][rank], positions[shown][rank]


def _legend_rows(instance_map: InstanceMap, ids: np.ndarray, id_image: np.ndarray, config: RenderConfig) -> list:
    rows: list = []
    for object_id in ids[: config.legend_rows].tolist():
        obj = instance_map.get(object_id)
        color = id_color(object_id)[0] if config.color_mode == "instance" else obj.colors.mean(axis=0)
        rows.append((tuple(int(c) for c in color), _legend_text(obj)))
    if len(ids) > config.legend_rows:
        rows.append(((255, 255, 255), f"... {len(ids) - config.legend_rows} more visible"))
    structure = backdrop_ids(instance_map)
    if structure and config.structure != "hide":
        state = "dimmed" if config.structure == "dim" else "shown"
        parts = "part" if len(structure) == 1 else "parts"
        rows.append(((215, 215, 215), f"floor, walls, ceiling: {len(structure)} {parts}, {state}"))
    if config.trajectory and instance_map.num_frames:
        rows.append((None, f"camera path ({len(instance_map.trajectory[0])} poses)"))
    return rows


def _reserved_for_legend(instance_map: InstanceMap, config: RenderConfig) -> int:
    """Pixels to keep free on the right of a floor plan for the legend (the widest rows it may get, at
    most a third of the width), so the legend never covers the plan."""
    if not config.legend or config.width < 400 or len(instance_map) == 0:
        return 0
    backdrop = backdrop_ids(instance_map)
    texts = [_legend_text(o) for o in instance_map if o.id not in backdrop][: 4 * config.legend_rows]
    return min(legend_width(texts + ["floor, walls, ceiling: 00 parts, dimmed", "camera path (0000 poses)"]) + 12,
               config.width // 3)


def _legend_text(obj) -> str:
    """Id, name (the object's "label" or "kind" attribute, else its shape and size) and point count."""
    name = obj.attributes.get("label") or obj.attributes.get("kind") or shape_name(obj)
    return f"{obj.id}  {name}  {obj.num_points} pts"


def shape_name(obj) -> str:
    """A name from the oriented box alone: "flat 1.2 x 0.6 m" for a plane, else "0.8 x 0.6 x 0.7 m"
    (extents largest first)."""
    extents = np.sort(np.asarray(obj.obb_extents, np.float64))[::-1]
    if extents[2] < 0.15 * extents[1]:
        return f"flat {extents[0]:.1f} x {extents[1]:.1f} m"
    return f"{extents[0]:.1f} x {extents[1]:.1f} x {extents[2]:.1f} m"


def backdrop_ids(instance_map: InstanceMap) -> set[int]:
    """Ids drawn as the room rather than its contents (``scene.structure.structure_ids``: the map's
    structure flags, and walls an online map has not flagged yet). These are dimmed, hidden or cut away
    as ``RenderConfig.structure`` says, and the legend counts them."""
    return structure_ids(instance_map)


def _walls_in_front(instance_map: InstanceMap, eye: np.ndarray, cloud: _Cloud) -> set[int]:
    """Ids of vertical planar structure objects on the camera's side of the scene's centre."""
    up = unit_up(instance_map.metadata.up)
    centre = np.percentile(cloud.xyz, 50, axis=0)
    hidden = set()
    backdrop = backdrop_ids(instance_map)
    for obj in instance_map:
        if obj.id not in backdrop:
            continue
        thin = int(np.argmin(obj.obb_extents))
        normal = obj.obb_rotation[:, thin]
        planar = obj.obb_extents[thin] < 0.15 * obj.obb_extents.max()
        vertical = abs(float(normal @ up)) < 0.3
        outward = normal * np.sign(float(normal @ (obj.obb_center - centre)) or 1.0)
        if planar and vertical and float(outward @ (eye - obj.obb_center)) > 0:
            hidden.add(obj.id)
    return hidden


def _empty(config: RenderConfig, text: str) -> np.ndarray:
    image = np.empty((config.height, config.width, 3), np.uint8)
    image[:] = np.asarray(config.background, np.uint8)
    draw_title(image, f"{config.title}: {text}" if config.title else text)
    return image
