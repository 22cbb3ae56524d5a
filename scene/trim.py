"""Few-observation voxels sticking out of an object's body: the stray points that stretch its box.

A refined object's voxels carry their hit counts (how many lifted pixels fell in them). The voxels of
its surface are hit in most of the frames that see it; a stray voxel (a flying pixel at a depth edge,
a reflection, a piece of a neighbour that one frame's mask held) is hit in few. The map already leaves
out voxels hit less than ``MapperConfig.min_hit_share`` of the object's median (0.2); what remains
still holds, far from the object, a few voxels seen a handful of times, and one of them is enough to
stretch a box. The *body* of an object is its voxels hit at least ``share`` times its median voxel's
count; ``trim_strays`` drops the voxels hit less that lie outside the body's box (along the body's
principal axes, grown by ``margin`` voxels), and keeps the less-seen voxels within that box (an
object's rims and edges are seen less often than its middle, and they are real surface).

Measured (2026-12-04, refined maps, share 0.5, margin 2 voxels; ScanNet non-structure box AP25 / AP50):
scene0113_00 1.000 / 0.750 -> 1.000 / 1.000 (a chair whose box was 1.73 m wide through 57 voxels hit
3 times against 15 inside, 1 m off the chair: 0.80 m after, IoU 0.29 -> 0.69), scene0448_01
0.740 / 0.075 -> 0.669 / 0.127 (a door's box 0.19 -> 0.10 m thick, IoU 0.33 -> 0.55; a bathtub piece
whose box reached the tub only through stray voxels loses its IoU 0.42 match), pooled 0.748 / 0.235 ->
0.710 / 0.343; synthetic noisy room, objects AP / AP50, seeds 2-5 (held out) 0.367 / 0.634 ->
0.368 / 0.634, seeds 0-1 0.465 / 0.803 -> 0.470 / 0.778, cluttered noisy seeds 2-5 0.276 / 0.483 ->
0.274 / 0.481. It loses AP25 on scene0448_01: off by default (``PartConfig.trim_share`` 0).

The global filter instead, ``MapperConfig.min_hit_share`` 0.2 -> 0.3 (every object's voxels hit less
than 0.3 x its median go, wherever they lie; measured on maps made with it): ScanNet scene0448_01
0.740 / 0.075 -> 0.740 / 0.127, scene0113_00 1.000 / 0.750 -> 1.000 / 1.000, pooled 0.748 / 0.235 ->
0.761 / 0.346 (online pooled 0.622 / 0.202 -> 0.599 / 0.260); noisy room seeds 2-5, all instances
AP / AP50 0.558 / 0.748 -> 0.554 / 0.743, objects 0.367 / 0.634 -> 0.361 / 0.620; cluttered noisy
seeds 2-5, all 0.406 / 0.590 -> 0.398 / 0.577, objects 0.276 / 0.483 -> 0.266 / 0.469. It loses on
the held-out synthetic seeds (rims seen in few frames are real surface there): not the default either.
At 0.25 it is no better: ScanNet pooled 0.706 / 0.268 (scene0448_01 0.670 / 0.131, scene0113_00's chair
still stretched: 1.000 / 0.750), noisy room seeds 2-5 all 0.553 / 0.742, cluttered 0.407 / 0.585.
Units: metres; the margin in voxels of the map's voxel size.
"""
from __future__ import annotations

import numpy as np

from .map import InstanceMap, MapObject


def stray_voxels(points: np.ndarray, weights: np.ndarray, voxel_size: float, share: float,
                 margin: float) -> np.ndarray:
    """N bools: the points (N x 3 metres) hit less than ``share`` x the median of ``weights`` (N hit
    counts) that lie outside the box of the others (the body; along its principal axes) grown by
    ``margin`` voxels of ``voxel_size`` metres. None drops when the body has fewer than 3 points."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    weights = np.asarray(weights, np.float64).reshape(-1)
    body = weights >= share * np.median(weights) if weights.size else np.zeros(0, bool)
    if body.sum() < 3:
        return np.zeros(len(points), bool)
    centre = points[body].mean(0)
    _, _, axes = np.linalg.svd(points[body] - centre, full_matrices=False)
    local = (points - centre) @ axes.T
    grow = margin * voxel_size
    low, high = local[body].min(0) - grow, local[body].max(0) + grow
    return ~body & ~np.all((local >= low) & (local <= high), axis=1)


def trim_strays(imap: InstanceMap, share: float, margin: float) -> dict[int, int]:
    """Drop every object's ``stray_voxels`` (in place; objects without hit counts are left alone);
    returns {object id: points dropped} for the objects that lost any. Ids, confidences, flags and
    statistics stay; the boxes are recomputed from the points kept."""
    dropped = {}
    for obj in list(imap):
        if obj.weights is None or obj.num_points < 4:
            continue
        stray = stray_voxels(obj.points, obj.weights, imap.metadata.voxel_size, share, margin)
        if not stray.any():
            continue
        keep = ~stray
        imap.update(MapObject.from_points(
            obj.id, obj.points[keep], obj.colors[keep], obj.weights[keep], up=imap.metadata.up,
            num_observations=obj.num_observations, first_frame=obj.first_frame, last_frame=obj.last_frame,
            confidence=obj.confidence, best_view_frame=obj.best_view_frame, best_view_box=obj.best_view_box,
            is_structure=obj.is_structure, attributes=dict(obj.attributes)))
        dropped[obj.id] = int(stray.sum())
    return dropped
