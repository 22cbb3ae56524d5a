"""The queryable 3D instance map: persistent objects with geometry and statistics, and spatial queries.

Units and frames everywhere in this module: metres, world frame; camera poses are 4 x 4 camera-to-world
with OpenCV camera axes (x right, y down, z forward); pixel centres lie at integer coordinates.

The map is filled by the pipeline (``tracking``) one handful of objects per frame: ``add``/``update``/
``remove`` replace whole objects. The spatial index is a KD-tree per object (built lazily, kept until
that object is replaced, so an update costs only its own objects' trees), per-object AABB arrays, and,
built lazily after any change, all points concatenated (for box, ray and visibility queries) and one
KD-tree over them (for labelling many points at once).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterator

import numpy as np
from scipy.spatial import cKDTree

from lift3d.lift import DEFAULT_VOXEL_SIZE
from scene.datasets.frame import is_valid_pose

NO_OBJECT = -1
DEFAULT_COLOR = 128


# --------------------------------------------------------------------------------------------------
# Oriented boxes


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
    axes = _principal_axes(centred) if up is None else _upright_axes(centred, _unit(up, "up"))
    local = rows_times(centred, axes)
    lo, hi = local.min(axis=0), local.max(axis=0)
    return mean + axes @ ((lo + hi) / 2.0), axes, hi - lo


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


def _principal_axes(centred: np.ndarray) -> np.ndarray:
    _, vectors = np.linalg.eigh(centred.T @ centred)
    major, middle = _positive(vectors[:, 2]), _positive(vectors[:, 1])
    return np.stack([major, middle, np.cross(major, middle)], axis=1)


def _upright_axes(centred: np.ndarray, up: np.ndarray) -> np.ndarray:
    helper = np.eye(3)[np.argmin(np.abs(up))]
    e1 = _unit(helper - helper.dot(up) * up, "up")
    e2 = np.cross(up, e1)
    plane = rows_times(centred, np.stack([e1, e2], axis=1))
    _, vectors = np.linalg.eigh(plane.T @ plane)
    major = _positive(e1 * vectors[0, 1] + e2 * vectors[1, 1])
    return np.stack([major, np.cross(up, major), up], axis=1)


def _positive(axis: np.ndarray) -> np.ndarray:
    """Flip an axis so its largest component is positive: a deterministic sign for eigenvectors."""
    return axis if axis[np.argmax(np.abs(axis))] >= 0 else -axis


def _unit(vector: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(v)) if v.shape == (3,) else 0.0
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError(f"{name} must be a finite non-zero 3-vector, got {vector!r}")
    return v / norm


# --------------------------------------------------------------------------------------------------
# Objects


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
            else _fixed_array(self.best_view_box, (4,), np.float32, f"{where}: best_view_box")
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
        self.aabb_min, self.aabb_max = self.points.min(axis=0), self.points.max(axis=0)
        self.centroid = self.points.mean(axis=0, dtype=np.float64)
        given = [v is not None for v in (self.obb_center, self.obb_rotation, self.obb_extents)]
        if not any(given):
            self.obb_center, self.obb_rotation, self.obb_extents = oriented_box(self.points)
            return
        if not all(given):
            raise ValueError(f"{where}: give all of obb_center, obb_rotation and obb_extents, or none")
        self.obb_center = _fixed_array(self.obb_center, (3,), np.float64, f"{where}: obb_center")
        self.obb_rotation = _fixed_array(self.obb_rotation, (3, 3), np.float64, f"{where}: obb_rotation")
        self.obb_extents = _fixed_array(self.obb_extents, (3,), np.float64, f"{where}: obb_extents")

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


def _fixed_array(value: np.ndarray, shape: tuple[int, ...], dtype: type, what: str) -> np.ndarray:
    a = np.asarray(value, dtype=dtype)
    if a.shape != shape or not np.all(np.isfinite(a)):
        raise ValueError(f"{what} must be finite with shape {shape}, got {a.shape}")
    return a.copy()


# --------------------------------------------------------------------------------------------------
# Map metadata and query results


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
            self.K = _fixed_array(self.K, (3, 3), np.float64, "MapMetadata: K")
        if self.image_size is not None:
            self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if self.up is not None:
            self.up = _fixed_array(self.up, (3,), np.float64, "MapMetadata: up")

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


@dataclass
class RayHit:
    """First object along a ray: ``depth`` metres along the (unit) ray, ``point`` the hit map point,
    ``distance`` its perpendicular distance to the ray (metres)."""

    id: int
    depth: float
    point: np.ndarray
    distance: float


@dataclass
class Visibility:
    """Result of ``InstanceMap.visible_from``.

    ``ids`` int64 visible object ids (ascending) and ``visible_points`` their numbers of visible points;
    ``id_image`` H x W int64 rendered instance ids (-1 = no object); ``depth`` H x W float32 z-buffer
    (metres along the camera's z axis, 0 = empty).
    """

    ids: np.ndarray
    visible_points: np.ndarray
    id_image: np.ndarray
    depth: np.ndarray


@dataclass
class PendingChanges:
    """What changed since the last save: object ids updated/added, ids removed, frames appended."""

    changed_ids: set[int]
    removed_ids: set[int]
    frames: list[int]


# --------------------------------------------------------------------------------------------------
# Spatial index


class _PointIndex:
    """All object points concatenated (ordered by id), owner rows, per-object AABBs; per-object KD-trees
    come from the map's cache (``trees``: object id -> (the object it was built for, its tree))."""

    def __init__(self, objects: list[MapObject], trees: dict[int, tuple[MapObject, cKDTree]]) -> None:
        self.objects = objects
        self.ids = np.array([o.id for o in objects], np.int64)
        self.counts = np.array([o.num_points for o in objects], np.int64)
        self.aabb_min = np.array([o.aabb_min for o in objects], np.float32).reshape(-1, 3)
        self.aabb_max = np.array([o.aabb_max for o in objects], np.float32).reshape(-1, 3)
        self._trees = trees

    @cached_property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    @cached_property
    def points(self) -> np.ndarray:
        """All points, M x 3 float32, concatenated lazily (tree-based queries never need them)."""
        return np.concatenate([o.points for o in self.objects]) if self.objects else np.zeros((0, 3), np.float32)

    @cached_property
    def owner(self) -> np.ndarray:
        """Row (position in ``ids``) of each point's object, M int64."""
        return np.repeat(np.arange(len(self.objects), dtype=np.int64), self.counts)

    @cached_property
    def global_tree(self) -> cKDTree:
        """One KD-tree over ``points`` (for bulk labelling)."""
        return cKDTree(self.points, balanced_tree=False)

    @property
    def has_global_tree(self) -> bool:
        return "global_tree" in self.__dict__

    def tree(self, row: int) -> cKDTree:
        obj = self.objects[row]
        cached = self._trees.get(obj.id)
        if cached is None or cached[0] is not obj:
            cached = (obj, cKDTree(obj.points, balanced_tree=False))  # builds ~2x faster, queries alike
            self._trees[obj.id] = cached
        return cached[1]

    def box_distances(self, xyz: np.ndarray) -> np.ndarray:
        """Per object, the distance from ``xyz`` to its AABB: a lower bound of its point distances."""
        gap = np.maximum(np.maximum(self.aabb_min - xyz, xyz - self.aabb_max), 0.0)
        return np.linalg.norm(gap, axis=1)

    def point_rows(self, rows: np.ndarray) -> np.ndarray:
        """Indices into ``points`` of all points of the given object rows (ranges concatenated)."""
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        if lengths.sum() == 0:
            return np.zeros(0, np.int64)
        shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return np.arange(lengths.sum(), dtype=np.int64) + shift


def _min_per_group(groups: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct group: (group, min value, position of that min in the input)."""
    order = np.lexsort((values, groups))
    sorted_groups = groups[order]
    first = np.flatnonzero(np.concatenate([[True], sorted_groups[1:] != sorted_groups[:-1]])) if len(order) else order
    return sorted_groups[first], values[order][first], order[first]


# --------------------------------------------------------------------------------------------------
# The map


class InstanceMap:
    """Objects keyed by id, the camera trajectory, the id remap table and the sequence's metadata.

    ``num_frames`` counts the frames integrated; the trajectory holds one camera-to-world pose per
    recorded frame index (strictly increasing). ``id_remap`` maps retired ids to the id that absorbed
    them (chains are collapsed: every value is a final id at the time of recording).
    """

    def __init__(self, metadata: MapMetadata | None = None) -> None:
        self.metadata = metadata if metadata is not None else MapMetadata()
        self.num_frames = 0
        self.id_remap: dict[int, int] = {}
        self._objects: dict[int, MapObject] = {}
        self._frames: list[int] = []
        self._poses: list[np.ndarray] = []
        self._index: _PointIndex | None = None
        self._trees: dict[int, tuple[MapObject, cKDTree]] = {}
        self._pending = PendingChanges(set(), set(), [])

    # ---- container --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, object_id: int) -> bool:
        return int(object_id) in self._objects

    def __iter__(self) -> Iterator[MapObject]:
        return (self._objects[i] for i in sorted(self._objects))

    @property
    def ids(self) -> np.ndarray:
        """Object ids, ascending int64."""
        return np.array(sorted(self._objects), np.int64)

    @property
    def num_points(self) -> int:
        return int(sum(o.num_points for o in self._objects.values()))

    def get(self, object_id: int) -> MapObject:
        try:
            return self._objects[int(object_id)]
        except KeyError:
            raise KeyError(f"no object with id {object_id} in the map ({len(self)} objects)") from None

    def next_id(self) -> int:
        """An id never used in this map (above every object id and every remapped id)."""
        used = list(self._objects) + list(self.id_remap) + list(self.id_remap.values())
        return max(used, default=-1) + 1

    # ---- mutations --------------------------------------------------------------------------

    def copy(self, with_objects: bool = True) -> "InstanceMap":
        """A new map with the same metadata (shared), trajectory, frame count and id remap, and the same
        (immutable) objects unless ``with_objects`` is False. Changes to the copy leave this map alone."""
        other = InstanceMap(self.metadata)
        other._frames, other._poses = list(self._frames), [pose.copy() for pose in self._poses]
        other._pending.frames = list(self._frames)  # as if added frame by frame: all unsaved in the copy
        other.num_frames, other.id_remap = self.num_frames, dict(self.id_remap)
        if with_objects:
            for obj in self:
                other.add(obj)
        return other

    def add(self, obj: MapObject) -> None:
        if obj.id in self._objects:
            raise ValueError(f"object id {obj.id} is already in the map; use update() to replace it")
        self.update(obj)

    def update(self, obj: MapObject) -> None:
        """Insert or replace the object with ``obj.id``."""
        if not isinstance(obj, MapObject):
            raise TypeError(f"update() takes a MapObject, got {type(obj).__name__}")
        self._objects[obj.id] = obj
        self._pending.changed_ids.add(obj.id)
        self._pending.removed_ids.discard(obj.id)
        self._index = None

    def remove(self, object_id: int) -> MapObject:
        obj = self.get(object_id)
        del self._objects[obj.id]
        self._trees.pop(obj.id, None)
        self._pending.removed_ids.add(obj.id)
        self._pending.changed_ids.discard(obj.id)
        self._index = None
        return obj

    def add_frame(self, frame_index: int, pose: np.ndarray) -> None:
        """Record one integrated frame and its camera-to-world pose (frame indices strictly increase)."""
        frame_index = int(frame_index)
        if self._frames and frame_index <= self._frames[-1]:
            raise ValueError(f"frame index {frame_index} must be after the last recorded frame {self._frames[-1]}")
        if not is_valid_pose(pose):
            raise ValueError(f"pose of frame {frame_index} is not a finite rigid 4 x 4 camera-to-world transform")
        self._frames.append(frame_index)
        self._poses.append(np.array(pose, dtype=np.float64))
        self._pending.frames.append(frame_index)
        self.num_frames += 1

    def record_remap(self, mapping: dict[int, int]) -> None:
        """Record that ids were merged or renumbered: ``{old_id: new_id}``; earlier chains are collapsed."""
        for old, new in ((int(a), int(b)) for a, b in mapping.items()):
            if old == new:
                continue
            new = self.id_remap.get(new, new)
            for key, target in self.id_remap.items():
                if target == old:
                    self.id_remap[key] = new
            self.id_remap[old] = new

    def resolve_id(self, object_id: int) -> int:
        """The current id of an object that may have been merged away (identity for live ids)."""
        return self.id_remap.get(int(object_id), int(object_id))

    @property
    def trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """(frame indices F int64, camera-to-world poses F x 4 x 4 float64)."""
        poses = np.stack(self._poses) if self._poses else np.zeros((0, 4, 4), np.float64)
        return np.array(self._frames, np.int64), poses

    def pose_of(self, frame_index: int) -> np.ndarray:
        frames = self._frames
        position = int(np.searchsorted(frames, frame_index))
        if position == len(frames) or frames[position] != frame_index:
            raise KeyError(f"frame {frame_index} is not in the map's trajectory")
        return self._poses[position]

    # ---- change tracking (for incremental saves) -------------------------------------------

    def pending_changes(self) -> PendingChanges:
        p = self._pending
        return PendingChanges(set(p.changed_ids), set(p.removed_ids), list(p.frames))

    def mark_saved(self, changes: PendingChanges | None = None) -> None:
        """Forget the given changes (all pending ones when None) after they were written."""
        if changes is None:
            self._pending = PendingChanges(set(), set(), [])
            return
        self._pending.changed_ids -= changes.changed_ids
        self._pending.removed_ids -= changes.removed_ids
        saved = set(changes.frames)
        self._pending.frames = [f for f in self._pending.frames if f not in saved]

    # ---- queries ----------------------------------------------------------------------------

    @property
    def _idx(self) -> _PointIndex:
        if self._index is None:
            self._index = _PointIndex([self._objects[i] for i in sorted(self._objects)], self._trees)
        return self._index

    def label_points(self, points: np.ndarray, max_distance: float) -> np.ndarray:
        """For N x 3 world points: the id of the object owning the nearest map point within
        ``max_distance`` metres (inclusive), else -1. Returns N int64.

        Many queries (>= 5% of the map's points, e.g. labelling a scan) go through one KD-tree over all
        points, built once per map state; few queries go through the per-object trees, which survive
        updates of other objects. Both give the same labels.
        """
        query = _query_points(points, "label_points: points")
        max_distance = _non_negative(max_distance, "label_points: max_distance")
        idx = self._idx
        if idx.has_global_tree or len(query) >= 0.05 * idx.counts.sum():
            return self._label_with_global_tree(query, max_distance)
        return self._label_with_object_trees(query, max_distance)

    def _label_with_global_tree(self, query: np.ndarray, max_distance: float) -> np.ndarray:
        idx = self._idx
        labels = np.full(len(query), NO_OBJECT, np.int64)
        if len(idx.ids) == 0 or len(query) == 0:
            return labels
        distance, nearest = idx.global_tree.query(query, distance_upper_bound=_padded(max_distance))
        found = np.isfinite(distance) & (distance <= max_distance)
        labels[found] = idx.ids[idx.owner[nearest[found]]]
        return labels

    def _label_with_object_trees(self, query: np.ndarray, max_distance: float) -> np.ndarray:
        idx = self._idx
        labels = np.full(len(query), NO_OBJECT, np.int64)
        best = np.full(len(query), np.inf)
        by_x = np.argsort(query[:, 0], kind="stable")
        sorted_x = query[by_x, 0]
        lo, hi = idx.aabb_min - max_distance, idx.aabb_max + max_distance
        for row in range(len(idx.ids)):
            slab = by_x[np.searchsorted(sorted_x, lo[row, 0], "left"):np.searchsorted(sorted_x, hi[row, 0], "right")]
            near = slab[np.all((query[slab, 1:] >= lo[row, 1:]) & (query[slab, 1:] <= hi[row, 1:]), axis=1)]
            if len(near) == 0:
                continue
            distance, _ = idx.tree(row).query(query[near], distance_upper_bound=_padded(max_distance))
            better = (distance <= max_distance) & (distance < best[near])
            best[near[better]] = distance[better]
            labels[near[better]] = idx.ids[row]
        return labels

    def object_at(self, xyz: np.ndarray, max_distance: float = 0.05) -> int | None:
        """Id of the object with the map point nearest to ``xyz`` if within ``max_distance`` metres."""
        ids, _ = self.within_radius(_query_point(xyz, "object_at: xyz"), max_distance)
        return int(ids[0]) if len(ids) else None

    def within_radius(self, xyz: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Objects with any point within ``radius`` metres of ``xyz`` (inclusive).

        Returns (ids int64, distances float64 from ``xyz`` to each object's nearest point), nearest first.
        """
        centre = _query_point(xyz, "within_radius: xyz")
        radius = _non_negative(radius, "within_radius: radius")
        idx = self._idx
        rows = np.flatnonzero(idx.box_distances(centre) <= radius)
        distances = np.array([idx.tree(row).query(centre)[0] for row in rows], np.float64)
        keep = distances <= radius
        order = np.argsort(distances[keep], kind="stable")
        return idx.ids[rows[keep][order]], distances[keep][order]

    def nearest(self, xyz: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` objects nearest to ``xyz`` by point distance: (ids int64, distances float64), nearest first.

        Exact: objects are visited by the distance to their AABB (a lower bound) and each one's own
        KD-tree gives its true distance; the walk stops once the bound exceeds the k-th distance found.
        """
        centre = _query_point(xyz, "nearest: xyz")
        if int(k) < 1:
            raise ValueError(f"nearest: k must be >= 1, got {k}")
        idx = self._idx
        bounds = idx.box_distances(centre)
        found: list[tuple[float, int]] = []
        for row in np.argsort(bounds, kind="stable"):
            if len(found) >= k and bounds[row] > found[int(k) - 1][0]:
                break  # every remaining object is farther than the k-th found
            bisect.insort(found, (float(idx.tree(row).query(centre)[0]), int(idx.ids[row])))
        found = found[: int(k)]
        return np.array([i for _, i in found], np.int64), np.array([d for d, _ in found], np.float64)

    def in_box(self, box_min: np.ndarray, box_max: np.ndarray, fully_inside: bool = False) -> np.ndarray:
        """Ids (ascending int64) of objects with any point in the axis-aligned box [box_min, box_max]
        (inclusive, metres), or with all their points inside when ``fully_inside``."""
        lo = _query_point(box_min, "in_box: box_min")
        hi = _query_point(box_max, "in_box: box_max")
        if np.any(lo > hi):
            raise ValueError(f"in_box: box_min {lo} exceeds box_max {hi} on some axis")
        idx = self._idx
        contained = np.all((idx.aabb_min >= lo) & (idx.aabb_max <= hi), axis=1)
        if fully_inside:
            return idx.ids[contained]
        overlapping = np.all((idx.aabb_max >= lo) & (idx.aabb_min <= hi), axis=1)
        partial = np.flatnonzero(overlapping & ~contained)
        points = idx.point_rows(partial)
        inside = np.all((idx.points[points] >= lo) & (idx.points[points] <= hi), axis=1)
        hit_rows = np.union1d(np.flatnonzero(contained), idx.owner[points[inside]])
        return idx.ids[hit_rows]

    def ray_pick(
        self, origin: np.ndarray, direction: np.ndarray, max_distance: float = np.inf,
        hit_radius: float | None = None,
    ) -> RayHit | None:
        """First object along the ray ``origin + t * direction`` (t in [0, max_distance] metres): among map
        points within ``hit_radius`` (default: the voxel size) of the ray, the one with the smallest t."""
        o = _query_point(origin, "ray_pick: origin")
        d = _unit(direction, "ray_pick: direction")
        radius = self.metadata.voxel_size if hit_radius is None else _non_negative(hit_radius, "ray_pick: hit_radius")
        max_distance = float(max_distance)
        if not max_distance >= 0:
            raise ValueError(f"ray_pick: max_distance must be >= 0 metres (inf allowed), got {max_distance}")
        idx = self._idx
        rows = np.flatnonzero(_ray_hits_boxes(o, d, idx.aabb_min - radius, idx.aabb_max + radius, max_distance))
        candidates = idx.point_rows(rows)
        offset = idx.points[candidates].astype(np.float64) - o
        depth = rows_times(offset, d[:, None])[:, 0]
        perpendicular = np.linalg.norm(offset - depth[:, None] * d, axis=1)
        hit = (depth >= 0) & (depth <= max_distance) & (perpendicular <= radius)
        if not np.any(hit):
            return None
        first = np.flatnonzero(hit)[np.argmin(depth[hit])]
        point = candidates[first]
        return RayHit(int(idx.ids[idx.owner[point]]), float(depth[first]),
                      idx.points[point].astype(np.float64), float(perpendicular[first]))

    def visible_from(
        self, K: np.ndarray, pose: np.ndarray, width: int, height: int, depth_tolerance: float = 0.04,
        point_size: int = 1, min_depth: float = 0.01,
    ) -> Visibility:
        """Render the map's points into a pinhole camera with a z-buffer and report what is visible.

        ``K`` 3 x 3 pixels, ``pose`` camera-to-world (OpenCV axes). Each point in front of the camera
        (z > ``min_depth`` metres) covers ``point_size`` x ``point_size`` pixels around its rounded
        projection; the nearest point wins each pixel. A point is visible when its own pixel lies in the
        image and its depth is at most the z-buffer there plus ``depth_tolerance`` metres.
        """
        K = _fixed_array(K, (3, 3), np.float64, "visible_from: K")
        if not is_valid_pose(pose):
            raise ValueError("visible_from: pose is not a finite rigid 4 x 4 camera-to-world transform")
        depth_tolerance = _non_negative(depth_tolerance, "visible_from: depth_tolerance")
        min_depth = _non_negative(min_depth, "visible_from: min_depth")
        width, height, point_size = int(width), int(height), int(point_size)
        if width < 1 or height < 1 or not 1 <= point_size <= 3:
            raise ValueError(f"visible_from: need width, height >= 1 and point_size in 1..3, "
                             f"got {width}, {height}, {point_size}")
        idx = self._idx
        pose = np.asarray(pose, np.float64)
        camera = rows_times(idx.points.astype(np.float64) - pose[:3, 3], pose[:3, :3])
        front = np.flatnonzero(camera[:, 2] > min_depth)
        z = camera[front, 2]
        projected = rows_times(camera[front], K.T)
        col = np.floor(projected[:, 0] / z + 0.5).astype(np.int64)
        row = np.floor(projected[:, 1] / z + 0.5).astype(np.int64)
        depth, winner = _splat(row, col, z, width, height, point_size)
        id_image = np.full(height * width, NO_OBJECT, np.int64)
        filled = winner >= 0
        id_image[filled] = idx.ids[idx.owner[front[winner[filled]]]]
        inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        pixel = row[inside] * width + col[inside]
        visible = z[inside] <= depth[pixel] + depth_tolerance
        counts = np.bincount(idx.owner[front[inside][visible]], minlength=len(idx.ids))
        rows = np.flatnonzero(counts)
        return Visibility(idx.ids[rows], counts[rows].astype(np.int64), id_image.reshape(height, width),
                          depth.reshape(height, width).astype(np.float32))

    def filter(
        self, min_points: int = 0, min_observations: int = 0, min_confidence: float = 0.0,
        include_structure: bool = True,
    ) -> np.ndarray:
        """Ids (ascending int64) of objects meeting every threshold (inclusive)."""
        keep = [
            o.id for o in self
            if o.num_points >= min_points and o.num_observations >= min_observations
            and o.confidence >= min_confidence and (include_structure or not o.is_structure)
        ]
        return np.array(keep, np.int64)


def _splat(
    row: np.ndarray, col: np.ndarray, z: np.ndarray, width: int, height: int, point_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer: per pixel the smallest z (0 where empty) and the index of the winning point (-1)."""
    low = -((point_size - 1) // 2)
    steps = np.arange(low, low + point_size)
    dr, dc = (a.reshape(-1) for a in np.meshgrid(steps, steps, indexing="ij"))
    rows, cols = (row[:, None] + dr).reshape(-1), (col[:, None] + dc).reshape(-1)
    source = np.repeat(np.arange(len(z), dtype=np.int64), len(dr))
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    pixel, source = rows[inside] * width + cols[inside], source[inside]
    depth = np.zeros(height * width, np.float64)
    winner = np.full(height * width, -1, np.int64)
    if len(pixel):
        pixels, nearest, position = _min_per_group(pixel, z[source])
        depth[pixels], winner[pixels] = nearest, source[position]
    return depth, winner


def _ray_hits_boxes(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_t: float) -> np.ndarray:
    """Slab test: which boxes the segment t in [0, max_t] of the ray crosses (bool per box)."""
    parallel = np.abs(d) < 1e-12
    safe = np.where(parallel, 1.0, d)
    t1, t2 = (lo - o) / safe, (hi - o) / safe
    within = (o >= lo) & (o <= hi)
    enter = np.where(parallel, np.where(within, -np.inf, np.inf), np.minimum(t1, t2)).max(axis=1, initial=-np.inf)
    leave = np.where(parallel, np.where(within, np.inf, -np.inf), np.maximum(t1, t2)).min(axis=1, initial=np.inf)
    return (enter <= leave) & (leave >= 0) & (enter <= max_t)


def _query_point(xyz: np.ndarray, what: str) -> np.ndarray:
    p = np.asarray(xyz, dtype=np.float64).reshape(-1)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise ValueError(f"{what} must be a finite 3-vector (metres, world frame), got {xyz!r}")
    return p


def _query_points(points: np.ndarray, what: str) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or not np.all(np.isfinite(p)):
        raise ValueError(f"{what} must be finite N x 3 (metres, world frame), got shape {p.shape}")
    return p


def _padded(distance: float) -> float:
    """A search bound safely above ``distance``: the KD-tree compares squared distances, so a bound of
    exactly ``distance`` (or 0) can drop points at that distance; results are filtered exactly after."""
    return distance * (1.0 + 1e-9) + 1e-9


def _non_negative(value: float, what: str) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{what} must be a finite distance >= 0 metres, got {value!r}")
    return v
