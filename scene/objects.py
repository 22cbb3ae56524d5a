"""Map objects and the map's metadata: ``MapObject`` (one persistent object: points, statistics, boxes),
``oriented_box`` and ``MapMetadata``. The map holding them is ``scene.map.InstanceMap``.

Units and frames: metres, world frame; camera poses are 4 x 4 camera-to-world with OpenCV camera axes.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from lift3d.lift import DEFAULT_VOXEL_SIZE


NO_OBJECT = -1


DEFAULT_COLOR = 128
# What ``MapObject.with_statistics`` shares with the object it copies rather than changes
_GEOMETRY_FIELDS = frozenset({"id", "points", "colors", "weights", "obb_center", "obb_rotation", "obb_extents",
                              "aabb_min", "aabb_max", "centroid"})


def oriented_box(points: np.ndarray, up: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA-oriented bounding box of N x 3 points (metres, world frame).

    Returns ``(centre (3,), rotation (3, 3), extents (3,))`` in float64: the rotation's columns are the
    box axes in world coordinates (right-handed, major axis first), the extents are full side lengths.
    With ``up`` (a world-frame vector, e.g. gravity's opposite) the third axis is ``up`` itself and the
    PCA runs in the plane orthogonal to it, so boxes of furniture stay upright.
    """
    p = np.asarray(points, dtype=np.float64)
    mean = p.mean(axis=0)
    centred = p - mean
    axes = _principal_axes(centred) if up is None else _upright_axes(centred, unit_vector(up, "up"))
    local = rows_times(centred, axes)
    lo, hi = column_bounds(local)
    return mean + axes @ ((lo + hi) / 2.0), axes, hi - lo


def column_bounds(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows.min(axis=0), rows.max(axis=0))`` of an N x M array (M small), the same values, taken column
    by column: numpy reduces a tall, narrow array across its rows 5-20x slower (measured here on N x 3,
    N = 3000: 660 us against 75 us), and min and max do not depend on the order they are taken in."""
    columns = range(rows.shape[1])
    return (np.array([rows[:, k].min() for k in columns], rows.dtype),
            np.array([rows[:, k].max() for k in columns], rows.dtype))


def rows_times(rows: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``rows @ matrix`` for N x 3 rows and a 3 x M matrix, as float64 column arithmetic.

    OpenBLAS runs such tall, 3-wide products 10-50x slower than plain numpy on a loaded machine
    (measured here: 0.6-1.2 s for 1M x 3 @ 3 x 3), so the hot paths avoid it.
    """
    columns = np.asarray(rows, dtype=np.float64).T
    matrix = np.asarray(matrix, dtype=np.float64)
    out = np.empty((columns.shape[1], matrix.shape[1]), np.float64)
    for j in range(matrix.shape[1]):
        out[:, j] = columns[0] * matrix[0, j] + columns[1] * matrix[1, j] + columns[2] * matrix[2, j]
    return out


def well_observed(points: np.ndarray, colors: np.ndarray, weights: np.ndarray, share: float):
    """The voxels (points, colours, hit counts) lifted at least ``share`` x the object's median hit count:
    voxels seen once or twice on an object seen in many frames are flying pixels at depth edges or
    stray association, and they would stretch its box."""
    if share <= 0 or weights.size == 0:
        return points, colors, weights
    keep = weights >= share * np.median(weights)
    return points[keep], colors[keep], weights[keep]


def _principal_axes(centred: np.ndarray) -> np.ndarray:
    _, vectors = np.linalg.eigh(centred.T @ centred)
    major, middle = _positive(vectors[:, 2]), _positive(vectors[:, 1])
    return np.stack([major, middle, cross3(major, middle)], axis=1)


def _upright_axes(centred: np.ndarray, up: np.ndarray) -> np.ndarray:
    helper = np.eye(3)[np.argmin(np.abs(up))]
    e1 = unit_vector(helper - helper.dot(up) * up, "up")
    e2 = cross3(up, e1)
    plane = rows_times(centred, np.stack([e1, e2], axis=1))
    _, vectors = np.linalg.eigh(plane.T @ plane)
    major = _positive(e1 * vectors[0, 1] + e2 * vectors[1, 1])
    return np.stack([major, cross3(up, major), up], axis=1)


def cross3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.cross`` of two float64 3-vectors, the same values (each component one product less another,
    rounded as numpy rounds them) without its ~20 us of array handling: boxes are built by the thousand."""
    a0, a1, a2 = a.tolist()
    b0, b1, b2 = b.tolist()
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def _positive(axis: np.ndarray) -> np.ndarray:
    """Flip an axis so its largest component is positive: a deterministic sign for eigenvectors."""
    return axis if axis[np.argmax(np.abs(axis))] >= 0 else -axis


def unit_vector(vector: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(v)) if v.shape == (3,) else 0.0
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError(f"{name} must be a finite non-zero 3-vector, got {vector!r}")
    return v / norm


@dataclass(eq=False)
class MapObject:
    """One persistent 3D object of the map.

    - ``id``: stable non-negative integer id.
    - ``points``: N x 3 float32 metres, world frame (N >= 1); ``colors``: N x 3 uint8 RGB (grey if not
      given); ``weights``: optional N float32 per-point support (e.g. how many frames saw the point).
    - ``num_observations``: frames in which a segment was associated with the object;
      ``first_frame``/``last_frame``: frame indices of the first and last of them (-1 if unknown).
    - ``confidence`` in [0, 1]; ``best_view_frame`` (-1 if none) and ``best_view_box`` (4 float32
      x0 y0 x1 y1 pixels) name the frame that shows the object best; ``is_structure`` marks floor,
      walls and ceiling; ``attributes``: free JSON-serialisable dict (tuples come back as lists).
    - ``obb_center`` (3), ``obb_rotation`` (3 x 3, columns = box axes) and ``obb_extents`` (3, full side
      lengths), float64: computed by ``oriented_box`` when not given (use ``from_points`` for an ``up``).
    - Derived, always from the points: ``aabb_min``/``aabb_max`` (float32, tight), ``centroid`` (float64
      mean), ``num_points``.
    Replace objects rather than mutating them in place: the map only sees changes passed to ``update``.
    """

    id: int
    points: np.ndarray
    colors: np.ndarray | None = None
    weights: np.ndarray | None = None
    num_observations: int = 1
    first_frame: int = -1
    last_frame: int = -1
    confidence: float = 1.0
    best_view_frame: int = -1
    best_view_box: np.ndarray | None = None
    is_structure: bool = False
    attributes: dict = field(default_factory=dict)
    obb_center: np.ndarray | None = None
    obb_rotation: np.ndarray | None = None
    obb_extents: np.ndarray | None = None
    aabb_min: np.ndarray = field(init=False, repr=False)
    aabb_max: np.ndarray = field(init=False, repr=False)
    centroid: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        where = f"MapObject {self.id!r}"
        if isinstance(self.id, bool) or not isinstance(self.id, (int, np.integer)) or self.id < 0:
            raise ValueError(f"{where}: id must be a non-negative integer")
        self.id = int(self.id)
        self.points = _points_array(self.points, f"{where}: points")
        n = len(self.points)
        self.colors = _colors_array(self.colors, n, where)
        if self.weights is not None:
            self.weights = np.asarray(self.weights, dtype=np.float32).reshape(-1)
            if len(self.weights) != n or not np.all(np.isfinite(self.weights)):
                raise ValueError(f"{where}: weights must be {n} finite values, got shape {self.weights.shape}")
        self._check_statistics(where)
        self.best_view_box = (
            np.zeros(4, np.float32) if self.best_view_box is None
            else fixed_array(self.best_view_box, (4,), np.float32, f"{where}: best_view_box")
        )
        self._fill_boxes(where)

    def _check_statistics(self, where: str) -> None:
        self.num_observations, self.first_frame, self.last_frame, self.best_view_frame = (
            int(self.num_observations), int(self.first_frame), int(self.last_frame), int(self.best_view_frame)
        )
        self.confidence, self.is_structure = float(self.confidence), bool(self.is_structure)
        if self.num_observations < 0:
            raise ValueError(f"{where}: num_observations must be >= 0, got {self.num_observations}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"{where}: confidence must be in [0, 1], got {self.confidence}")
        if self.first_frame >= 0 and self.last_frame >= 0 and self.first_frame > self.last_frame:
            raise ValueError(f"{where}: first_frame {self.first_frame} is after last_frame {self.last_frame}")
        if not isinstance(self.attributes, dict):
            raise ValueError(f"{where}: attributes must be a dict, got {type(self.attributes).__name__}")

    def _fill_boxes(self, where: str) -> None:
        self.aabb_min, self.aabb_max = column_bounds(self.points)
        self.centroid = self.points.mean(axis=0, dtype=np.float64)
        given = [v is not None for v in (self.obb_center, self.obb_rotation, self.obb_extents)]
        if not any(given):
            self.obb_center, self.obb_rotation, self.obb_extents = oriented_box(self.points)
            return
        if not all(given):
            raise ValueError(f"{where}: give all of obb_center, obb_rotation and obb_extents, or none")
        self.obb_center = fixed_array(self.obb_center, (3,), np.float64, f"{where}: obb_center")
        self.obb_rotation = fixed_array(self.obb_rotation, (3, 3), np.float64, f"{where}: obb_rotation")
        self.obb_extents = fixed_array(self.obb_extents, (3,), np.float64, f"{where}: obb_extents")

    @classmethod
    def from_points(
        cls, id: int, points: np.ndarray, colors: np.ndarray | None = None, weights: np.ndarray | None = None,
        *, up: np.ndarray | None = None, **statistics,
    ) -> "MapObject":
        """Build an object whose oriented box is upright along ``up`` (world frame) when given."""
        points = _points_array(points, f"MapObject {id!r}: points")
        center, rotation, extents = oriented_box(points, up)
        return cls(id, points, colors, weights, obb_center=center, obb_rotation=rotation, obb_extents=extents,
                   **statistics)

    def with_points(
        self, points: np.ndarray, colors: np.ndarray | None = None, weights: np.ndarray | None = None,
        *, up: np.ndarray | None = None,
    ) -> "MapObject":
        """A copy with new geometry (boxes recomputed) and the same statistics and attributes."""
        return MapObject.from_points(
            self.id, points, colors, weights, up=up, num_observations=self.num_observations,
            first_frame=self.first_frame, last_frame=self.last_frame, confidence=self.confidence,
            best_view_frame=self.best_view_frame, best_view_box=self.best_view_box.copy(),
            is_structure=self.is_structure, attributes=dict(self.attributes),
        )

    def with_statistics(self, **changes) -> "MapObject":
        """A copy with some statistics changed (``confidence``, ``attributes``, ``is_structure``, ...), checked
        as the constructor checks them; the points, colours, weights and boxes are this object's own arrays,
        not copied nor derived again (``dataclasses.replace`` redoes both, and the online map's ranking
        replaces dozens of objects at every save). Geometry fields cannot be changed here."""
        geometry = _GEOMETRY_FIELDS.intersection(changes)
        if geometry:
            raise ValueError(f"MapObject.with_statistics changes statistics only, not {sorted(geometry)}; "
                             f"use with_points")
        changed = copy.copy(self)
        for name, value in changes.items():
            setattr(changed, name, value)
        where = f"MapObject {self.id!r}"
        changed._check_statistics(where)
        if "best_view_box" in changes:
            changed.best_view_box = fixed_array(changed.best_view_box, (4,), np.float32, f"{where}: best_view_box")
        return changed

    @property
    def num_points(self) -> int:
        return int(len(self.points))

    @property
    def obb_corners(self) -> np.ndarray:
        """8 x 3 float64 corners of the oriented box (world frame)."""
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
        return self.obb_center + (signs * (self.obb_extents / 2.0)) @ self.obb_rotation.T


def _points_array(points: np.ndarray, what: str) -> np.ndarray:
    p = np.asarray(points)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
        raise ValueError(f"{what} must be N x 3 with N >= 1, got shape {p.shape}")
    p = np.ascontiguousarray(p, dtype=np.float32)
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{what} hold non-finite values")
    return p


def _colors_array(colors: np.ndarray | None, n: int, where: str) -> np.ndarray:
    if colors is None:
        return np.full((n, 3), DEFAULT_COLOR, np.uint8)
    c = np.asarray(colors)
    if c.shape != (n, 3):
        raise ValueError(f"{where}: colors must be {n} x 3 (one RGB per point), got shape {c.shape}")
    if c.dtype != np.uint8:
        if np.any((c < 0) | (c > 255)):
            raise ValueError(f"{where}: colors must be uint8 RGB values in 0..255")
        c = c.astype(np.uint8)
    return np.ascontiguousarray(c)


def fixed_array(value: np.ndarray, shape: tuple[int, ...], dtype: type, what: str) -> np.ndarray:
    a = np.asarray(value, dtype=dtype)
    if a.shape != shape or not np.all(np.isfinite(a)):
        raise ValueError(f"{what} must be finite with shape {shape}, got {a.shape}")
    return a.copy()


@dataclass
class MapMetadata:
    """Facts about the sequence behind a map.

    ``voxel_size`` metres (also the default ray-pick radius); ``source_path``/``source_format`` of the
    dataset; ``K`` 3 x 3 float64 depth intrinsics (pixels) and ``image_size`` (height, width) when known;
    ``up`` world-frame up vector when known; ``extra`` free JSON-serialisable provenance.
    """

    voxel_size: float = DEFAULT_VOXEL_SIZE
    source_path: str = ""
    source_format: str = ""
    K: np.ndarray | None = None
    image_size: tuple[int, int] | None = None
    up: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.voxel_size = float(self.voxel_size)
        if not np.isfinite(self.voxel_size) or self.voxel_size <= 0:
            raise ValueError(f"MapMetadata: voxel_size must be > 0 metres, got {self.voxel_size}")
        if self.K is not None:
            self.K = fixed_array(self.K, (3, 3), np.float64, "MapMetadata: K")
        if self.image_size is not None:
            self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if self.up is not None:
            self.up = fixed_array(self.up, (3,), np.float64, "MapMetadata: up")

    def to_json(self) -> dict:
        return {
            "voxel_size": self.voxel_size, "source_path": self.source_path, "source_format": self.source_format,
            "K": None if self.K is None else self.K.tolist(),
            "image_size": None if self.image_size is None else list(self.image_size),
            "up": None if self.up is None else self.up.tolist(), "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict) -> "MapMetadata":
        return cls(
            voxel_size=data["voxel_size"], source_path=data.get("source_path", ""),
            source_format=data.get("source_format", ""), K=data.get("K"),
            image_size=None if data.get("image_size") is None else tuple(data["image_size"]),
            up=data.get("up"), extra=data.get("extra", {}),
        )
