"""The geometric generator's settings (``GeometricConfig``): lengths in metres, pixel sizes at the internal
work resolution unless said otherwise. Every field is also listed in ``docs/config.example.toml``."""
from __future__ import annotations

from dataclasses import dataclass

# Settings of older configs that one setting now does the work of (they held its value by default); a config
# file naming one is read as the new name (``scene.config``).
FOLDED_FIELDS = {"sibling_extent": "object_extent", "join_max_extent": "object_extent",
                 "sibling_max_fraction": "object_fraction", "join_max_fraction": "object_fraction",
                 "structure_min_fraction": "object_fraction"}


@dataclass(frozen=True)
class GeometricConfig:
    """Parameters; lengths in metres, pixel sizes at the internal (work) resolution unless said otherwise."""

    # The work resolution, for small things at a distance (their creases span a few work pixels): 640 (no
    # subsampling of 640 x 480 frames; the pixel sizes below unchanged) against 320, refined maps, 2026-12-05
    # (``benchmarks.variants``): ScanNet non-structure box AP25 / AP50 pooled 0.750 / 0.376 -> 0.585 / 0.373
    # (scene0448_01 0.696 / 0.149 -> 0.495 / 0.192), held-out noisy AP50 room 0.814 -> 0.782, cluttered
    # 0.633 -> 0.679, tabletop 0.876 -> 0.859.
    work_width: int = 320  # internal width; the subsampling factor is round(W / work_width), at least 1
    max_depth: float = 10.0  # depth beyond this (metres) is treated as invalid
    hole_fill_iters: int = 3  # invalid holes up to ~2x this many work pixels across are filled
    rel_jump: float = 0.025  # depth jump between neighbours, as a fraction of depth, that cuts regions
    sigma0: float = 0.0012  # sensor noise sigma(z) = sigma0 + sigma2 z^2 (Kinect-like, metres)
    sigma2: float = 0.0019  # metres per square metre of depth
    n_sigma: float = 3.0  # a depth jump also exceeds this many noise sigmas
    # Cutting at smaller jumps gains the tuned seeds 0-1 (noisy AP50 cluttered / room / tabletop 0.596 / 0.855 /
    # 0.733: n_sigma 2 0.611 / 0.875 / 0.736, rel_jump 0.015 0.594 / 0.878 / 0.740) and scene0448_01 AP50
    # (0.074 -> 0.199 / 0.142), but not the held-out seeds 2-5 (room 0.755 -> 0.718 / 0.728) nor ScanNet pooled
    # box AP25 (0.774 -> 0.604 / 0.573): its fragile true positives break (2026-12-05, benchmarks.variants).
    normal_radius: int = 1  # central-difference half-width for normals (work pixels)
    # The crease band is about normal_smooth + 2 crease_offset work pixels wide, as wide as a 10 cm object at
    # 2.5 m: under such an object standing on a box the 90-degree crease reads 0.1-0.35, not 1, and its seed
    # leaks into the box's through gaps where the silhouette's depth-jump band meets the base crease. Narrower
    # bands separate more such pairs but cut real surfaces apart (held-out synthetic room seeds 2-5, level 0
    # holding such a pair in 76 of 288 views; ScanNet non-structure box AP25 / AP50 pooled, refined map, 0.748 /
    # 0.308): normal_smooth 3: 58 views, ScanNet 0.373 / 0.190; crease_offset 1: 115 views; the level-0 cut
    # closed by a 3 x 3 morphological closing: 62 views, ScanNet 0.476 / 0.269, noisy room AP50 seeds 2-5
    # 0.748 -> 0.680.
    normal_smooth: int = 5  # box filter on normals (work pixels)
    crease_offset: int = 2  # normals compared this many work pixels either side of a pixel
    concave_strong: float = 0.12  # 1 - cos(angle) of a concave crease that cuts level 0 (~28 deg)
    concave_weak: float = 0.05  # ... that cuts level 1 (~18 deg)
    color_edge: float = 25.0  # Lab gradient (per work pixel) that cuts level 1 (texture and shading stay whole)
    color_blur: float = 1.0  # Gaussian sigma before the colour gradient (work pixels)
    # A change of hue cuts at half the gradient a change of lightness needs (CIE94's textile weighting, k_L = 2):
    # shading and texture move lightness, an object's edge against another of its brightness moves hue (a striped
    # green box on a checkered blue one: inside them the lightness gradient reaches 24 and the chroma's 12, 99th
    # percentiles; across their edge the chroma's median is 15, the lightness's 14).
    # Measured 2026-12-05 (``benchmarks.variants``, every map afresh; before, the largest channel's gradient, ->
    # weight 2; noisy refined AP / AP50): held-out room 2-5 0.617 / 0.814 -> 0.649 / 0.827 (1.5: 0.619 / 0.812, 3:
    # 0.642 / 0.821), cluttered 2-5 0.451 / 0.632 -> 0.446 / 0.639, tabletop 2-5 0.729 / 0.876 the same; tuned room
    # 0-1 0.648 / 0.851 -> 0.641 / 0.851, cluttered 0-1 0.439 / 0.621 -> 0.453 / 0.639, tabletop 0-1 0.660 / 0.846
    # -> 0.652 / 0.846; ScanNet non-structure box AP25 / AP50 scene0448_01 0.721 / 0.188 -> 0.721 / 0.198, pooled
    # 0.761 / 0.401 -> 0.761 / 0.404 (its white objects differ in lightness only). Seeds 6-9, used for nothing else
    # (the same run, refined): room 0.538 / 0.724 -> 0.548 / 0.725, cluttered 0.473 / 0.674 -> 0.471 / 0.675,
    # tabletop 0.660 / 0.818 -> 0.663 / 0.831.
    # Measured with it and not kept (same runs; refined, ScanNet pooled box AP25 / AP50, noisy AP / AP50):
    # hysteresis on the colour cut (pixels over half ``color_edge`` on the chroma gradient joined to ones over it,
    # as Canny links edges: a thing's outline has gaps where its hue nears its support's) 0.759 / 0.404, room 2-5
    # 0.639 / 0.820; level-1 regions offered inside object-sized level-0 regions too (``inside_small_object`` off:
    # the cylinders on a box, apart at level 1 in 14 of 15 views, are offered in 1) 0.616 / 0.413 (scene0448_01 AP25
    # 0.512), room 2-5 0.604 / 0.781, tabletop 2-5 0.794 / 0.914; level-1 regions lying 0.8 inside a structure
    # level-0 region made structure too (a rug is floor; scene0113_00's floor is the largest mask and structure in
    # each of 5 frames looked at, but never flagged in the map) 0.706 / 0.358 (scene0448_01 0.623 / 0.124: its
    # window, door and curtain pieces lie in wall regions), cluttered 2-5 0.472 / 0.660.
    chroma_weight: float = 2.0  # the chroma gradient counts this many times the lightness gradient
    min_region_px: int = 160  # smallest region kept, in full-resolution pixels
    grow_iters: int = 6  # growth steps over cut pixels
    structure_min_extent: float = 0.3  # a planar region is structure when its in-plane std (m) along both axes
    # exceeds this, or when it covers more of the image than an object does (``object_fraction``)
    planar_rms_abs: float = 0.012  # a region is planar when its plane rms < abs + rel * depth
    planar_rms_rel: float = 0.006  # (per metre of depth)
    on_plane_abs: float = 0.035  # a pixel within abs + rel * depth of a structure plane ...
    on_plane_rel: float = 0.01  # (per metre of depth)
    on_plane_angle_deg: float = 20.0  # ... and with a normal this close to the plane's belongs to it
    coplanar_angle_deg: float = 8.0  # planar regions this close in normal ...
    coplanar_offset: float = 0.06  # ... and offset (metres) are offered united with a structure plane
    # An object-sized region: non-structure, its largest 3D std below ``object_extent`` metres and its area
    # below ``object_fraction`` of the image. The same bound serves three tests, which used to carry one copy
    # each at the same values (0.4 m, 0.08): a planar region larger than an object is structure; level-1
    # regions inside an object-sized level-0 region are not offered; a rigid join stops where the union
    # outgrows an object.
    object_extent: float = 0.4  # metres
    object_fraction: float = 0.08  # of the image
    # Level-1 regions inside an object-sized non-structure level-0 region are not offered: there weak creases
    # cut one object's parts (shelf boards, a table's legs), which the smallest-mask-wins partition would keep
    # apart. It also hides level 1 keeping a small object apart from the box it stands on (held-out synthetic
    # room seeds 2-5: offered masks separate such a pair in 186 of 288 views, 228 with the rule off), but off
    # it loses more to split objects: noisy room AP50 seeds 2-5 0.748 -> 0.695, cluttered 0.590 -> 0.568,
    # ScanNet non-structure box AP25 / AP50 pooled 0.748 / 0.308 -> 0.626 / 0.334 (refined maps). Looked for a
    # test that releases only the things (2026-12-05, noisy room seeds 2-5, every 3rd frame: 585 level-1 regions
    # withheld, 131 of them a GT object other than the rest of their parent): the share of a region's border with
    # its siblings that is a depth jump or a weak concave crease is >= 0.5 for 70 of 70 distinct objects and 308
    # of 315 parts of one object (a chair's back meets its seat at a concave crease as a box meets the box it
    # stands on); "rises over a horizontal planar sibling it touches" (base within 3 cm of its plane) holds for
    # 2 distinct objects and 12 parts (chairs' backs); a mean colour unlike the rest of the parent (the
    # chroma-weighted Lab difference over ``color_edge``; the 393 regions whose parent has 10 labelled pixels
    # besides them) for 46 of 72 distinct objects and 130 of 321 parts (chairs' legs, shelves' boards, tables'
    # legs: parts of another material). None tells them apart. Nor (2026-12-06, every 3rd frame, that view's
    # points) a horizontal surface of the parent around the region's base (parent pixels facing up within 3 cm
    # of its 5th-percentile height and 10 cm of its footprint, in at least 3 of 8 directions): room and
    # cluttered seeds 0-1 12 of 107 distinct objects and 13 of 546 parts, room seeds 2-5 2 of 84 and 16 of 425;
    # a view sees the support only in front of the thing. On the maps, the things missed on held-out room seeds
    # 2, 3 and 5 (a cylinder and a box on boxes, a box on a shelf board) have no segment of their own in any
    # view: the fusion has no evidence to keep them apart.
    # Rigid joins at level 0: a non-structure region that hangs below an adjacent larger one (legs under a seat,
    # a table top or a shelf board: they share a border mostly free of depth jumps, its top height (world up from
    # the pose, else the image's up) is within ``join_contact`` m of the other's bottom, its horizontal offset is
    # under ``join_max_offset`` stds of the other's spread, its area under ``join_max_area_ratio`` of the other's)
    # is replaced with the other by their union, while that union stays object-sized, so the smallest-mask-wins
    # partition keeps the object whole. ``join_max_area_ratio`` 0: off. Measured 2026-12-05 (full pipeline,
    # refined maps; ScanNet box AP25 / AP50, noisy synthetic AP50): off loses scene0448_01 0.740 / 0.074 ->
    # 0.609 / 0.069, pooled 0.774 / 0.311 -> 0.645 / 0.298, held-out room seeds 2-5 0.755 -> 0.729, cluttered
    # 0.603 -> 0.593 (tuned cluttered seeds 0-1 gain, 0.596 -> 0.619).
    join_max_area_ratio: float = 0.5  # the lower region's area at most this x the upper's; 0: no joins
    join_max_offset: float = 1.8  # the lower region's horizontal offset, in stds of the upper one's spread
    join_contact: float = 0.08  # metres: how close the upper region's bottom and the lower one's top must be
    # Thin structures (a lamp's pole, a chair's leg): a few pixels wide, they lose every seed pixel to the depth-jump
    # cuts on both sides. Level 0 also labels each leftover 8-connected component of at least ``thin_min_px``
    # full-resolution pixels that is elongated (its principal spreads differ by ``thin_elongation`` x or more)
    # and lies in front of its surroundings by a depth jump. ``thin_elongation`` 0: off. Measured as the rigid
    # joins: off loses scene0448_01 AP25 0.740 -> 0.719, held-out cluttered seeds 2-5 AP50 0.603 -> 0.579.
    # Merged object parts (level 4): adjacent level-0 regions across a crease, merged greedily by colour, every
    # group on the way offered (a chair's back, seat and legs). The maps do not use them: the tracker's
    # partition keeps the finest masks, and with merging off the default maps of both ScanNet scenes and noisy
    # room, cluttered and tabletop seeds 0-5 are the same, online and refined (2026-12-05). They serve the 2D
    # proposals: noisy seeds 2-5 of the three presets, 6 frames each, recall@0.5 / AR 0.5:0.95 0.887 / 0.713,
    # off 0.875 / 0.696; generator CPU 24.8 -> 23.2 ms per frame (median).
    thin_min_px: int = 48  # full-resolution pixels
    thin_elongation: float = 4.0  # principal-spread ratio; 0: off
    merge_max_color: float = 40.0  # object-part merging: largest mean-RGB L1 difference (per channel) merged
    merge_max_unions: int = 20  # at most this many merged part groups per frame
    merge_max_fraction: float = 0.3  # merged groups covering more of the valid image are not offered
    # Adjacent regions share a crease, not an occlusion, when their common border has at least
    # ``crease_border_px`` work pixels and less than ``crease_max_jump_share`` of them on a depth jump (rigid
    # joins and merged object parts only consider such neighbours).
    crease_border_px: int = 3
    crease_max_jump_share: float = 0.5
    join_height_quantiles: tuple[float, float] = (0.05, 0.95)  # a region's robust bottom and top heights
    sibling_inside_share: float = 0.8  # "inside" an object-sized region: this share of the level-1 region
    dedupe_iou: float = 0.85  # a region with this IoU to one of an earlier level is a duplicate
    # A region's score: ``score_floor + (1 - score_floor) * outline support``, times the weight of its level
    # (geometry, geometry + colour, whole object, plane union, part union: regions cut by geometry alone are
    # the most trustworthy).
    score_floor: float = 0.2
    level_weights: tuple[float, float, float, float, float] = (1.0, 0.9, 0.85, 1.0, 0.8)
    max_masks: int = 150  # at most this many masks per frame, best scores first

    def __post_init__(self) -> None:
        for name in ("work_width", "min_region_px", "max_masks", "crease_border_px", "normal_radius", "normal_smooth",
                     "crease_offset"):
            if getattr(self, name) < 1:
                raise ValueError(f"GeometricConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("hole_fill_iters", "grow_iters"):
            if getattr(self, name) < 0:
                raise ValueError(f"GeometricConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("crease_max_jump_share", "sibling_inside_share", "dedupe_iou", "merge_max_fraction",
                     "object_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"GeometricConfig.{name} must lie in (0, 1], got {getattr(self, name)}")
        if not self.chroma_weight > 0:
            raise ValueError(f"GeometricConfig.chroma_weight must be > 0, got {self.chroma_weight}")
        if not 0.0 <= self.score_floor <= 1.0:
            raise ValueError(f"GeometricConfig.score_floor must lie in [0, 1], got {self.score_floor}")
        if len(self.level_weights) != 5 or min(self.level_weights) <= 0:
            raise ValueError(f"GeometricConfig.level_weights must be 5 weights > 0 (one per level), "
                             f"got {self.level_weights}")
        low, high = self.join_height_quantiles
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"GeometricConfig.join_height_quantiles must be (low, high) with 0 <= low < high <= 1, "
                             f"got {self.join_height_quantiles}")
