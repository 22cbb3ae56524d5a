"""Scene construction: a box-shaped room (floor, walls, ceiling) filled with furniture and small objects.

Room frame: metres, z up, floor at z = 0, the room spans [0, size_x] x [0, size_y] x [0, height]. A built
layout is placed in the world by ``Layout.translated`` (the room's corner at ``origin``).
Structure and every object get their own instance id (1, 2, ...; 0 is void). Floor objects are packed as
axis-aligned footprints by rejection sampling; small objects stand on the support surfaces (table tops,
shelf boards, box tops) of floor objects.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .furniture import FLOOR_KINDS, SMALL_KINDS, Furniture
from .packing import RectPacker
from .primitives import Mesh, quad
from .textures import CHECKER, NOISE, PLAIN, STRIPES, MaterialSpec, MaterialTable, hsv_to_rgb, pack_materials


@dataclass
class SceneObject:
    """Ground-truth object: ``aabb_min``/``aabb_max`` in world metres, ``color`` RGB uint8 of its main part."""

    id: int
    kind: str
    is_structure: bool
    aabb_min: tuple
    aabb_max: tuple
    color: tuple

    def to_json(self) -> dict:
        return {
            "id": self.id, "kind": self.kind, "is_structure": self.is_structure,
            "aabb_min": list(self.aabb_min), "aabb_max": list(self.aabb_max), "color": list(self.color),
        }


@dataclass
class Part:
    mesh: Mesh
    instance_id: int
    material: int


@dataclass
class Layout:
    """A built scene: ``room_size`` (x, y, height) metres, its parts, materials and object list, in the world
    frame; ``origin``: the world position of the room's corner (the room spans ``origin + [0, size]``)."""

    room_size: tuple
    parts: list[Part]
    materials: MaterialTable
    objects: list[SceneObject]
    focus: tuple | None = None  # (x, y, z) the camera should look at (tabletop), else None
    origin: tuple = (0.0, 0.0, 0.0)

    def translated(self, offset) -> "Layout":
        """The same room moved by ``offset`` (3 metres) in the world: surfaces, boxes, focus and origin
        (textures stay on the surfaces: they are laid out from the origin)."""
        offset = np.asarray(offset, np.float64)
        move = lambda point: tuple(float(v) for v in np.asarray(point, np.float64) + offset)  # noqa: E731
        parts = [Part(p.mesh.translated(offset), p.instance_id, p.material) for p in self.parts]
        objects = [replace(o, aabb_min=move(o.aabb_min), aabb_max=move(o.aabb_max)) for o in self.objects]
        origin = move(self.origin)
        materials = replace(self.materials, origin=np.asarray(origin))
        focus = None if self.focus is None else move(self.focus)
        return Layout(self.room_size, parts, materials, objects, focus, origin)


@dataclass
class LayoutConfig:
    """How to fill a room. Ranges are (low, high), metres or counts (inclusive)."""

    room_x: tuple = (5.2, 6.5)
    room_y: tuple = (4.4, 5.5)
    room_height: tuple = (2.6, 2.9)
    ceiling: bool = True
    num_objects: tuple = (15, 25)  # non-structure objects, all kinds together
    floor_fraction: float = 0.6  # share of objects standing on the floor (rest stand on supports)
    floor_kinds: dict = field(default_factory=lambda: {
        "table": 2.0, "chair": 2.5, "shelf": 1.2, "box": 1.5, "cabinet": 1.2, "sofa": 1.0, "bin": 0.8, "lamp": 0.6,
        "ball": 0.5,
    })
    # probability that a floor object of this kind stands with its back (local +y) against a wall
    against_wall: dict = field(default_factory=lambda: {
        "shelf": 1.0, "cabinet": 1.0, "sofa": 0.8, "table": 0.3, "box": 0.4, "lamp": 0.5,
    })
    chair_at_table: float = 0.6  # probability that a chair is pushed against a table, facing it
    central_table: bool = False  # tabletop: one large table in the room centre, most objects on it
    touch_prob: float = 0.35
    wall_margin: float = 0.02


class _Builder:
    def __init__(self):
        self.parts: list[Part] = []
        self.materials: list[MaterialSpec] = []
        self.objects: list[SceneObject] = []

    def add(self, kind: str, pieces: list[tuple[Mesh, MaterialSpec]], is_structure: bool = False) -> int:
        instance_id = len(self.objects) + 1
        for mesh, material in pieces:
            self.materials.append(material)
            self.parts.append(Part(mesh, instance_id, len(self.materials) - 1))
        vertices = np.concatenate([m.vertices for m, _ in pieces])
        colour = tuple(int(c) for c in np.round(np.asarray(pieces[0][1].base) * 255).astype(np.uint8))
        self.objects.append(SceneObject(
            instance_id, kind, is_structure,
            tuple(float(v) for v in vertices.min(0)), tuple(float(v) for v in vertices.max(0)), colour,
        ))
        return instance_id


def build_layout(config: LayoutConfig, rng: np.random.Generator, keepout_factory=None) -> Layout:
    """Build a room. ``keepout_factory(room_size) -> keepout(points_xy) -> bool`` reserves floor space
    (the camera path) that floor objects must not cover."""
    size = (rng.uniform(*config.room_x), rng.uniform(*config.room_y), rng.uniform(*config.room_height))
    builder = _Builder()
    _add_structure(builder, size, config.ceiling, rng)
    keepout = keepout_factory(size) if keepout_factory is not None else None
    m = config.wall_margin
    floor = RectPacker((m, m, size[0] - m, size[1] - m), keepout)
    target = int(rng.integers(config.num_objects[0], config.num_objects[1] + 1))
    supports: list[tuple[np.ndarray, float, float]] = []  # (rect, z, clearance)
    focus, tables = None, []
    if config.central_table:
        focus, table_rect = _place_central_table(builder, floor, supports, size, rng)
        tables.append(table_rect)
    _place_floor_objects(builder, floor, supports, config, rng, round(target * config.floor_fraction), tables)
    _place_small_objects(builder, supports, rng, target, config.central_table)
    return Layout(size, builder.parts, pack_materials(builder.materials), builder.objects, focus)


def _add_structure(builder: _Builder, size, ceiling: bool, rng) -> None:
    sx, sy, h = size
    floor_mat = MaterialSpec(
        tuple(hsv_to_rgb(rng.uniform(0.05, 0.12), rng.uniform(0.3, 0.6), rng.uniform(0.45, 0.7))),
        tuple(hsv_to_rgb(rng.uniform(0.05, 0.12), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.45))),
        int(rng.choice([CHECKER, STRIPES])), rng.uniform(0.3, 0.6), (1.0, 0.0, 0.0),
    )
    builder.add("floor", [(quad((0, 0, 0), (sx, 0, 0), (0, sy, 0)), floor_mat)], is_structure=True)
    corners = [(0, 0), (sx, 0), (sx, sy), (0, sy)]
    for k in range(4):
        a, b = np.array(corners[k], dtype=float), np.array(corners[(k + 1) % 4], dtype=float)
        wall_colour = hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.05, 0.3), rng.uniform(0.7, 0.95))
        mat = MaterialSpec(tuple(wall_colour), tuple(wall_colour * 0.9), int(rng.choice([PLAIN, NOISE])))
        if mat.pattern == NOISE:
            mat.waves = rng.normal(size=(4, 3)) * 8.0
            mat.phases = rng.uniform(0, 2 * np.pi, 4)
        # b - a runs counter-clockwise, so (0, 0, h) x (b - a) points into the room
        builder.add("wall", [(quad((*a, 0.0), (0, 0, h), (*(b - a), 0.0)), mat)], is_structure=True)
    if ceiling:
        white = MaterialSpec((0.92, 0.92, 0.9), (0.92, 0.92, 0.9))
        builder.add("ceiling", [(quad((0, 0, h), (0, sy, 0), (sx, 0, 0)), white)], is_structure=True)


def _place(furniture: Furniture, rect: np.ndarray, z: float, yaw_quarter: int) -> list[tuple[Mesh, MaterialSpec]]:
    centre = (rect[:2] + rect[2:]) / 2
    yaw = yaw_quarter * np.pi / 2
    offset = (centre[0], centre[1], z)
    return [(mesh.rotated_z(yaw, (0.0, 0.0)).translated(offset), mat) for mesh, mat in furniture.pieces]


def _footprint(furniture: Furniture, yaw_quarter: int) -> np.ndarray:
    fx, fy = furniture.footprint
    return np.array((fy, fx) if yaw_quarter % 2 else (fx, fy), dtype=np.float64)


def _world_supports(furniture: Furniture, rect, z0: float, yaw_quarter: int):
    centre = (rect[:2] + rect[2:]) / 2
    c, s = np.cos(yaw_quarter * np.pi / 2), np.sin(yaw_quarter * np.pi / 2)
    out = []
    for sup in furniture.supports:
        local = np.array(sup.centre)
        world_c = centre + np.array([c * local[0] - s * local[1], s * local[0] + c * local[1]])
        half = np.array(sup.size[::-1] if yaw_quarter % 2 else sup.size) / 2
        out.append((np.concatenate([world_c - half, world_c + half]), z0 + sup.z, sup.clearance))
    return out


def _place_central_table(builder, floor: RectPacker, supports, size, rng) -> tuple[tuple, np.ndarray]:
    furniture = FLOOR_KINDS["table"](rng, size=(rng.uniform(1.4, 1.8), rng.uniform(0.8, 1.0)))
    fp = _footprint(furniture, 0)
    centre = np.array(size[:2]) / 2
    rect = np.concatenate([centre - fp / 2, centre + fp / 2])
    floor.add(rect)
    builder.add("table", _place(furniture, rect, 0.0, 0))
    supports.extend(_world_supports(furniture, rect, 0.0, 0))
    return (float(centre[0]), float(centre[1]), float(furniture.height)), rect


def _place_floor_objects(
    builder, floor: RectPacker, supports, config: LayoutConfig, rng, count: int, tables: list[np.ndarray]
) -> None:
    kinds = list(config.floor_kinds)
    weights = np.array([config.floor_kinds[k] for k in kinds], dtype=np.float64)
    placed = 0
    for _ in range(count * 4):
        if placed >= count:
            break
        kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
        furniture = FLOOR_KINDS[kind](rng)
        if kind == "chair" and tables and rng.uniform() < config.chair_at_table:
            yaw, rect = _place_at_table(floor, furniture, tables[int(rng.integers(len(tables)))], rng)
        elif rng.uniform() < config.against_wall.get(kind, 0.0):
            yaw, rect = _place_against_wall(floor, furniture, rng)
        else:
            yaw = int(rng.integers(4))
            rect = floor.place(_footprint(furniture, yaw), rng, touch_prob=config.touch_prob)
        if rect is None:
            continue
        builder.add(furniture.kind, _place(furniture, rect, 0.0, yaw))
        supports.extend(_world_supports(furniture, rect, 0.0, yaw))
        if kind == "table":
            tables.append(rect)
        placed += 1


_TABLE_SIDE_YAW = (2, 0, 1, 3)  # quarter turns that make a chair south, north, west, east of a table face it


def _place_at_table(floor: RectPacker, furniture: Furniture, table: np.ndarray, rng) -> tuple[int, np.ndarray | None]:
    """A chair flush against a random side of ``table`` (x0, y0, x1, y1), facing it."""
    side = int(rng.integers(4))
    yaw = _TABLE_SIDE_YAW[side]
    fx, fy = _footprint(furniture, yaw)
    x0, y0, x1, y1 = table
    strips = ((x0, y0 - fy, x1, y0), (x0, y1, x1, y1 + fy), (x0 - fx, y0, x0, y1), (x1, y0, x1 + fx, y1))
    return yaw, floor.place((fx, fy), rng, tries=64, within=strips[side])


_WALL_YAW = (2, 3, 0, 1)  # quarter turns that put local +y towards the south, east, north, west wall


def _place_against_wall(floor: RectPacker, furniture: Furniture, rng) -> tuple[int, np.ndarray | None]:
    wall = int(rng.integers(4))
    yaw = _WALL_YAW[wall]
    fx, fy = _footprint(furniture, yaw)
    x0, y0, x1, y1 = floor.region
    strips = ((x0, y0, x1, y0 + fy), (x1 - fx, y0, x1, y1), (x0, y1 - fy, x1, y1), (x0, y0, x0 + fx, y1))
    return yaw, floor.place((fx, fy), rng, within=strips[wall])


def _place_small_objects(builder, supports, rng, target: int, prefer_first: bool) -> None:
    if not supports:
        return
    packers = [RectPacker(rect) for rect, _, _ in supports]
    kinds = list(SMALL_KINDS)
    for _ in range(target * 6):
        if len(builder.objects) - _num_structure(builder) >= target:
            break
        k = 0 if prefer_first and rng.uniform() < 0.8 else int(rng.integers(len(supports)))
        rect_s, z, clearance = supports[k]
        furniture = SMALL_KINDS[kinds[rng.integers(len(kinds))]](rng)
        if furniture.height > clearance:
            continue
        yaw = int(rng.integers(4))
        rect = packers[k].place(_footprint(furniture, yaw), rng, touch_prob=0.3)
        if rect is None:
            continue
        builder.add(furniture.kind, _place(furniture, rect, z, yaw))


def _num_structure(builder) -> int:
    return sum(o.is_structure for o in builder.objects)
