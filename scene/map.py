"""The queryable 3D instance map: persistent objects with geometry and statistics, and spatial queries.

Units and frames everywhere in this module: metres, world frame; camera poses are 4 x 4 camera-to-world
with OpenCV camera axes (x right, y down, z forward); pixel centres lie at integer coordinates.

The map is filled by the pipeline (``tracking``) one handful of objects per frame: ``add``/``update``/
``remove`` replace whole objects. The spatial index is a KD-tree per object (built lazily, kept until
that object is replaced, so an update costs only its own objects' trees), per-object AABB arrays, and,
built lazily after any change, all points concatenated (for box, ray and visibility queries) and one
KD-tree over them (for labelling many points at once).

Objects and metadata are defined in ``scene.objects`` (importable from here too), the spatial index and
its kernels in ``scene.spatial``.
"""
from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from scene.datasets.frame import is_valid_pose
from scene.objects import (DEFAULT_COLOR, NO_OBJECT, MapMetadata, MapObject, fixed_array, oriented_box, rows_times,
                           unit_vector)
from scene.spatial import PointIndex, ray_hits_boxes, splat

__all__ = ["DEFAULT_COLOR", "NO_OBJECT", "InstanceMap", "MapMetadata", "MapObject", "PendingChanges", "RayHit",
           "Visibility", "map_fingerprint", "oriented_box", "rows_times"]


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
        self._index: PointIndex | None = None
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
    def _idx(self) -> PointIndex:
        if self._index is None:
            self._index = PointIndex([self._objects[i] for i in sorted(self._objects)], self._trees)
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
        d = unit_vector(direction, "ray_pick: direction")
        radius = self.metadata.voxel_size if hit_radius is None else _non_negative(hit_radius, "ray_pick: hit_radius")
        max_distance = float(max_distance)
        if not max_distance >= 0:
            raise ValueError(f"ray_pick: max_distance must be >= 0 metres (inf allowed), got {max_distance}")
        idx = self._idx
        rows = np.flatnonzero(ray_hits_boxes(o, d, idx.aabb_min - radius, idx.aabb_max + radius, max_distance))
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
        K = fixed_array(K, (3, 3), np.float64, "visible_from: K")
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
        depth, winner = splat(row, col, z, width, height, point_size)
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


def map_fingerprint(imap: InstanceMap) -> dict:
    """What identifies a map's content, to check that two runs made the same map: ``digest`` (SHA-1 over
    every object's id, statistics, flags, confidence, points, colours and weights byte for byte, the
    trajectory, frame count and id remap), ``objects``, ``points``, ``ids`` and per-object point counts
    (``num_points``). Metadata (the config, timings, provenance) is left out."""
    digest = hashlib.sha1()
    for obj in sorted(imap, key=lambda o: o.id):
        statistics = [obj.id, obj.num_observations, obj.first_frame, obj.last_frame, repr(float(obj.confidence)),
                      obj.best_view_frame, bool(obj.is_structure), json.dumps(obj.attributes, sort_keys=True)]
        digest.update(json.dumps(statistics).encode())
        for array in (obj.points, obj.colors, obj.weights, obj.best_view_box):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
    frames, poses = imap.trajectory
    digest.update(np.ascontiguousarray(frames, np.int64).tobytes() + np.ascontiguousarray(poses, np.float64).tobytes())
    digest.update(json.dumps([int(imap.num_frames), sorted((int(k), int(v)) for k, v in imap.id_remap.items())]).encode())
    ids = sorted(int(o.id) for o in imap)
    return {"digest": digest.hexdigest(), "objects": len(ids), "points": int(imap.num_points), "ids": ids,
            "num_points": {i: int(imap.get(i).num_points) for i in ids}}


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
