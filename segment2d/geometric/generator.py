"""``GeometricMaskGenerator``: one RGB-D frame to a MaskSet (see the package docstring for the steps)."""
from __future__ import annotations

from dataclasses import fields, replace


import cv2
import numpy as np

from scene.datasets import Frame

from .. import depth_ops
from ..planes import PointSamples, RegionPlanes, coplanar_groups, fit_region_planes, on_planes
from ..types import MaskCrops, MaskSet
from .config import FOLDED_FIELDS, GeometricConfig
from .levels import (LEVEL_COLOR, LEVEL_GEOMETRY, LEVEL_OBJECT, LEVEL_PART_UNION, LEVEL_PLANE_UNION, Level,
                     merged_parts, rigid_groups)
from .masks import boxes_from_presence, full_res_crops, label_presence, union_boxes, upscaled_boxes
from .regions import components, elongated, grow, in_front
from .scoring import inside_small_object, not_duplicates, outline_support, overlaps, support_score


class GeometricMaskGenerator:
    """Depth + colour region masks for a ``Frame``; no learned weights. See the package docstring.

    ``GeometricMaskGenerator(config=None, **overrides)``: overrides replace fields of ``config``.
    ``generate(frame)`` returns a ``MaskSet`` at the frame's resolution with extra fields ``is_structure``
    (bool, large planes), ``level`` (int8: 0 geometry, 1 geometry + colour, 2 whole objects, 3 union of
    coplanar structure regions, 4 merged object parts; see the package docstring) and ``plane_rms``
    (float32 metres, rms distance of the region's seed points to their best plane).
    """

    name = "geometric"
    process_safe = True  # a config and pure per-frame functions: a worker process may run a copy

    def __init__(self, config: GeometricConfig | None = None, **overrides):
        config = config or GeometricConfig()
        known = {f.name for f in fields(GeometricConfig)}
        unknown = sorted(set(overrides) - known)
        for name in unknown:
            if name in FOLDED_FIELDS:
                raise TypeError(f"GeometricMaskGenerator: {name!r} was folded into {FOLDED_FIELDS[name]!r}; set that")
        if unknown:
            raise TypeError(f"GeometricMaskGenerator: unknown config field(s) {unknown}; known: {sorted(known)}")
        self.config = replace(config, **overrides)

    # -- public --------------------------------------------------------------------------------------
    def generate(self, frame: Frame) -> MaskSet:
        """Masks for one RGB-D ``frame`` (depth metres, 0 invalid; K in pixels)."""
        return self.generate_crops(frame).to_maskset()

    def generate_crops(self, frame: Frame) -> MaskCrops:
        """``generate``'s masks as box crops (``MaskCrops``), without the N x H x W stack."""
        return self.generate_with_levels(frame)[0]

    def generate_with_levels(self, frame: Frame) -> tuple[MaskCrops, list[Level], int]:
        """``generate_crops``'s masks, the levels they come from (geometry, geometry + colour, whole
        objects: ``Level``s at work resolution; none when the frame has too little valid depth) and the
        subsampling factor (work pixel (i, j) is full pixel (f i + f // 2, f j + f // 2)): for diagnostics."""
        depth, color, K = _checked_inputs(frame)
        cfg = self.config
        H, W = depth.shape
        f = max(1, int(round(W / cfg.work_width)))
        d, c, Kw = depth_ops.subsample(depth, color, K, f)
        d = _usable(d, cfg.max_depth)  # after subsampling (pixel for pixel the same): f^2 fewer pixels to test
        d = depth_ops.fill_small_holes(d, c, cfg.hole_fill_iters)
        valid = d > 0
        if valid.sum() < cfg.min_region_px / (f * f):
            return MaskCrops([], (H, W), np.zeros(0, np.float32), np.zeros((0, 4), np.float32)), [], f
        d = depth_ops.median_smooth(d)
        valid = d > 0
        pts = depth_ops.backproject(d, Kw)
        normals = depth_ops.normals_from_points(pts, valid, cfg.normal_radius, cfg.normal_smooth)

        disc = depth_ops.depth_discontinuities(d, valid, cfg.rel_jump, cfg.sigma0, cfg.sigma2, cfg.n_sigma)
        # Only strengths above the weaker threshold are compared, so weaker ones need not be exact.
        concave = depth_ops.concave_strength(pts, normals, valid, cfg.crease_offset,
                                             floor=min(cfg.concave_weak, cfg.concave_strong))
        cut0 = disc | (concave > cfg.concave_strong)
        colour_edge = depth_ops.color_gradient(c, cfg.color_blur, cfg.chroma_weight) > cfg.color_edge
        cut1 = cut0 | (concave > cfg.concave_weak) | colour_edge

        min_px = max(1, int(np.ceil(cfg.min_region_px / (f * f))))
        samples = PointSamples.of(pts[:, ::2, ::2])  # plane fits use every other pixel: 4x fewer sums
        lv0 = self._level(cut0, d, valid, pts, samples, min_px, LEVEL_GEOMETRY)
        lv0 = self._with_thin_regions(lv0, cut0, d, valid, samples, max(1, int(np.ceil(cfg.thin_min_px / (f * f)))))
        lv0 = self._join_rigid(lv0, cut0, disc, valid, samples, _camera_up(frame))
        lv1 = self._level(cut1, d, valid, pts, samples, min_px, LEVEL_COLOR)
        structure_px = self._structure_pixels(lv0, pts, normals)
        lv2 = self._level(disc | structure_px, d, valid & ~structure_px, pts, samples, min_px, LEVEL_OBJECT)
        levels = [replace(lv, support=outline_support(lv.labels, lv.n, lv.evidence)) for lv in (lv0, lv1, lv2)]
        return self._assemble(levels, levels[0], disc, c, (H, W), f), levels, f

    # -- levels --------------------------------------------------------------------------------------
    def _level(self, cut, depth, valid, pts, samples: PointSamples, min_px: int, code: int) -> Level:
        """Regions of ``valid & ~cut`` grown back over the cut, with their outline support and plane fits."""
        labels, n = components(valid & ~cut, min_px)
        # Fit on the seeds, not the grown regions: creases would bend the fit.
        planes, planar = self._planes(labels, n, samples)
        labels = grow(labels, depth, valid, pts, planes, planar, self.config)
        return self._finished(code, labels, n, planes, planar, cut, valid)

    def _with_thin_regions(self, lv: Level, cut, depth, valid, samples: PointSamples, min_px: int) -> Level:
        """``lv`` with its thin foreground leftovers labelled too (see ``GeometricConfig.thin_elongation``)."""
        cfg = self.config
        if cfg.thin_elongation <= 0:
            return lv
        count, leftover, stats, _ = cv2.connectedComponentsWithStats((valid & (lv.labels == 0)).astype(np.uint8),
                                                                      connectivity=8, ltype=cv2.CV_32S)
        long = elongated(leftover, count, cfg.thin_elongation) & (stats[:, cv2.CC_STAT_AREA] >= min_px)
        candidates = np.flatnonzero(long)
        thin = [i for i in candidates if i > 0 and in_front(leftover, i, stats[i], depth, valid, cfg)]
        if not thin:
            return lv
        remap = np.zeros(count, np.int32)
        remap[thin] = np.arange(lv.n, lv.n + len(thin), dtype=np.int32)
        return self._relabelled(lv.code, lv.labels + remap.take(leftover), lv.n + len(thin), cut, valid, samples)

    def _join_rigid(self, lv: Level, cut, disc, valid, samples: PointSamples, up) -> Level:
        """``lv`` with rigidly attached non-structure regions (legs under a seat, a pole on a lamp base) joined."""
        cfg = self.config
        if cfg.join_max_area_ratio <= 0:
            return lv
        groups = rigid_groups(lv, disc, samples, up, cfg)
        if groups is None:
            return lv
        return self._relabelled(lv.code, groups.take(lv.labels), int(groups.max()) + 1, cut, valid, samples)

    def _relabelled(self, code: int, labels: np.ndarray, n: int, cut, valid, samples: PointSamples) -> Level:
        """A level of the given (already grown) ``labels``: plane fits, structure flags, outline support."""
        planes, planar = self._planes(labels, n, samples)
        return self._finished(code, labels, n, planes, planar, cut, valid)

    def _planes(self, labels: np.ndarray, n: int, samples: PointSamples) -> tuple[RegionPlanes, np.ndarray]:
        """Plane fits of the labels (on every other pixel: 4x fewer sums) and which labels are planar."""
        cfg = self.config
        planes = fit_region_planes(samples, labels[::2, ::2], n)
        rms_limit = cfg.planar_rms_abs + cfg.planar_rms_rel * np.maximum(planes.centroid[:, 2], 1e-6)
        return planes, (planes.rms < rms_limit) & (planes.count >= 8)

    def _finished(self, code: int, labels: np.ndarray, n: int, planes: RegionPlanes, planar: np.ndarray, cut,
                  valid) -> Level:
        """The level of final ``labels``: areas, structure flags (large planar regions); not yet scored."""
        cfg = self.config
        area = np.bincount(labels.ravel(), minlength=n)
        large = (planes.extent[:, 1] > cfg.structure_min_extent) | (area > cfg.object_fraction * labels.size)
        structure = planar & large
        structure[0] = planar[0] = False
        return Level(code, labels, n, area, cut | ~valid, structure, planar, planes)

    def _structure_pixels(self, lv: Level, pts: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """Pixels of structure regions, plus any pixel on one of their planes (floor patches between chair
        legs are cut off from the floor in the image but must not bridge objects together)."""
        cfg = self.config
        ids = np.flatnonzero(lv.structure)
        on = on_planes(pts, normals, lv.planes.normal[ids], lv.planes.offset[ids], cfg.on_plane_abs, cfg.on_plane_rel,
                       cfg.on_plane_angle_deg)
        return on | lv.structure[lv.labels]

    def _assemble(self, levels: list[Level], base: Level, disc: np.ndarray, color_work: np.ndarray, full_hw,
                  f: int) -> MaskCrops:
        """Masks of every level's regions (minus near-duplicates of earlier levels), of the coplanar structure
        groups of ``base`` and of its merged object parts, best first, at most ``max_masks``, upsampled. Settles
        the level-1 regions' structure flags in ``levels`` (in place) against the ``base`` regions holding them."""
        cfg = self.config
        chosen = []
        for k, lv in enumerate(levels):
            keep = np.ones(lv.n, bool)
            counts = [overlaps(earlier, lv) for earlier in levels[:k]]
            for earlier, count in zip(levels, counts):
                keep &= not_duplicates(earlier, lv, cfg.dedupe_iou, count)
            if lv.code == LEVEL_COLOR:
                with_base = next((count for earlier, count in zip(levels, counts) if earlier is base), None)
                with_base = overlaps(base, lv) if with_base is None else with_base
                keep &= ~inside_small_object(base, lv, cfg.object_extent, cfg.object_fraction,
                                             cfg.sibling_inside_share, with_base)
                # Structure is geometry's call: a region that colour or a weak crease cut off (a sofa's back
                # cushion, planar and large in a close view) is structure only inside a base region that is.
                # Every map of ``benchmarks.variants`` (640 x 480) scores the same with it (2026-12-05); at
                # 160 x 120 it kept a sofa's back from being flagged a wall.
                levels[k] = lv = replace(lv, structure=lv.structure & base.structure[with_base.argmax(axis=0)])
            chosen.append(np.flatnonzero(keep[1:]) + 1)
        # Structure planes with the planar pieces that lie on them (a wall seen between two cabinets).
        planes = [g for g in coplanar_groups(base.planes, base.planar, cfg.coplanar_angle_deg, cfg.coplanar_offset)
                  if base.structure[g].any()]
        parts = merged_parts(base, disc, color_work, cfg)
        unions = planes + parts
        union_code = [LEVEL_PLANE_UNION] * len(planes) + [LEVEL_PART_UNION] * len(parts)

        cat = lambda pieces, dtype: np.concatenate(pieces).astype(dtype)  # noqa: E731
        weight, floor = cfg.level_weights, cfg.score_floor
        scores = cat([support_score(lv.support[ids], floor) * np.float32(weight[lv.code])
                      for lv, ids in zip(levels, chosen)]
                     + [[support_score(base.support[g], floor).mean() * weight[c] for g, c in zip(unions, union_code)]],
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
        presence = [label_presence(lv.labels, lv.n) for lv in levels]
        base_presence = next((pr for lv, pr in zip(levels, presence) if lv is base), None)
        work_boxes = cat([boxes_from_presence(*pr)[ids] for pr, ids in zip(presence, chosen)]
                         + [union_boxes(base_presence or label_presence(base.labels, base.n), unions)], np.float32)
        boxes = upscaled_boxes(work_boxes[order], f, base.labels.shape, full_hw)
        crops = full_res_crops([lv.labels for lv in levels], source[order], label[order], base.labels, unions, f,
                               full_hw, boxes)
        return MaskCrops(crops, full_hw, scores[order], boxes, extra)


def _checked_inputs(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frame's depth (float32 metres, not yet cleaned: see ``_usable``), colour and K, or a clear error."""
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
    return depth.astype(np.float32, copy=False), color, K


def _usable(depth: np.ndarray, max_depth: float) -> np.ndarray:
    """``depth`` with non-finite, negative and beyond-``max_depth`` readings set to 0 (invalid)."""
    bad = ~np.isfinite(depth) | (depth < 0) | (depth > max_depth)
    return np.where(bad, np.float32(0), depth) if bad.any() else depth


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
