"""The weight-free default mask generator: regions of an RGB-D frame cut along depth jumps, concave creases
and colour edges, plus whole planes (floor, walls, table tops) as regions of their own.

Pipeline (at ~320 px wide, labels upsampled to the frame's size by nearest neighbour):
  1. subsample depth, fill small holes (from the neighbour of most similar colour), median-smooth,
     back-project, estimate normals;
  2. evidence: depth discontinuities (relative to z plus sensor noise), concave creases (a box standing on
     the floor; a box's own convex edges are ignored), colour gradients;
  3. overlapping hypotheses: level 0 cuts along depth jumps and strong concave creases; level 1 also along
     weak creases and colour edges; level 2 ("whole objects") cuts only along depth jumps and removes the
     structure planes, so a chair's back, seat and legs stay together. Each level's 4-connected components
     are grown back over the cut pixels (by distance to a planar neighbour's plane, else by depth step);
     level 0 also labels thin structures the cuts left without a seed (a pole: elongated leftovers in front
     of their surroundings);
     level-1 regions inside a small non-structure level-0 region (an object's parts) are not offered; a
     level-0 region hanging below an adjacent larger one (legs under a seat or top, in world height from the
     pose) is joined with it while the union stays compact, so the partition keeps the object whole;
  4. planes: least-squares planes per region; large planar regions are structure, coplanar ones are also
     offered united (a floor cut in two by a table), and adjacent non-structure level-0 regions joined by
     a crease are merged greedily by colour, every intermediate group offered (object parts);
  5. scores: the share of a region's outline that lies on evidence (a region bounded by real edges is a
     confident one) times a per-level weight; near-duplicates across levels removed; at most
     ``max_masks`` kept.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import cv2
import numpy as np

from scene.datasets import Frame

from . import depth_ops
from .planes import RegionPlanes, coplanar_groups, fit_region_planes, on_planes
from .types import MaskSet

LEVEL_GEOMETRY, LEVEL_COLOR, LEVEL_OBJECT, LEVEL_PLANE_UNION, LEVEL_PART_UNION = 0, 1, 2, 3, 4
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
# Score multiplier per level: regions cut by geometry alone are the most trustworthy.
_LEVEL_WEIGHT = {LEVEL_GEOMETRY: 1.0, LEVEL_COLOR: 0.9, LEVEL_OBJECT: 0.85, LEVEL_PLANE_UNION: 1.0,
                 LEVEL_PART_UNION: 0.8}


@dataclass(frozen=True)
class GeometricConfig:
    """Parameters; lengths in metres, pixel sizes at the internal (work) resolution unless said otherwise."""

    work_width: int = 320  # internal width; the subsampling factor is round(W / work_width), at least 1
    max_depth: float = 10.0  # depth beyond this (metres) is treated as invalid
    hole_fill_iters: int = 3  # invalid holes up to ~2x this many work pixels across are filled
    rel_jump: float = 0.025  # depth jump between neighbours, as a fraction of depth, that cuts regions
    sigma0: float = 0.0012  # sensor noise sigma(z) = sigma0 + sigma2 z^2 (Kinect-like, metres)
    sigma2: float = 0.0019  # metres per square metre of depth
    n_sigma: float = 3.0  # a depth jump also exceeds this many noise sigmas
    normal_radius: int = 1  # central-difference half-width for normals (work pixels)
    normal_smooth: int = 5  # box filter on normals (work pixels)
    crease_offset: int = 2  # normals compared this many work pixels either side of a pixel
    concave_strong: float = 0.12  # 1 - cos(angle) of a concave crease that cuts level 0 (~28 deg)
    concave_weak: float = 0.05  # ... that cuts level 1 (~18 deg)
    color_edge: float = 25.0  # Lab gradient (per work pixel) that cuts level 1 (texture and shading stay whole)
    color_blur: float = 1.0  # Gaussian sigma before the colour gradient (work pixels)
    min_region_px: int = 160  # smallest region kept, in full-resolution pixels
    grow_iters: int = 6  # growth steps over cut pixels
    structure_min_extent: float = 0.3  # a planar region is structure when its in-plane std (m) along both axes
    structure_min_fraction: float = 0.08  # exceeds this, or when it covers this share of the image
    planar_rms_abs: float = 0.012  # a region is planar when its plane rms < abs + rel * depth
    planar_rms_rel: float = 0.006  # (per metre of depth)
    on_plane_abs: float = 0.035  # a pixel within abs + rel * depth of a structure plane ...
    on_plane_rel: float = 0.01  # (per metre of depth)
    on_plane_angle_deg: float = 20.0  # ... and with a normal this close to the plane's belongs to it
    coplanar_angle_deg: float = 8.0  # planar regions this close in normal ...
    coplanar_offset: float = 0.06  # ... and offset (metres) are offered united with a structure plane
    # Level-1 regions inside a small non-structure level-0 region (its largest 3D std below ``sibling_extent``
    # metres, its area below ``sibling_max_fraction`` of the image) are not offered: there weak creases cut one
    # object's parts (shelf boards, a table's legs), which the smallest-mask-wins partition would keep apart.
    sibling_extent: float = 0.4  # metres
    sibling_max_fraction: float = 0.08  # of the image
    # Rigid joins at level 0: a non-structure region that hangs below an adjacent larger one (legs under a seat,
    # a table top or a shelf board: they share a border mostly free of depth jumps, its top height (world up from
    # the pose, else the image's up) is within ``join_contact`` m of the other's bottom, its horizontal offset is
    # under ``join_max_offset`` stds of the other's spread, its area under ``join_max_area_ratio`` of the other's)
    # is replaced with the other by their union, while that union stays compact (largest 3D std below
    # ``join_max_extent`` m, area below ``join_max_fraction`` of the image), so the smallest-mask-wins partition
    # keeps the object whole. ``join_max_area_ratio`` 0: off.
    join_max_area_ratio: float = 0.5  # the lower region's area at most this x the upper's; 0: no joins
    join_max_extent: float = 0.4  # metres: the union's largest 3D std stays below this
    join_max_fraction: float = 0.08  # ... and its area below this share of the image
    join_max_offset: float = 1.8  # the lower region's horizontal offset, in stds of the upper one's spread
    join_contact: float = 0.08  # metres: how close the upper region's bottom and the lower one's top must be
    # Thin structures (a lamp's pole, a chair's leg): a few pixels wide, they lose every seed pixel to the depth-jump
    # cuts on both sides. Level 0 also labels each leftover 8-connected component of at least ``thin_min_px``
    # full-resolution pixels that is elongated (its principal spreads differ by ``thin_elongation`` x or more)
    # and lies in front of its surroundings by a depth jump. ``thin_elongation`` 0: off.
    thin_min_px: int = 48  # full-resolution pixels
    thin_elongation: float = 4.0  # principal-spread ratio; 0: off
    merge_max_color: float = 40.0  # object-part merging: largest mean-RGB L1 difference (per channel) merged
    merge_max_unions: int = 20  # at most this many merged part groups per frame
    merge_max_fraction: float = 0.3  # merged groups covering more of the valid image are not offered
    dedupe_iou: float = 0.85  # a region with this IoU to one of an earlier level is a duplicate
    max_masks: int = 150  # at most this many masks per frame, best scores first


@dataclass
class _Level:
    """One level of the hierarchy at work resolution: labels (0 = none), their number, per-label data
    (row 0 is the unlabelled pixels)."""

    code: int
    labels: np.ndarray
    n: int
    area: np.ndarray
    support: np.ndarray
    structure: np.ndarray
    planar: np.ndarray
    planes: RegionPlanes


class GeometricMaskGenerator:
    """Depth + colour region masks for a ``Frame``; no learned weights. See the module docstring.

    ``GeometricMaskGenerator(config=None, **overrides)``: overrides replace fields of ``config``.
    ``generate(frame)`` returns a ``MaskSet`` at the frame's resolution with extra fields ``is_structure``
    (bool, large planes), ``level`` (int8: 0 geometry, 1 geometry + colour, 2 whole objects, 3 union of
    coplanar structure regions, 4 merged object parts; see the module docstring) and ``plane_rms``
    (float32 metres, rms distance of the region's seed points to their best plane).
    """

    name = "geometric"

    def __init__(self, config: GeometricConfig | None = None, **overrides):
        config = config or GeometricConfig()
        known = {f.name for f in fields(GeometricConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"GeometricMaskGenerator: unknown config field(s) {unknown}; known: {sorted(known)}")
        self.config = replace(config, **overrides)

    # -- public --------------------------------------------------------------------------------------
    def generate(self, frame: Frame) -> MaskSet:
        """Masks for one RGB-D ``frame`` (depth metres, 0 invalid; K in pixels)."""
        depth, color, K = _checked_inputs(frame)
        cfg = self.config
        depth = np.where(depth > cfg.max_depth, np.float32(0.0), depth)
        H, W = depth.shape
        f = max(1, int(round(W / cfg.work_width)))
        d, c, Kw = depth_ops.subsample(depth, color, K, f)
        d = depth_ops.fill_small_holes(d, c, cfg.hole_fill_iters)
        valid = d > 0
        if valid.sum() < cfg.min_region_px / (f * f):
            return MaskSet.empty(H, W)
        d = depth_ops.median_smooth(d)
        valid = d > 0
        pts = depth_ops.backproject(d, Kw)
        normals = depth_ops.normals_from_points(pts, valid, cfg.normal_radius, cfg.normal_smooth)

        disc = depth_ops.depth_discontinuities(d, valid, cfg.rel_jump, cfg.sigma0, cfg.sigma2, cfg.n_sigma)
        concave, _ = depth_ops.crease_strength(pts, normals, valid, cfg.crease_offset)
        cut0 = disc | (concave > cfg.concave_strong)
        cut1 = cut0 | (concave > cfg.concave_weak) | (depth_ops.color_gradient(c, cfg.color_blur) > cfg.color_edge)

        min_px = max(1, int(np.ceil(cfg.min_region_px / (f * f))))
        lv0 = self._level(cut0, d, valid, pts, min_px, LEVEL_GEOMETRY)
        lv0 = self._with_thin_regions(lv0, cut0, d, valid, pts, max(1, int(np.ceil(cfg.thin_min_px / (f * f)))))
        lv0 = self._join_rigid(lv0, cut0, disc, valid, pts, _camera_up(frame))
        lv1 = self._level(cut1, d, valid, pts, min_px, LEVEL_COLOR)
        structure_px = self._structure_pixels(lv0, pts, normals)
        lv2 = self._level(disc | structure_px, d, valid & ~structure_px, pts, min_px, LEVEL_OBJECT)
        return self._assemble([lv0, lv1, lv2], lv0, disc, c, (H, W), f)

    # -- levels --------------------------------------------------------------------------------------
    def _level(self, cut, depth, valid, pts, min_px: int, code: int) -> _Level:
        """Regions of ``valid & ~cut`` grown back over the cut, with their outline support and plane fits."""
        labels, n = _components(valid & ~cut, min_px)
        # Fit on the seeds, not the grown regions: creases would bend the fit.
        planes, planar = self._planes(labels, n, pts)
        labels = _grow(labels, depth, valid, pts, planes, planar, self.config)
        return self._finished(code, labels, n, planes, planar, cut, valid)

    def _with_thin_regions(self, lv: _Level, cut, depth, valid, pts, min_px: int) -> _Level:
        """``lv`` with its thin foreground leftovers labelled too (see ``GeometricConfig.thin_elongation``)."""
        cfg = self.config
        if cfg.thin_elongation <= 0:
            return lv
        count, leftover, stats, _ = cv2.connectedComponentsWithStats((valid & (lv.labels == 0)).astype(np.uint8),
                                                                      connectivity=8, ltype=cv2.CV_32S)
        long = _elongated(leftover, count, cfg.thin_elongation) & (stats[:, cv2.CC_STAT_AREA] >= min_px)
        candidates = np.flatnonzero(long)
        thin = [i for i in candidates if i > 0 and _in_front(leftover, i, stats[i], depth, valid, cfg)]
        if not thin:
            return lv
        remap = np.zeros(count, np.int32)
        remap[thin] = np.arange(lv.n, lv.n + len(thin), dtype=np.int32)
        return self._relabelled(lv.code, lv.labels + remap.take(leftover), lv.n + len(thin), cut, valid, pts)

    def _join_rigid(self, lv: _Level, cut, disc, valid, pts, up) -> _Level:
        """``lv`` with rigidly attached non-structure regions (legs under a seat, a pole on a lamp base) joined."""
        cfg = self.config
        if cfg.join_max_area_ratio <= 0:
            return lv
        groups = _rigid_groups(lv, disc, pts, up, cfg)
        if groups is None:
            return lv
        return self._relabelled(lv.code, groups.take(lv.labels), int(groups.max()) + 1, cut, valid, pts)

    def _relabelled(self, code: int, labels: np.ndarray, n: int, cut, valid, pts) -> _Level:
        """A level of the given (already grown) ``labels``: plane fits, structure flags, outline support."""
        planes, planar = self._planes(labels, n, pts)
        return self._finished(code, labels, n, planes, planar, cut, valid)

    def _planes(self, labels: np.ndarray, n: int, pts) -> tuple[RegionPlanes, np.ndarray]:
        """Plane fits of the labels (on every other pixel: 4x fewer sums) and which labels are planar."""
        cfg = self.config
        planes = fit_region_planes(pts[:, ::2, ::2], labels[::2, ::2], n)
        rms_limit = cfg.planar_rms_abs + cfg.planar_rms_rel * np.maximum(planes.centroid[:, 2], 1e-6)
        return planes, (planes.rms < rms_limit) & (planes.count >= 8)

    def _finished(self, code: int, labels: np.ndarray, n: int, planes: RegionPlanes, planar: np.ndarray, cut,
                  valid) -> _Level:
        """The level of final ``labels``: areas, structure flags (large planar regions), outline support."""
        cfg = self.config
        area = np.bincount(labels.ravel(), minlength=n)
        large = (planes.extent[:, 1] > cfg.structure_min_extent) | (area > cfg.structure_min_fraction * labels.size)
        structure = planar & large
        structure[0] = planar[0] = False
        return _Level(code, labels, n, area, _outline_support(labels, n, cut | ~valid), structure, planar, planes)

    def _structure_pixels(self, lv: _Level, pts: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """Pixels of structure regions, plus any pixel on one of their planes (floor patches between chair
        legs are cut off from the floor in the image but must not bridge objects together)."""
        cfg = self.config
        ids = np.flatnonzero(lv.structure)
        on = on_planes(pts, normals, lv.planes.normal[ids], lv.planes.offset[ids], cfg.on_plane_abs, cfg.on_plane_rel,
                       cfg.on_plane_angle_deg)
        return on | lv.structure[lv.labels]

    def _assemble(self, levels: list[_Level], base: _Level, disc: np.ndarray, color_work: np.ndarray, full_hw,
                  f: int) -> MaskSet:
        """Masks of every level's regions (minus near-duplicates of earlier levels), of the coplanar structure
        groups of ``base`` and of its merged object parts, best first, at most ``max_masks``, upsampled."""
        cfg = self.config
        chosen = []
        for k, lv in enumerate(levels):
            keep = np.ones(lv.n, bool)
            for earlier in levels[:k]:
                keep &= _not_duplicates(earlier, lv, cfg.dedupe_iou)
            if lv.code == LEVEL_COLOR:
                keep &= ~_inside_small_object(base, lv, cfg.sibling_extent, cfg.sibling_max_fraction)
            chosen.append(np.flatnonzero(keep[1:]) + 1)
        # Structure planes with the planar pieces that lie on them (a wall seen between two cabinets).
        planes = [g for g in coplanar_groups(base.planes, base.planar, cfg.coplanar_angle_deg, cfg.coplanar_offset)
                  if base.structure[g].any()]
        parts = _merged_parts(base, disc, color_work, cfg)
        unions = planes + parts
        union_code = [LEVEL_PLANE_UNION] * len(planes) + [LEVEL_PART_UNION] * len(parts)

        cat = lambda pieces, dtype: np.concatenate(pieces).astype(dtype)  # noqa: E731
        scores = cat([_score(lv.support[ids]) * np.float32(_LEVEL_WEIGHT[lv.code]) for lv, ids in zip(levels, chosen)]
                     + [[_score(base.support[g]).mean() * _LEVEL_WEIGHT[c] for g, c in zip(unions, union_code)]],
                     np.float32)
        is_structure = cat([lv.structure[ids] for lv, ids in zip(levels, chosen)]
                           + [np.array(union_code) == LEVEL_PLANE_UNION], bool)
        level = cat([np.full(len(ids), lv.code) for lv, ids in zip(levels, chosen)] + [union_code], np.int8)
        rms = cat([lv.planes.rms[ids] for lv, ids in zip(levels, chosen)] + [[base.planes.rms[g].max() for g in unions]],
                  np.float32)
        # Where each candidate's mask comes from: (index into levels, label), or (-1, index into unions).
        source = cat([np.full(len(ids), k) for k, ids in enumerate(chosen)] + [np.full(len(unions), -1)], np.int64)
        label = cat(chosen + [np.arange(len(unions))], np.int64)
        order = np.argsort(-scores, kind="stable")[: cfg.max_masks]
        extra = {"is_structure": is_structure[order], "level": level[order], "plane_rms": rms[order]}
        presence = [_label_presence(lv.labels, lv.n) for lv in levels]
        base_presence = next((pr for lv, pr in zip(levels, presence) if lv is base), None)
        work_boxes = cat([_boxes_from_presence(*pr)[ids] for pr, ids in zip(presence, chosen)]
                         + [_union_boxes(base_presence or _label_presence(base.labels, base.n), unions)], np.float32)
        boxes = _upscaled_boxes(work_boxes[order], f, base.labels.shape, full_hw)
        masks = _full_res_masks([lv.labels for lv in levels], source[order], label[order], base.labels, unions, f,
                                full_hw)
        return MaskSet(masks, scores[order], boxes, extra)


# -- helpers ------------------------------------------------------------------------------------------
def _checked_inputs(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frame's depth (float32 metres, invalid -> 0), colour and K, or a clear error."""
    if not all(hasattr(frame, a) for a in ("depth", "color", "K")):
        raise TypeError(f"GeometricMaskGenerator.generate needs a Frame with depth, got {type(frame).__name__}")
    depth = np.asarray(frame.depth)
    color = np.asarray(frame.color)
    K = np.asarray(frame.K, np.float64)
    where = getattr(frame, "source", "") or f"frame {getattr(frame, 'index', '?')}"
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f"{where}: depth must be a non-empty H x W array, got shape {depth.shape}")
    if color.shape != depth.shape + (3,) or color.dtype != np.uint8:
        raise ValueError(f"{where}: colour must be {depth.shape[0]}x{depth.shape[1]}x3 uint8, "
                         f"got {color.dtype} {color.shape}")
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{where}: K must be a finite 3x3 pinhole matrix with positive focal lengths, "
                         f"got {K.tolist()}")
    depth = depth.astype(np.float32, copy=False)
    bad = ~np.isfinite(depth) | (depth < 0)
    if bad.any():
        depth = np.where(bad, np.float32(0), depth)
    return depth, color, K


def _camera_up(frame) -> np.ndarray:
    """World up (+z of the pose's world frame) in camera coordinates, when the pose is finite and that up is
    within 60 degrees of the image's upward direction (-y); else -y itself."""
    fallback = np.array([0.0, -1.0, 0.0])
    pose = getattr(frame, "pose", None)
    if pose is None:
        return fallback
    pose = np.asarray(pose, np.float64)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        return fallback
    up = pose[:3, :3].T @ np.array([0.0, 0.0, 1.0])
    norm = np.linalg.norm(up)
    if not 0.9 < norm < 1.1 or up[1] / norm > -0.5:
        return fallback
    return up / norm


def _components(free: np.ndarray, min_px: int) -> tuple[np.ndarray, int]:
    """4-connected components of ``free``; components under ``min_px`` dropped; labels renumbered 1..n-1."""
    # Without stats (3x faster: they include double-precision centroids); areas from one bincount.
    n, labels = cv2.connectedComponents(free.astype(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    keep = np.bincount(labels.ravel(), minlength=n) >= min_px
    keep[0] = False
    remap = np.zeros(n, np.int32)
    remap[keep] = np.arange(1, keep.sum() + 1, dtype=np.int32)
    return remap.take(labels), int(keep.sum()) + 1


def _grow(labels: np.ndarray, depth: np.ndarray, valid: np.ndarray, pts: np.ndarray, planes: RegionPlanes,
          planar: np.ndarray, cfg: GeometricConfig) -> np.ndarray:
    """Give unlabelled valid pixels the label of the best-fitting 4-neighbour.

    The misfit to a planar region is the pixel's distance to the region's plane (metres, limit
    ``on_plane_abs + on_plane_rel * z``); to any other region, the depth step to the neighbour (limit: the
    depth-jump threshold). The smallest misfit within its limit wins, so cut lines and dropped specks are
    absorbed by the surface they belong to, the crease band where a box meets the floor goes to the box
    above the floor plane, and nothing is taken across a depth jump. Runs ``grow_iters`` synchronous steps
    over the frontier only (unlabelled pixels next to a label, or next to one labelled in the last step), on
    flat indices into copies padded by one unlabelled pixel.
    """
    h, w = labels.shape
    lab = depth_ops.pad1(labels).ravel()
    dep = depth_ops.pad1(depth).ravel()
    xyz = depth_ops.pad1(pts).reshape(3, -1)
    open_ = depth_ops.pad1(valid & (labels == 0)).ravel()
    plane = np.concatenate([planes.normal, planes.offset[:, None]], axis=1).astype(np.float32)
    steps = (1, -1, w + 2, -(w + 2))
    touched = cv2.dilate((labels > 0).astype(np.uint8), _CROSS) > 0
    front = np.flatnonzero(open_ & depth_ops.pad1(touched).ravel())  # only pixels next to a label can change
    near = np.zeros_like(open_)
    inf = np.float32(np.inf)
    for _ in range(cfg.grow_iters):
        if len(front) == 0:
            break
        z = dep[front]
        limit = depth_ops.jump_limit(z, cfg.rel_jump, cfg.sigma0, cfg.sigma2, cfg.n_sigma)
        plane_limit = np.float32(cfg.on_plane_abs) + np.float32(cfg.on_plane_rel) * z
        fx, fy, fz = xyz[0, front], xyz[1, front], xyz[2, front]
        best_cost = np.full(len(front), inf, np.float32)
        best_label = np.zeros(len(front), lab.dtype)
        for s in steps:
            nb = front + s
            nl = lab[nb]
            cost = np.abs(dep[nb] - z)
            cost[cost > limit] = inf  # never across a depth jump
            on = np.flatnonzero(planar[nl])
            if len(on):
                p = plane[nl[on]]
                dist = np.abs(p[:, 0] * fx[on] + p[:, 1] * fy[on] + p[:, 2] * fz[on] + p[:, 3])
                cost[on] = np.where(dist <= plane_limit[on], dist, inf)
            better = (cost < best_cost) & (nl > 0)
            np.copyto(best_cost, cost, where=better)
            np.copyto(best_label, nl, where=better)
        done = best_label > 0
        grown = front[done]
        lab[grown] = best_label[done]
        open_[grown] = False
        for s in steps:
            near[grown + s] = True
        front = np.flatnonzero(near & open_)
        near[front] = False  # the rest of ``near`` is not open and never read again
    return lab.reshape(h + 2, w + 2)[1:-1, 1:-1].copy()


def _elongated(labels: np.ndarray, n: int, ratio: float) -> np.ndarray:
    """Per label: its pixels' larger principal spread is at least ``ratio`` x the smaller (spreads as stds,
    the smaller floored at half a pixel), from per-label image moments."""
    pixels = np.flatnonzero(labels)
    flat = labels.ravel()[pixels]
    ys, xs = np.divmod(pixels, labels.shape[1])
    ys, xs = ys.astype(np.float64), xs.astype(np.float64)
    count = np.maximum(np.bincount(flat, minlength=n), 1).astype(np.float64)
    mean_x, mean_y = np.bincount(flat, xs, n) / count, np.bincount(flat, ys, n) / count
    xx = np.bincount(flat, xs * xs, n) / count - mean_x ** 2
    yy = np.bincount(flat, ys * ys, n) / count - mean_y ** 2
    xy = np.bincount(flat, xs * ys, n) / count - mean_x * mean_y
    half_gap = np.sqrt(((xx - yy) / 2) ** 2 + xy ** 2)
    large, small = (xx + yy) / 2 + half_gap, np.maximum((xx + yy) / 2 - half_gap, 0.25)
    return large >= ratio ** 2 * small


def _in_front(labels: np.ndarray, label: int, stat: np.ndarray, depth: np.ndarray, valid: np.ndarray,
              cfg: GeometricConfig) -> bool:
    """Whether component ``label`` (its ``cv2`` stats row) lies in front of the valid pixels around it by
    more than the depth-jump limit (medians)."""
    x, y, w, h = (int(v) for v in stat[:4])
    rows, cols = slice(max(y - 3, 0), y + h + 3), slice(max(x - 3, 0), x + w + 3)
    inside = labels[rows, cols] == label
    ring = (cv2.dilate(inside.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0) & ~inside & valid[rows, cols]
    if ring.sum() < 5:
        return False
    near, around = np.median(depth[rows, cols][inside]), np.median(depth[rows, cols][ring])
    return bool(around - near > depth_ops.jump_limit(np.float32(near), cfg.rel_jump, cfg.sigma0, cfg.sigma2,
                                                              cfg.n_sigma))


def _outline_support(labels: np.ndarray, n: int, evidence: np.ndarray) -> np.ndarray:
    """Per label, the share of its outline pixels (inside the image, not on the image border) that lie
    within one pixel of cut evidence or of unlabelled pixels. 1.0 for labels with no such outline."""
    h, w = labels.shape
    outline = np.zeros((h, w), bool)
    across = labels[:, 1:] != labels[:, :-1]  # each 4-neighbour pair compared once, marked on both sides
    outline[:, :-1] |= across
    outline[:, 1:] |= across
    across = labels[1:] != labels[:-1]
    outline[:-1] |= across
    outline[1:] |= across
    outline &= labels > 0
    outline[0, :] = outline[-1, :] = outline[:, 0] = outline[:, -1] = False
    near = cv2.dilate((evidence | (labels == 0)).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    total = np.bincount(labels[outline], minlength=n).astype(np.float32)
    hit = np.bincount(labels[outline & near], minlength=n).astype(np.float32)
    return np.where(total > 0, hit / np.maximum(total, 1), np.float32(1.0)).astype(np.float32)


def _score(support: np.ndarray) -> np.ndarray:
    """Region confidence in [0, 1] from its outline support."""
    return (np.float32(0.2) + np.float32(0.8) * np.clip(support, 0, 1)).astype(np.float32)


def _not_duplicates(lv0: _Level, lv1: _Level, max_iou: float) -> np.ndarray:
    """Per level-1 label: True unless it has IoU >= ``max_iou`` with some level-0 label."""
    inter = np.bincount((lv0.labels.ravel().astype(np.int64) * lv1.n + lv1.labels.ravel()),
                        minlength=lv0.n * lv1.n).reshape(lv0.n, lv1.n)[1:, :]
    union = lv0.area[1:, None] + lv1.area[None, :] - inter
    iou = inter / np.maximum(union, 1)
    return ~(iou >= max_iou).any(axis=0) if len(iou) else np.ones(lv1.n, bool)


def _inside_small_object(parent: _Level, child: _Level, max_extent: float, max_fraction: float) -> np.ndarray:
    """Per child label: True when most (80%) of it lies in one non-structure parent region whose 3D extent
    (largest std, metres) is below ``max_extent`` and whose area is below ``max_fraction`` of the image."""
    inter = np.bincount(parent.labels.ravel().astype(np.int64) * child.n + child.labels.ravel(),
                        minlength=parent.n * child.n).reshape(parent.n, child.n)
    best = inter.argmax(axis=0)
    small = (~parent.structure & (parent.planes.extent[:, 0] < max_extent)
             & (parent.area < max_fraction * parent.labels.size))
    small[0] = False
    return small[best] & (inter[best, np.arange(child.n)] >= 0.8 * np.maximum(child.area, 1))


_BYTE_REPEAT = {2: (np.uint16, 0x0101), 4: (np.uint32, 0x01010101), 8: (np.uint64, 0x0101010101010101)}


def _upsample(masks: np.ndarray, f: int, full_hw: tuple[int, int]) -> np.ndarray:
    """Nearest upsampling of N x h x w work-resolution masks to N x H x W (work pixel = full pixel // f,
    clipped to the last row/column)."""
    n, h, w = masks.shape
    H, W = full_hw
    if f == 1 and (h, w) == (H, W):
        return masks
    if h * f == H and w * f == W and f in _BYTE_REPEAT:
        # Repeat each byte f times along x by multiplying it into a wider integer (0/1 -> 0x0101..),
        # then copy whole rows f times along y: ~25x faster than a broadcast over a 5-D view.
        wide, ones = _BYTE_REPEAT[f]
        rows = (masks.view(np.uint8).astype(wide) * wide(ones)).view(np.uint8).view(bool)
        out = np.empty((n, h, f, W), bool)
        out[...] = rows[:, :, None, :]
        return out.reshape(n, H, W)
    ys = np.minimum(np.arange(H) // f, h - 1)
    xs = np.minimum(np.arange(W) // f, w - 1)
    return masks[:, ys][:, :, xs]


def _merged_parts(lv: _Level, disc: np.ndarray, color: np.ndarray, cfg: GeometricConfig) -> list[np.ndarray]:
    """Groups of adjacent non-structure regions of ``lv`` (a chair's back, seat and legs), as label arrays.

    Regions are adjacent when they share a border mostly free of depth jumps (a crease, not an occlusion).
    Adjacent pairs are merged greedily, most similar mean colour first (union-find over a few dozen
    regions), and every group formed along the way is offered, up to ``merge_max_unions``.
    """
    labels, n = lv.labels, lv.n
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    border = np.flatnonzero(a != b)  # a few percent of the pixel pairs: test only those further
    a, b = a[border], b[border]
    jump = np.concatenate([(disc[:, :-1] | disc[:, 1:]).ravel(), (disc[:-1, :] | disc[1:, :]).ravel()])[border]
    keep = (a > 0) & (b > 0) & ~lv.structure[a] & ~lv.structure[b]
    if not keep.any():
        return []
    pair = np.minimum(a[keep], b[keep]).astype(np.int64) * n + np.maximum(a[keep], b[keep])
    length = np.bincount(pair, minlength=n * n)
    jumps = np.bincount(pair, weights=jump[keep], minlength=n * n)
    edges = np.flatnonzero((length >= 3) & (jumps < 0.5 * length))
    mean_rgb = _region_colors(labels, color, n)
    weight = np.abs(mean_rgb[edges // n] - mean_rgb[edges % n]).sum(axis=1) / 3.0
    order = np.argsort(weight, kind="stable")
    order = order[weight[order] <= cfg.merge_max_color]
    parent = np.arange(n)
    members = {i: [i] for i in range(n)}
    max_area = cfg.merge_max_fraction * np.count_nonzero(labels)
    out = []
    for e in edges[order]:
        ra, rb = _root(parent, e // n), _root(parent, e % n)
        if ra == rb:
            continue
        parent[rb] = ra
        members[ra] = members[ra] + members.pop(rb)
        group = np.array(members[ra])
        if lv.area[group].sum() <= max_area:
            out.append(group)
            if len(out) >= cfg.merge_max_unions:
                break
    return out


def _rigid_groups(lv: _Level, disc: np.ndarray, pts: np.ndarray, up: np.ndarray, cfg: GeometricConfig):
    """Label remap (old -> new, 0 kept) joining rigidly attached regions of ``lv``, or None when none join."""
    labels, n = lv.labels, lv.n
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    border = np.flatnonzero(a != b)
    a, b = a[border], b[border]
    jump = np.concatenate([(disc[:, :-1] | disc[:, 1:]).ravel(), (disc[:-1, :] | disc[1:, :]).ravel()])[border]
    keep = (a > 0) & (b > 0) & ~lv.structure[a] & ~lv.structure[b]
    if not keep.any():
        return None
    a, b, jump = a[keep], b[keep], jump[keep]
    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    pair = lo * n + hi
    length = np.bincount(pair, minlength=n * n)
    jumps = np.bincount(pair, weights=jump, minlength=n * n)
    edges = np.flatnonzero((length >= 3) & (jumps < 0.5 * length))
    if len(edges) == 0:
        return None
    # Per-region 3D moments and robust height range (every other pixel; heights along ``up``).
    sub = labels[::2, ::2].ravel()
    p = pts[:, ::2, ::2].reshape(3, -1).astype(np.float64)
    m0 = np.bincount(sub, minlength=n).astype(np.float64)
    m1 = np.stack([np.bincount(sub, p[i], n) for i in range(3)], axis=1)
    m2 = np.empty((n, 3, 3))
    for i in range(3):
        for j in range(i, 3):
            m2[:, i, j] = m2[:, j, i] = np.bincount(sub, p[i] * p[j], n)
    height = up @ p
    order = np.lexsort((height, sub))
    cnt = m0.astype(np.int64)
    start = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    hs = height[order]
    last = max(len(hs) - 1, 0)
    zlo = hs[np.minimum(start + (0.05 * np.maximum(cnt - 1, 0)).astype(np.int64), last)]
    zhi = hs[np.minimum(start + (0.95 * np.maximum(cnt - 1, 0)).astype(np.int64), last)]
    safe = np.maximum(m0, 1.0)
    mean = m1 / safe[:, None]
    cov = m2 / safe[:, None, None] - mean[:, :, None] * mean[:, None, :]
    ea, eb = edges // n, edges % n
    big = np.where(lv.area[ea] >= lv.area[eb], ea, eb)
    small = np.where(lv.area[ea] >= lv.area[eb], eb, ea)
    tol = cfg.join_contact
    below = np.abs(zhi[small] - zlo[big]) <= tol  # small's top at big's underside
    hvec = mean[small] - mean[big]
    hvec = hvec - np.outer(hvec @ up, up)
    big_var = np.trace(cov[big], axis1=1, axis2=2) - np.einsum("i,kij,j->k", up, cov[big], up)  # horizontal
    under = np.linalg.norm(hvec, axis=1) <= cfg.join_max_offset * np.sqrt(np.maximum(big_var, 0.0))
    hangs = (lv.area[small] <= cfg.join_max_area_ratio * lv.area[big]) & below & under
    ok = hangs & (m0[small] >= 4) & (m0[big] >= 4)
    if not ok.any():
        return None
    parent = np.arange(n)
    max_area = cfg.join_max_fraction * labels.size
    area = lv.area.astype(np.float64).copy()
    M0, M1, M2 = m0.copy(), m1.copy(), m2.copy()
    joined = False
    for k in np.argsort(-length[edges] * ok, kind="stable"):
        if not ok[k]:
            break
        ra, rb = _root(parent, big[k]), _root(parent, small[k])
        if ra == rb:
            continue
        c0, c1, c2 = M0[ra] + M0[rb], M1[ra] + M1[rb], M2[ra] + M2[rb]
        if c0 < 8 or area[ra] + area[rb] > max_area:
            continue
        mu = c1 / c0
        ev = np.linalg.eigvalsh(c2 / c0 - np.outer(mu, mu))
        if np.sqrt(max(ev[-1], 0.0)) >= cfg.join_max_extent:
            continue
        parent[rb] = ra
        M0[ra], M1[ra], M2[ra], area[ra] = c0, c1, c2, area[ra] + area[rb]
        joined = True
    if not joined:
        return None
    roots = np.array([_root(parent, i) for i in range(n)])
    _, remap = np.unique(roots, return_inverse=True)
    return remap.astype(np.int32)  # root 0 stays 0 (label 0 is its own root and the smallest)


def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return int(i)


def _full_res_masks(label_images: list, source: np.ndarray, label: np.ndarray, base_labels: np.ndarray,
                    unions: list, f: int, full_hw: tuple[int, int]) -> np.ndarray:
    """N x H x W masks: row i is ``label_images[source[i]] == label[i]``, or where ``source[i]`` is -1 the union
    ``unions[label[i]]`` of ``base_labels`` regions, upsampled like ``_upsample``.

    Region masks are compared directly on the upsampled (8/16-bit) label image, one vectorised comparison per
    mask: no work-resolution mask stack to fill and upsample (writing the output is the cost that remains)."""
    H, W = full_hw
    out = np.empty((len(source), H, W), bool)
    full = {k: _upsample_labels(label_images[k], f, full_hw) for k in np.unique(source[source >= 0]).tolist()}
    for i, (k, lab) in enumerate(zip(source.tolist(), label.tolist())):
        if k >= 0:
            np.equal(full[k], lab, out=out[i])
    rows = np.flatnonzero(source < 0)
    if len(rows):
        member = np.zeros((len(rows), int(base_labels.max()) + 1), bool)
        for r, u in enumerate(label[rows].tolist()):
            member[r, unions[u]] = True
        out[rows] = _upsample(np.ascontiguousarray(member[:, base_labels]), f, full_hw)
    return out


def _upsample_labels(labels: np.ndarray, f: int, full_hw: tuple[int, int]) -> np.ndarray:
    """Nearest upsampling of an h x w label image (same pixel mapping as ``_upsample``), in the narrowest
    unsigned dtype that holds its labels (comparisons on 8-bit labels are ~4x cheaper than on 32-bit)."""
    h, w = labels.shape
    top = int(labels.max()) if labels.size else 0
    dtype = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int64
    ys = np.minimum(np.arange(full_hw[0]) // f, h - 1)
    xs = np.minimum(np.arange(full_hw[1]) // f, w - 1)
    return labels.astype(dtype).take(ys, axis=0).take(xs, axis=1)


def _label_presence(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n x h, n x w) bool: whether label k occurs in each row / each column of ``labels``."""
    h, w = labels.shape
    lab = labels.astype(np.int64)
    rows = np.bincount((lab * h + np.arange(h)[:, None]).ravel(), minlength=n * h).reshape(n, h) > 0
    cols = np.bincount((lab * w + np.arange(w)[None, :]).ravel(), minlength=n * w).reshape(n, w) > 0
    return rows, cols


def _boxes_from_presence(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """XYXY boxes (exclusive max) from row/column presence, as ``boxes_from_masks``; absent -> zeros."""
    h, w = rows.shape[1], cols.shape[1]
    present = rows.any(axis=1)
    boxes = np.zeros((len(rows), 4), np.float32)
    boxes[:, 0] = np.where(present, cols.argmax(axis=1), 0)
    boxes[:, 1] = np.where(present, rows.argmax(axis=1), 0)
    boxes[:, 2] = np.where(present, w - cols[:, ::-1].argmax(axis=1), 0)
    boxes[:, 3] = np.where(present, h - rows[:, ::-1].argmax(axis=1), 0)
    return boxes


def _union_boxes(presence: tuple[np.ndarray, np.ndarray], groups: list) -> np.ndarray:
    """len(groups) x 4 XYXY boxes of the unions of label groups, from the labels' ``_label_presence``."""
    if not groups:
        return np.zeros((0, 4), np.float32)
    rows, cols = presence
    return _boxes_from_presence(np.stack([rows[g].any(axis=0) for g in groups]),
                                np.stack([cols[g].any(axis=0) for g in groups]))


def _region_colors(labels: np.ndarray, color: np.ndarray, n: int) -> np.ndarray:
    """n x 3 float32 mean RGB of each label's pixels (row 0: unlabelled)."""
    lab = labels.ravel()
    count = np.maximum(np.bincount(lab, minlength=n), 1).astype(np.float32)
    rgb = color.reshape(-1, 3)
    return np.stack([np.bincount(lab, rgb[:, i], n) for i in range(3)], axis=1).astype(np.float32) / count[:, None]


def _upscaled_boxes(boxes: np.ndarray, f: int, work_hw: tuple[int, int], full_hw: tuple[int, int]) -> np.ndarray:
    """XYXY boxes of work-resolution masks -> boxes of the ``_upsample``d masks (exclusive max, full pixels).

    The last work row/column also covers any leftover full-resolution rows/columns."""
    (h, w), (H, W) = work_hw, full_hw
    out = boxes * np.float32(f)
    out[:, 2] = np.where(boxes[:, 2] >= w, W, out[:, 2])
    out[:, 3] = np.where(boxes[:, 3] >= h, H, out[:, 3])
    empty = boxes[:, 2] <= boxes[:, 0]
    out[empty] = 0
    return out.astype(np.float32)
