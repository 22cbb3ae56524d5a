"""Voxels an object does not own: the stray points that stretch its box.

The global pass gives each voxel to the cluster that detected it most (``tracking.postfilter``), so a
refined object holds some voxels only through masks whose bulk lies on *another* object: a chair's masks
spilling onto the floor around its legs, a door's onto the wall above it. Such a voxel is not *owned*
by the object: no recorded segment the refinement assigned to that object (``RefineResult.
segment_object``: the object holding most of the segment's voxels) holds it. Its *body* is the voxels it
owns; ``trim_strays`` drops the voxels it does not own that lie outside the body's box (along the body's
principal axes, grown by ``margin`` voxels: ``PartConfig.contact_voxels``, where points touch), and keeps
those within it (a spill inside the body's box changes no box). A rim or a back side seen in few frames
is owned (the object's own masks hold it, however rarely) and stays, which the hit-count trims below
could not tell apart from a stray. No threshold: ownership is a yes / no of the records.

Measured (2026-12-04, refined maps of the default pipeline, same masks replayed for every variant;
ScanNet non-structure box AP25 / AP50, per scene and pooled; synthetic noisy preset "all" AP / AP50 and
"objects" AP / AP50 with seeds pooled, 0-1 tuned on, 2-5 held out):

- off: scene0113_00 1.000 / 0.750, scene0448_01 0.740 / 0.075, pooled 0.748 / 0.235; room 0-1 0.619 /
  0.853, 0.465 / 0.803; room 2-5 0.558 / 0.748, 0.367 / 0.634; cluttered 2-5 0.406 / 0.590, 0.276 / 0.483.
- on (this module, the default): scene0113_00 1.000 / 1.000 (the chair whose box the floor spill around
  its legs stretched 1 m: IoU 0.29 -> 0.63; 445 voxels dropped there, 12 on scene0448_01), scene0448_01
  0.740 / 0.075, pooled 0.748 / 0.308; room 0-1 and 2-5 identical; cluttered 2-5 0.407 / 0.590, 0.277 /
  0.483. Ground-truth 2D masks (the robustness section's conditions), "all" AP / AP50 unchanged: room
  seed 0 with 5% merges 0.756 / 0.842, seed 2 with merges 0.617 / 0.771, seed 3 with all four errors
  0.912 / 0.984, cluttered seed 2 with merges 0.472 / 0.604. The online map is not trimmed (its
  objects are rebuilt every flush, and a hit-share trim there lost scene0448_01 AP25 0.674 -> 0.630).
  Cost: building scene0113_00's refined map 1.70 -> 2.31 CPU-s (median of 3, machine loaded ~26 on 2
  cores; 0.2-0.4 s of it ``owned_voxels`` over its 5.0 M segment rows), scene0448_01 0.37 -> 0.48.

Tried before and not kept: drop the voxels hit (lifted) less than a share of the object's median hit
count. Globally (``MapperConfig.min_hit_share`` 0.2 -> 0.3): pooled 0.761 / 0.346, but held-out room
0.554 / 0.743 and cluttered 0.398 / 0.577, and online pooled AP25 0.622 -> 0.599: what it loses are real
surfaces seen less often than the object's front (cluttered seed 2 shelf IoU 0.70 -> 0.53, seed 3 shelf
0.47 -> 0.24, room seed 3 sofa 0.93 -> 0.90, balls and lamps). Only outside the box of the voxels hit
at least that share (the previous ``PartConfig.trim_share``): at 0.5 scene0448_01 AP25 0.740 -> 0.669
(pooled 0.710 / 0.343); at 0.3 pooled 0.748 / 0.308 but cluttered 2-5 0.401 / 0.583 (a ball's back
side, seen in few frames, lies outside its front's box: 102 -> 97 labelled points, under the
evaluation's 100-point floor); on the online map at 0.3 scene0448_01 AP25 0.674 -> 0.630. Dropping every
voxel not owned, wherever it lies (no body box): scene0448_01 AP25 0.740 -> 0.712.
Units: metres; the margin in voxels of the map's voxel size.
"""
from __future__ import annotations

import numpy as np

from lift3d.voxels import keys_of_points

from .map import InstanceMap, MapObject


def owned_voxels(segment_rows: np.ndarray, segment_keys: np.ndarray, segment_object: np.ndarray,
                 object_keys: np.ndarray, object_of_key: np.ndarray, row_voxel: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct voxel keys of the refined objects, per key whether it is owned): a recorded
    segment the refinement assigned to the key's object holds it. ``segment_rows`` / ``segment_keys``:
    the (segment, voxel key) rows of the recorded segments (``SegmentRecords.all_keys``);
    ``segment_object``: per segment its refined object id (-1: none); ``object_keys`` /
    ``object_of_key``: the refined voxels and their object ids (``ObjectMap.keys`` / ``.object``).
    ``row_voxel``: per row, the index of its key in ``object_keys`` (-1: not there), when the caller
    knows it (``RefineResult.row_voxel``; ``object_keys`` then sorted): no search of every row."""
    keys, owner = np.asarray(object_keys, np.int64), np.asarray(object_of_key, np.int64)
    if row_voxel is None:  # else ``object_keys`` come sorted
        order = np.argsort(keys, kind="stable")
        keys, owner = keys[order], owner[order]
    owned = np.zeros(keys.size, bool)
    if keys.size == 0 or len(segment_keys) == 0:
        return keys, owned
    if row_voxel is None:
        at = np.minimum(np.searchsorted(keys, segment_keys), keys.size - 1)
        found = keys[at] == segment_keys
    else:
        found = row_voxel >= 0
        at = np.maximum(row_voxel, 0)
    mine = found & (np.asarray(segment_object)[segment_rows] == owner[at])
    owned[at[mine]] = True
    return keys, owned


def stray_voxels(points: np.ndarray, owned: np.ndarray, voxel_size: float, margin: float) -> np.ndarray:
    """N bools: the points (N x 3 metres) not ``owned`` (N bools) that lie outside the box of the owned
    ones (the body; along its principal axes) grown by ``margin`` voxels of ``voxel_size`` metres. None
    drops when the body has fewer than 3 points."""
    body = np.asarray(owned, bool).reshape(-1)
    if body.all() or body.sum() < 3:
        return np.zeros(body.size, bool)
    points = np.asarray(points, np.float64).reshape(-1, 3)
    centre = points[body].mean(0)
    offsets = points - centre
    _, axes = np.linalg.eigh(offsets[body].T @ offsets[body])  # the body's principal axes, as columns
    local = offsets @ axes
    grow = margin * voxel_size
    low, high = local[body].min(0) - grow, local[body].max(0) + grow
    return ~body & ~np.all((local >= low) & (local <= high), axis=1)


def trim_strays(imap: InstanceMap, keys: np.ndarray, owned: np.ndarray, margin: float) -> dict[int, int]:
    """Drop every object's ``stray_voxels`` (in place), ownership read per point from ``keys`` (sorted)
    / ``owned`` (``owned_voxels``; a point whose voxel is not among ``keys`` counts as owned). Returns
    {object id: points dropped} for the objects that lost any. Ids, confidences, flags and statistics
    stay; the boxes are recomputed from the points kept."""
    dropped = {}
    if len(keys) == 0:
        return dropped
    voxel = imap.metadata.voxel_size
    for obj in list(imap):
        if obj.num_points < 4:
            continue
        point_keys = keys_of_points(obj.points, voxel)
        at = np.minimum(np.searchsorted(keys, point_keys), len(keys) - 1)
        point_owned = (keys[at] != point_keys) | owned[at]
        if point_owned.all():
            continue
        stray = stray_voxels(obj.points, point_owned, voxel, margin)
        if not stray.any():
            continue
        keep = ~stray
        weights = None if obj.weights is None else obj.weights[keep]
        imap.update(MapObject.from_points(
            obj.id, obj.points[keep], obj.colors[keep], weights, up=imap.metadata.up,
            num_observations=obj.num_observations, first_frame=obj.first_frame, last_frame=obj.last_frame,
            confidence=obj.confidence, best_view_frame=obj.best_view_frame, best_view_box=obj.best_view_box,
            is_structure=obj.is_structure, attributes=dict(obj.attributes)))
        dropped[obj.id] = int(stray.sum())
    return dropped
