"""Procedural solid textures: albedo looked up from 3D world position (no UVs needed).

A material is two colours mixed by a pattern evaluated at the surface point: plain, stripes, checker or
smooth noise (a sum of random plane waves). Evaluation is vectorised over points, each point carrying its
own material index, so one call shades a whole image.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PLAIN, STRIPES, CHECKER, NOISE = 0, 1, 2, 3
PATTERN_NAMES = ("plain", "stripes", "checker", "noise")
_NUM_WAVES = 4


@dataclass
class MaterialTable:
    """Materials stored as parallel arrays (row = material index).

    ``base``/``second``: M x 3 float32 RGB in [0, 1]; ``pattern``: M int32; ``period``: M float64 metres;
    ``direction``: M x 3 unit vectors (stripe normal); ``waves``: M x K x 3 wave vectors (rad/m);
    ``phases``: M x K radians; ``origin``: world position (m) of the room corner the patterns are laid out
    from, so a room moved in the world keeps its textures.
    """

    base: np.ndarray
    second: np.ndarray
    pattern: np.ndarray
    period: np.ndarray
    direction: np.ndarray
    waves: np.ndarray
    phases: np.ndarray
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def __len__(self) -> int:
        return len(self.base)


@dataclass
class MaterialSpec:
    """One material before packing into a table."""

    base: tuple
    second: tuple
    pattern: int = PLAIN
    period: float = 0.1
    direction: tuple = (1.0, 0.0, 0.0)
    waves: np.ndarray | None = None
    phases: np.ndarray | None = None


def random_material(rng: np.random.Generator, base_rgb=None, patterns=(PLAIN, STRIPES, CHECKER, NOISE)) -> MaterialSpec:
    """A random material around ``base_rgb`` (random if None) with a contrasting second colour."""
    base = np.asarray(base_rgb if base_rgb is not None else random_colour(rng), dtype=np.float64)
    pattern = int(rng.choice(patterns))
    contrast = rng.uniform(0.15, 0.45)
    second = np.clip(base * rng.uniform(0.4, 0.8) + contrast * rng.uniform(0, 1, 3) * (pattern != PLAIN), 0, 1)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    period = rng.uniform(0.03, 0.25)
    waves = rng.normal(size=(_NUM_WAVES, 3)) * (2 * np.pi / rng.uniform(0.05, 0.4))
    phases = rng.uniform(0, 2 * np.pi, _NUM_WAVES)
    return MaterialSpec(tuple(base), tuple(second), pattern, period, tuple(direction), waves, phases)


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated-ish random RGB colour in [0, 1] (HSV sampling), occasionally dark or near-white."""
    hue = rng.uniform(0, 1)
    sat = rng.uniform(0.25, 0.85)
    val = rng.choice([rng.uniform(0.06, 0.18), rng.uniform(0.35, 0.95)], p=[0.15, 0.85])
    return hsv_to_rgb(hue, sat, val)


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def pack_materials(specs: list[MaterialSpec]) -> MaterialTable:
    """Stack material specs into a MaterialTable."""
    zeros_w = np.zeros((_NUM_WAVES, 3))
    zeros_p = np.zeros(_NUM_WAVES)
    return MaterialTable(
        base=np.array([s.base for s in specs], dtype=np.float32),
        second=np.array([s.second for s in specs], dtype=np.float32),
        pattern=np.array([s.pattern for s in specs], dtype=np.int32),
        period=np.array([s.period for s in specs], dtype=np.float64),
        direction=np.array([s.direction for s in specs], dtype=np.float64),
        waves=np.stack([zeros_w if s.waves is None else s.waves for s in specs]).astype(np.float64),
        phases=np.stack([zeros_p if s.phases is None else s.phases for s in specs]).astype(np.float64),
    )


def albedo_at(points: np.ndarray, material: np.ndarray, table: MaterialTable) -> np.ndarray:
    """Albedo (N x 3 float32 in [0, 1]) of world points ``points`` (N x 3, m) with material indices ``material``."""
    weight = pattern_weight(points - table.origin, material, table)[:, None]
    return ((1.0 - weight) * table.base[material] + weight * table.second[material]).astype(np.float32)


def pattern_weight(points: np.ndarray, material: np.ndarray, table: MaterialTable) -> np.ndarray:
    """Mix weight in [0, 1] of the second colour at each point (float32). Each pattern is evaluated only
    on the points whose material uses it."""
    kind = table.pattern[material]
    weight = np.zeros(len(points), dtype=np.float32)
    for pattern, evaluate in ((STRIPES, _stripes), (CHECKER, _checker), (NOISE, _noise)):
        sel = np.flatnonzero(kind == pattern)
        if len(sel):
            weight[sel] = evaluate(points[sel], material[sel], table)
    return weight


# Cell boundaries are shifted by a quarter period so that axis-aligned planes through the room's corner (the
# floor, the walls x = 0 and y = 0 of the room frame) do not sit on a boundary, where rounding would flip cells.
_PHASE = 0.25


def _stripes(points, material, table) -> np.ndarray:
    along = np.einsum("ij,ij->i", points, table.direction[material])
    return np.floor(along / table.period[material] + _PHASE) % 2.0


def _checker(points, material, table) -> np.ndarray:
    return np.floor(points / table.period[material][:, None] + _PHASE).sum(axis=1) % 2.0


def _noise(points, material, table) -> np.ndarray:
    waves = np.sin(np.einsum("nj,nkj->nk", points, table.waves[material]) + table.phases[material]).sum(axis=1)
    return 0.5 + 0.5 * np.tanh(waves)
