"""Furniture-like objects built from several primitives, in local coordinates.

Each builder returns a `Furniture`: its pieces (mesh + material) with the footprint centred on the
origin and the base at z = 0 (metres), the footprint size, and the support surfaces (height and size)
that smaller objects may stand on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .primitives import Mesh, box, cylinder, sphere
from .textures import CHECKER, NOISE, PLAIN, STRIPES, MaterialSpec, random_colour, random_material


@dataclass
class Support:
    """A horizontal surface at height ``z`` (m) of size ``size`` (sx, sy) centred at ``centre`` (x, y), local
    frame; objects up to ``clearance`` metres tall fit on it."""

    z: float
    size: tuple
    centre: tuple = (0.0, 0.0)
    clearance: float = 1.0


@dataclass
class Furniture:
    kind: str
    pieces: list[tuple[Mesh, MaterialSpec]]
    footprint: tuple
    height: float
    supports: list[Support] = field(default_factory=list)


def _legs(rng, sx, sy, height, thickness, material, inset=0.03) -> list[tuple[Mesh, MaterialSpec]]:
    xs = (-sx / 2 + inset + thickness / 2, sx / 2 - inset - thickness / 2)
    ys = (-sy / 2 + inset + thickness / 2, sy / 2 - inset - thickness / 2)
    return [(box((thickness, thickness, height), (x, y, height / 2), bottom=False), material) for x in xs for y in ys]


def table(rng: np.random.Generator, size=None) -> Furniture:
    sx, sy = size if size is not None else (rng.uniform(0.9, 1.6), rng.uniform(0.6, 0.9))
    height = rng.uniform(0.7, 0.78)
    top_t = rng.uniform(0.03, 0.05)
    top = random_material(rng, patterns=(PLAIN, STRIPES, NOISE))
    legs = random_material(rng, patterns=(PLAIN,))
    pieces = [(box((sx, sy, top_t), (0, 0, height - top_t / 2)), top)]
    pieces += _legs(rng, sx, sy, height - top_t, rng.uniform(0.04, 0.07), legs)
    return Furniture("table", pieces, (sx, sy), height, [Support(height, (sx - 0.04, sy - 0.04), clearance=0.5)])


def chair(rng: np.random.Generator) -> Furniture:
    s = rng.uniform(0.4, 0.5)
    seat_h = rng.uniform(0.42, 0.48)
    seat_t = 0.04
    frame = random_material(rng, patterns=(PLAIN,))
    seat = random_material(rng, patterns=(PLAIN, CHECKER, NOISE))
    back_h = rng.uniform(0.35, 0.5)
    pieces = [(box((s, s, seat_t), (0, 0, seat_h - seat_t / 2)), seat)]
    pieces += _legs(rng, s, s, seat_h - seat_t, 0.04, frame, inset=0.01)
    pieces.append((box((s, 0.04, back_h), (0, s / 2 - 0.02, seat_h + back_h / 2)), seat))
    return Furniture("chair", pieces, (s, s), seat_h + back_h)


def shelf(rng: np.random.Generator) -> Furniture:
    sx, sy = rng.uniform(0.7, 1.2), rng.uniform(0.3, 0.4)
    height = rng.uniform(1.2, 1.9)
    t = 0.025
    frame = random_material(rng, patterns=(PLAIN, NOISE))
    boards = random_material(rng, patterns=(PLAIN, STRIPES))
    pieces = [
        (box((t, sy, height), (-sx / 2 + t / 2, 0, height / 2), bottom=False), frame),
        (box((t, sy, height), (sx / 2 - t / 2, 0, height / 2), bottom=False), frame),
        (box((sx - 2 * t, t, height), (0, sy / 2 - t / 2, height / 2), bottom=False), frame),
        (box((sx, sy, t), (0, 0, height - t / 2)), frame),
    ]
    levels = np.linspace(0.08, height - t, int(rng.integers(3, 5)))[:-1]
    spacing = levels[1] - levels[0] if len(levels) > 1 else height
    supports = []
    for z in levels:
        pieces.append((box((sx - 2 * t, sy - t, t), (0, -t / 2, z - t / 2), bottom=z > 0.1), boards))
        supports.append(Support(z, (sx - 2 * t, sy - t - 0.02), (0.0, -t / 2), clearance=spacing - t - 0.03))
    return Furniture("shelf", pieces, (sx, sy), height, supports)


def crate(rng: np.random.Generator, size=None) -> Furniture:
    size = size if size is not None else (rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.6), rng.uniform(0.25, 0.6))
    material = random_material(rng)
    mesh = box(size, (0, 0, size[2] / 2), bottom=False)
    top = Support(size[2], (size[0], size[1]), clearance=0.6)
    return Furniture("box", [(mesh, material)], size[:2], size[2], [top])


def cabinet(rng: np.random.Generator) -> Furniture:
    sx, sy, sz = rng.uniform(0.6, 1.2), rng.uniform(0.4, 0.55), rng.uniform(0.7, 1.0)
    body = random_material(rng, patterns=(PLAIN, NOISE))
    handle = MaterialSpec(tuple(random_colour(rng)), (0, 0, 0))
    pieces = [(box((sx, sy, sz), (0, 0, sz / 2), bottom=False), body)]
    pieces += [(box((0.12, 0.02, 0.03), (x, -sy / 2 - 0.01, sz * 0.8), bottom=True), handle) for x in (-sx / 4, sx / 4)]
    # footprint symmetric about the origin and wide enough for the handles in front (-y)
    return Furniture("cabinet", pieces, (sx, sy + 0.04), sz, [Support(sz, (sx, sy), clearance=0.6)])


def sofa(rng: np.random.Generator) -> Furniture:
    sx, sy = rng.uniform(1.4, 2.1), rng.uniform(0.75, 0.95)
    seat_h, back_h, arm_w = rng.uniform(0.38, 0.45), rng.uniform(0.35, 0.5), rng.uniform(0.12, 0.2)
    fabric = random_material(rng, patterns=(PLAIN, NOISE, CHECKER))
    cushion = random_material(rng, base_rgb=np.asarray(fabric.base) * 0.85, patterns=(PLAIN, NOISE))
    back_t = rng.uniform(0.15, 0.22)
    arm_h = seat_h + rng.uniform(0.12, 0.22)
    pieces = [
        (box((sx - 2 * arm_w, sy - back_t, seat_h), (0, -back_t / 2, seat_h / 2), bottom=False), cushion),
        (box((sx, back_t, seat_h + back_h), (0, sy / 2 - back_t / 2, (seat_h + back_h) / 2), bottom=False), fabric),
        (box((arm_w, sy - back_t, arm_h), (-sx / 2 + arm_w / 2, -back_t / 2, arm_h / 2), bottom=False), fabric),
        (box((arm_w, sy - back_t, arm_h), (sx / 2 - arm_w / 2, -back_t / 2, arm_h / 2), bottom=False), fabric),
    ]
    seat = Support(seat_h, (sx - 2 * arm_w - 0.05, sy - back_t - 0.05), (0.0, -back_t / 2), clearance=0.4)
    return Furniture("sofa", pieces, (sx, sy), seat_h + back_h, [seat])


def bin_(rng: np.random.Generator) -> Furniture:
    r, h = rng.uniform(0.12, 0.2), rng.uniform(0.3, 0.5)
    return Furniture("bin", [(cylinder(r, h, (0, 0, 0)), random_material(rng))], (2 * r, 2 * r), h)


def lamp(rng: np.random.Generator) -> Furniture:
    base_r, height = rng.uniform(0.12, 0.18), rng.uniform(1.2, 1.7)
    metal = random_material(rng, patterns=(PLAIN,))
    shade = MaterialSpec(tuple(random_colour(rng) * 0.3 + 0.65), (1, 1, 1))
    shade_h = rng.uniform(0.2, 0.3)
    pieces = [
        (cylinder(base_r, 0.03, (0, 0, 0)), metal),
        (cylinder(0.015, height - shade_h, (0, 0, 0.03), segments=10), metal),
        (cylinder(rng.uniform(0.15, 0.22), shade_h, (0, 0, height - shade_h)), shade),
    ]
    reach = max(base_r, 0.22)
    return Furniture("lamp", pieces, (2 * reach, 2 * reach), height)


def ball(rng: np.random.Generator, radius=None) -> Furniture:
    r = radius if radius is not None else rng.uniform(0.08, 0.18)
    return Furniture("ball", [(sphere(r, (0, 0, r)), random_material(rng))], (2 * r, 2 * r), 2 * r)


def small_box(rng: np.random.Generator) -> Furniture:
    return crate(rng, size=(rng.uniform(0.08, 0.3), rng.uniform(0.08, 0.25), rng.uniform(0.05, 0.25)))


def can(rng: np.random.Generator) -> Furniture:
    r, h = rng.uniform(0.03, 0.07), rng.uniform(0.08, 0.25)
    f = Furniture("cylinder", [(cylinder(r, h, (0, 0, 0), segments=20), random_material(rng))], (2 * r, 2 * r), h)
    return f


def small_ball(rng: np.random.Generator) -> Furniture:
    return ball(rng, radius=rng.uniform(0.04, 0.09))


FLOOR_KINDS = {
    "table": table, "chair": chair, "shelf": shelf, "box": crate, "cabinet": cabinet, "sofa": sofa,
    "bin": bin_, "lamp": lamp, "ball": ball,
}
SMALL_KINDS = {"box": small_box, "cylinder": can, "ball": small_ball}
