"""`OnlineTracker`: frame-to-map association of lifted segments into persistent 3D objects.

Per frame (cost follows the voxels and objects in view, never the number of frames seen):
  1. the frame's observed surface (voxel keys) gives each map object its visible voxel count;
  2. each segment is scored against the objects it overlaps: IoU against the object's visible part,
     share of the segment inside the object, share of the visible object inside the segment;
  3. one-to-one matches by Hungarian assignment on IoU (``match_iou``); an unmatched segment lying
     mostly inside one object joins it (over-segmentation); the rest become new objects;
  4. a segment covering most of the visible part of several objects bridges them; two objects merge
     after ``merge_frames`` bridging frames, unless frames that showed them under different segments
     outweigh them (a single under-segmenting mask never merges objects on its own);
  5. voxel label counts, per-voxel surface counts and object statistics are updated. Option
     ``grow_by_vote``: surface a segment adds to an existing object (not yet in the map) is a
     provisional growth of it, shown as the object, that becomes an object of its own when later views
     separate it from the object more often than they hold them together (a mask that merged a new
     object into its neighbour the first time it was seen then loses to the views that separate them);
     a frame whose coarser mask holds both (``coarse_masks_hold``, ``tracking.mask_groups``) did not
     separate them: an over-segmenting generator's parts of one object are no vote apart.
Ids are dense ints that never change meaning; a merge keeps the older (smaller) id.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from lift3d.area import projected_areas
from lift3d.labels import LabelStore
from lift3d.lift import LiftConfig
from lift3d.types import Segment3D
from lift3d.voxels import VoxelIndex, group_int64
from scene.datasets import Frame

from .config import TrackerConfig
from .export import ObjectMap, observation_confidence
from .freespace import FreeSpaceVotes
from .objects import ObjectTable
from .records import GrowableArray, SegmentRecords, SurfaceRecords, distinct_index, redundant_frames
from .surface import surface_keys
from .track_ids import TrackHints, TrackLinks

_PAIR_BASE = np.int64(1) << 31
# Past the records' budget (``TrackerConfig.record_views``) they are halved: the thinning's sort of every
# recorded key (~1 CPU-s for 11 M keys) then comes once per half a budget of keys recorded, not per frame.
RECORDS_REFILL = 0.5


@dataclass
class StepResult:
    """``object_ids``: one surviving id per segment (after this step's merges); ``new_ids``: ids
    created this step; ``merged``: (kept, retired) pairs; ``visible``: number of map objects with voxels
    on this frame's surface (the objects this step touched)."""

    object_ids: np.ndarray
    new_ids: np.ndarray
    merged: list = field(default_factory=list)
    visible: int = 0
    voxels: FrameVoxels | None = None


@dataclass
class FrameVoxels:
    """The distinct voxels of one step's segments (their keys concatenated in segment order): ``rows``
    in the tracker's label index (sorted by key), ``first`` the position of each one's first key and
    ``inverse`` each key's voxel. Lets the caller reuse the step's voxel lookup (``Mapper``)."""

    rows: np.ndarray
    first: np.ndarray
    inverse: np.ndarray


@dataclass
class _Scores:
    """Sparse (segment, object) overlap scores of one frame."""

    seg: np.ndarray
    obj: np.ndarray
    iou: np.ndarray
    seg_share: np.ndarray  # share of the segment's mapped voxels inside the object
    obj_share: np.ndarray  # share of the object's covered voxels inside the segment
    visible: np.ndarray  # the object's visible voxel count
    inter: np.ndarray  # voxels shared
    evidence: np.ndarray  # enough shared voxels to act on (min_visible, or a fifth of the segment)
    covered: np.ndarray  # the object's voxels under some segment of this frame


class OnlineTracker:
    """The online map: voxel x object label counts, object statistics, and records for ``refine``.

    ``lift``: how this tracker's frames are lifted (``track_frame`` lifts with it): its voxel size, pixel
    stride and depth range also sample each frame's observed surface, since the visibility test compares a
    segment's voxels with the surface's sampled the same way. ``one_level_masks``: the frames' masks are
    one flat level, whole regions (``segment2d.types.one_level_masks`` of their generator), not a hierarchy
    whose finest masks are parts; ``RefineConfig.from_online = "auto"`` follows it."""

    def __init__(self, config: TrackerConfig = TrackerConfig(), lift: LiftConfig = LiftConfig(),
                 one_level_masks: bool = False):
        if not isinstance(lift, LiftConfig):
            raise TypeError(f"OnlineTracker: lift must be a lift3d.LiftConfig, got {type(lift).__name__}")
        self.config = config
        self.lift = lift
        self.one_level_masks = bool(one_level_masks)
        self.labels = LabelStore()
        # Frames whose surface held each voxel: counted online only without records (else derived on demand).
        self._surface_index = VoxelIndex()
        self.objects = ObjectTable()
        self.segments = SegmentRecords()
        self.surfaces = SurfaceRecords()
        self.free_space = FreeSpaceVotes(config.free_space, lift.voxel_size, lift.depth_range)  # votes per map cell
        self._seen = GrowableArray(np.int32)  # per voxel row: frames whose surface held the voxel
        self._bridged: dict[int, int] = {}
        self._provisional: set[int] = set()  # (object, its provisional growth) pair codes (grow_by_vote)
        self._separated = _PairCounts()  # about a thousand new codes a frame: arrays, not a dict
        self.track_links = TrackLinks(config.track_ids, config.association.merge_frames, config.association.merge_ratio)
        self.frames_seen = 0
        self.frames_forgotten = 0  # recorded frames thinned out of the records (``TrackerConfig.record_views``)
        self._forgotten_seen = (np.zeros(0, np.int64), np.zeros(0, np.int64))  # their surfaces: (keys, frames)
        self._seen_cache: tuple[int, np.ndarray, np.ndarray] | None = None

    # -- public -------------------------------------------------------------------------------------
    @property
    def voxel_size(self) -> float:
        """Metres: the lift's voxel size, the grid of every key in this tracker."""
        return self.lift.voxel_size

    def step(self, frame: Frame, segments: list[Segment3D], structure: np.ndarray | None = None,
             surface: np.ndarray | None = None, track_ids: np.ndarray | None = None,
             together: np.ndarray | None = None) -> StepResult:
        """Associate one frame's segments (from ``lift3d.lift_frame``) and update the map.

        ``structure``: optional bool per segment (floor, walls: e.g. the MaskSet's ``is_structure`` at
        each segment's ``mask_index``). ``surface``: the frame's ``surface_keys`` with this tracker's
        lift's voxel size, stride and depth range, when the caller computed them. ``track_ids``: optional
        int64 per segment, a video segmenter's track of its mask (negative: none): evidence that segments
        of one id show one object (``tracking.track_ids``). ``together``: optional S x S bool, segments
        a coarser mask of the frame holds both of (``tracking.mask_groups``): with ``grow_by_vote`` such a
        pair never separates a provisional growth from its object.
        """
        self._check(frame, segments, structure)
        if together is not None and np.shape(together) != (len(segments), len(segments)):
            raise ValueError(f"OnlineTracker.step (frame {frame.index}): together must be S x S for the "
                             f"{len(segments)} segments, got shape {np.shape(together)}")
        if track_ids is not None and np.shape(track_ids) != (len(segments),):
            raise ValueError(f"OnlineTracker.step (frame {frame.index}): track_ids must have one id per segment "
                             f"({len(segments)}), got shape {np.shape(track_ids)}")
        if not self.config.track_ids.enabled:
            track_ids = None
        structure = np.zeros(len(segments), bool) if structure is None else np.asarray(structure, bool)
        visible = self._observe_surface(frame, surface)
        if not segments:
            self._bound_records()
            return StepResult(np.zeros(0, np.int64), np.zeros(0, np.int64), [], int(visible[0].size))
        seg_rows, keys, rows, dominant, scores, (first, inverse) = self._overlaps(segments, visible)
        hints = None if track_ids is None else self.track_links.hints(track_ids, scores.seg, scores.obj, scores.evidence, self.objects.resolve)
        mask_of = np.array([s.mask_index for s in segments], np.int64)
        ids, new_ids = self._assign(scores, mask_of, hints)
        covers = self._covers(scores)
        mapped = len(self.labels.index)
        labels = self._segment_labels(seg_rows, dominant, ids, covers)
        grown, children = np.zeros(0, np.int64), np.zeros(0, np.int64)
        if self.config.association.grow_by_vote:
            labels, grown, children = self._provisional_growth(seg_rows, dominant, ids, new_ids, labels)
        rows = self.labels.add(keys, labels, 1, rows)
        if self.config.keep_records and self.config.free_space.carve:
            self.free_space.add_voxels(self.labels.index.keys[mapped:])
        seg_scores = np.array([s.score for s in segments], np.float64)
        seg_points = np.array([s.num_points for s in segments], np.int64)
        seg_boxes = np.stack([s.box for s in segments])
        self.objects.observe(ids, frame.index, seg_scores, structure, seg_points, seg_boxes)
        if children.size:
            self.objects.observe(children, frame.index, seg_scores[grown], structure[grown], seg_points[grown],
                                 seg_boxes[grown])
        merged = self._merge_bridged(covers, scores, visible[0], together)
        if track_ids is not None:
            merged += self._merge_tracked(track_ids, ids)
        assigned, ids = ids, self.objects.resolve(ids)
        if track_ids is not None:
            self.track_links.observe(track_ids, ids, segments)
        if self.config.keep_records:  # with growths, the assigned ids: a growth may become an object later
            self.segments.append(segments, assigned if self.config.association.grow_by_vote else ids, structure)
            self._bound_records()
        in_view = np.unique(self.objects.resolve(visible[0])).size  # provisional growths are their objects
        return StepResult(ids, new_ids, merged, in_view, FrameVoxels(rows[first], first, inverse))

    def _bound_records(self) -> None:
        """Keep the records within ``TrackerConfig.record_views`` keys per mapped voxel: past it, forget
        the recorded frames that add least (``records.redundant_frames``), down to ``RECORDS_REFILL``
        of the budget, so a thinning comes once per many frames. A frame goes with its segments and its
        surface; its surface still counts in ``seen_counts``."""
        views = self.config.record_views
        if not self.config.keep_records or views is None:
            return
        budget = views * len(self.labels.index)
        if self.surfaces.keys.size <= budget:
            return
        thinning = redundant_frames(self.surfaces, int(RECORDS_REFILL * budget))
        self._forgotten_seen = _merged_counts(*self._forgotten_seen, thinning.keys, thinning.views)
        self.segments.drop_frames(thinning.frames)
        self.surfaces.drop_frames(thinning.frames)
        self.frames_forgotten += thinning.frames.size
        self._seen_cache = None

    def _observe_surface(self, frame: Frame, surface: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, visible voxel counts) of the map objects on the frame's observed surface; records the
        surface and counts a sighting for objects with enough of their voxels in it."""
        if surface is None:
            surface = surface_keys(frame, self.lift.voxel_size, self.lift.stride, self.lift.depth_range)
        visible_ids, visible_counts = self.labels.label_totals(surface)
        if self.config.keep_records:
            self.surfaces.append(frame.index, surface)
            if self.config.free_space.carve:
                self.free_space.observe(frame.index, frame.depth, frame.K, frame.pose)
        else:
            self._count_seen(surface)
        self.frames_seen += 1
        enough = np.maximum(self.config.association.min_visible, 0.1 * self.labels.voxel_count(visible_ids))
        self.objects.saw(visible_ids[visible_counts >= enough])
        return visible_ids, visible_counts

    def _overlaps(self, segments: list[Segment3D], visible) -> tuple:
        """(segment of each key, keys, their voxel rows in the label index (-1: new), each key's dominant
        map label, pair scores, (first key, inverse) of the distinct keys): one lookup of the frame's distinct keys."""
        sizes = np.array([s.num_voxels for s in segments], np.int64)
        seg_rows, keys = _concat_keys(segments)
        unique_keys, first, inverse, _ = group_int64(keys)
        unique_rows = self.labels.index.lookup(unique_keys)
        unique_labels, unique_counts = self.labels.labels_of_rows(unique_rows)
        slot_labels, slot_counts = np.take(unique_labels, inverse, axis=0), np.take(unique_counts, inverse, axis=0)
        dominant = slot_labels[np.arange(keys.size), slot_counts.argmax(1)].astype(np.int64)
        known = np.bincount(seg_rows, weights=dominant >= 0, minlength=len(segments)).astype(np.int64)
        totals = np.bincount(unique_labels[unique_labels >= 0])
        covered = np.flatnonzero(totals), totals[totals > 0]
        scores = self._score(seg_rows, slot_labels, sizes, known, covered, visible)
        return seg_rows, keys, unique_rows[inverse], dominant, scores, (first, inverse)

    def resolve(self, ids: np.ndarray) -> np.ndarray:
        """Surviving id of each of ``ids``."""
        return self.objects.resolve(ids)

    @property
    def remap(self) -> dict[int, int]:
        """Retired id -> surviving id, for every merge so far."""
        return self.objects.remap_table()

    def observed_keys(self) -> np.ndarray:
        """Sorted keys of every voxel that was ever on an observed surface."""
        return self._seen_table()[0].copy()

    def seen_counts(self, keys: np.ndarray) -> np.ndarray:
        """Frames whose observed surface held each voxel of ``keys`` (0 for unknown voxels)."""
        table_keys, counts = self._seen_table()
        keys = np.asarray(keys, np.int64)
        if table_keys.size == 0:
            return np.zeros(keys.shape, np.int64)
        at = np.minimum(np.searchsorted(table_keys, keys), table_keys.size - 1)
        return np.where(table_keys[at] == keys, counts[at], 0)

    def _seen_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted keys, frame counts) of all surface voxels: from the records (cached until the next
        frame) or from the online counters."""
        if not self.config.keep_records:
            keys = np.array(self._surface_index.keys)
            order = np.argsort(keys)
            return keys[order], self._seen.view[order].astype(np.int64)
        if self._seen_cache is None or self._seen_cache[0] != self.frames_seen:
            keys, _, _, counts = group_int64(self.surfaces.keys.view)
            keys, counts = _merged_counts(keys, counts.astype(np.int64), *self._forgotten_seen)
            self._seen_cache = (self.frames_seen, keys, counts)
        return self._seen_cache[1], self._seen_cache[2]

    def object_map(self, detection_ratio: float = 0.0, *, min_area: float = 0.0, voxel_scale: float = 0.0) -> ObjectMap:
        """The current map, one object per voxel (its most frequent label). Voxels detected in at most
        ``detection_ratio`` of the frames whose surface held them are left out; objects of less than
        ``min_area`` m^2 of surface (``lift3d.area.projected_areas``) are dropped. Confidence:
        ``observation_confidence`` (``voxel_scale``: its size term, on voxel counts)."""
        keys = np.array(self.labels.index.keys)
        labels, counts = self.labels.labels_at(keys)
        best = counts.argmax(1)
        rows = np.arange(keys.size)
        label, count = labels[rows, best].astype(np.int64), counts[rows, best]
        seen = np.maximum(self.seen_counts(keys), 1)
        keep = (label >= 0) & (count > detection_ratio * seen)
        keys, label = keys[keep], self.objects.resolve(label[keep])
        ids, dense, sizes = np.unique(label, return_inverse=True, return_counts=True)
        large = np.ones(ids.size, bool)
        if min_area > 0:
            large = projected_areas(keys, dense.reshape(-1), self.voxel_size, ids.size) >= min_area
        big = ids[large]
        inside = np.isin(label, big)
        order = np.argsort(keys[inside])
        obj = self.objects
        return ObjectMap(keys[inside][order], label[inside][order], big,
                         observation_confidence(obj.mean_score(big), obj.num_obs[big], obj.consistency(big),
                                                sizes[large], voxel_scale=voxel_scale), obj.num_obs[big],
                         obj.structure_votes[big] * 2 > obj.num_obs[big], self.voxel_size)

    # -- association ----------------------------------------------------------------------------------
    def _score(self, seg_rows, slot_labels, sizes, known, covered, visible) -> _Scores:
        """Shares of an object count its voxels under this frame's segments (``covered``: masks never
        cover the whole surface, eroded borders and depth edges are dropped), IoU only the segment's voxels
        already in the map (``known``): a segment holding an object's visible part plus unmapped surface
        (the object coming into view) still matches it. ``visible`` (ids, counts) gates the evidence."""
        seg, obj, inter = _pair_counts(seg_rows, slot_labels)
        covered = np.maximum(_lookup_counts(*covered, obj), inter)
        visible = np.maximum(_lookup_counts(*visible, obj), covered)
        inter_f = inter.astype(np.float64)
        known = np.maximum(known[seg], inter)
        iou = inter_f / (known + covered - inter)
        evidence = inter >= np.minimum(self.config.association.min_visible, 0.2 * sizes[seg])
        return _Scores(seg, obj, iou, inter_f / known, inter_f / covered, visible, inter, evidence, covered)

    def _assign(self, s: _Scores, mask_of: np.ndarray, hints: TrackHints | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Object id per segment: Hungarian matches, then parts joining their object, then the track
        ids' objects (``hints``), then new ids. ``mask_of``: the mask index of each segment (spatial parts
        of one mask share it)."""
        cfg = self.config.association
        n_segments = mask_of.size
        ids = np.full(n_segments, -1, np.int64)
        score = s.iou if hints is None else s.iou + hints.bonus
        good = (score >= cfg.match_iou) & s.evidence
        if good.any():
            cand, col = np.unique(s.obj[good], return_inverse=True)
            weight = np.zeros((n_segments, cand.size))
            weight[s.seg[good], col] = score[good]
            rows, cols = linear_sum_assignment(weight, maximize=True)
            hit = weight[rows, cols] >= cfg.match_iou
            ids[rows[hit]] = cand[cols[hit]]
        part = (s.seg_share >= cfg.part_share) & s.evidence & (ids[s.seg] < 0)
        if part.any():
            order = np.lexsort((-s.seg_share[part], s.seg[part]))
            seg, obj = s.seg[part][order], s.obj[part][order]
            first = np.r_[True, seg[1:] != seg[:-1]]
            ids[seg[first]] = obj[first]
        if hints is not None:
            ids = np.where(ids < 0, hints.fallback, ids)
        if cfg.parts_follow_mask:
            return self._assign_by_mask(ids, mask_of)
        new = np.flatnonzero(ids < 0)
        new_ids = self.objects.create(new.size)
        ids[new] = new_ids
        return ids, new_ids

    def _assign_by_mask(self, ids: np.ndarray, mask_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unassigned parts take the id of their mask's first assigned part (parts come largest first);
        a mask with no assigned part becomes one new object."""
        masks, first = np.unique(mask_of, return_index=True)
        owner = np.full(masks.size, -1, np.int64)
        assigned = np.flatnonzero(ids >= 0)[::-1]  # reversed: the first (largest) assigned part writes last
        owner[np.searchsorted(masks, mask_of[assigned])] = ids[assigned]
        fresh = np.flatnonzero(owner < 0)
        new_ids = self.objects.create(fresh.size)
        owner[fresh] = new_ids
        unassigned = ids < 0
        ids[unassigned] = owner[np.searchsorted(masks, mask_of[unassigned])]
        return ids, new_ids

    def _covers(self, s: _Scores) -> tuple[np.ndarray, np.ndarray]:
        """(segment, object) pairs where the segment holds most of the object's visible voxels."""
        cfg = self.config.association
        hit = (s.obj_share >= cfg.cover_share) & (s.visible >= cfg.min_visible) & (s.covered >= 0.5 * s.visible)
        return s.seg[hit], s.obj[hit]

    # -- map update -----------------------------------------------------------------------------------
    def _segment_labels(self, seg_rows, dominant, ids, covers) -> np.ndarray:
        """The label each key adds: its segment's object, except voxels that already belong to another
        object the segment covers, which stay with that object (a bridging segment does not smear one
        object over another)."""
        labels = ids[seg_rows]
        cover_seg, cover_obj = covers
        if cover_seg.size:
            code = cover_seg * _PAIR_BASE + cover_obj
            probe = seg_rows * _PAIR_BASE + np.maximum(dominant, 0)
            routed = (dominant >= 0) & (dominant != labels) & np.isin(probe, code)
            labels = np.where(routed, dominant, labels)
        return labels

    def _provisional_growth(self, seg_rows, dominant, ids, new_ids, labels) -> tuple:
        """``AssociationConfig.grow_by_vote``: the voxels not yet in the map that a segment matched to an
        existing object adds (at least ``min_visible``) go to a new provisional object, counted as bridged
        with that object once (this frame); later frames vote as for any pair (``_merge_bridged``).
        Returns (labels, segments that grew, their provisional ids)."""
        fresh = dominant < 0
        added = np.bincount(seg_rows[fresh], minlength=ids.size)
        grown = np.flatnonzero((added >= max(self.config.association.min_visible, 1)) & ~np.isin(ids, new_ids))
        if grown.size == 0:
            return labels, grown, np.zeros(0, np.int64)
        children = self.objects.create(grown.size)
        self.objects.attach(children, ids[grown])  # shown as part of the object until views separate them
        child_of_segment = np.full(ids.size, -1, np.int64)
        child_of_segment[grown] = children
        child = child_of_segment[seg_rows]
        labels = np.where(fresh & (child >= 0), child, labels)
        for code in (ids[grown] * _PAIR_BASE + children).tolist():  # parents are older: smaller ids
            self._bridged[code] = self._bridged.get(code, 0) + 1
            self._provisional.add(code)
        return labels, grown, children

    def _count_seen(self, surface: np.ndarray) -> None:
        rows = self._surface_index.insert(surface)
        if self._seen.size < len(self._surface_index):
            self._seen.extend(np.zeros(len(self._surface_index) - self._seen.size, np.int32))
        self._seen.view[rows] += 1

    # -- merging --------------------------------------------------------------------------------------
    def _merge_bridged(self, covers, s: _Scores, visible_ids: np.ndarray | None = None,
                       together: np.ndarray | None = None) -> list[tuple[int, int]]:
        cfg = self.config.association
        bridged = _bridged_pairs(*covers)
        separated = _separated_pairs(s, cfg.min_visible)
        if together is not None and self._provisional:  # a growth is apart only where every level separates it
            growth = np.fromiter(self._provisional, np.int64, len(self._provisional))
            coarse = _separated_pairs(s, cfg.min_visible, together)
            separated = separated[~np.isin(separated, growth) | np.isin(separated, coarse)]
        if self._provisional:
            bridged = np.union1d(bridged, self._unseparated_growth(s, separated, visible_ids))
        self._separated.add(separated)
        merged = []
        for code in bridged.tolist():
            count = self._bridged.get(code, 0) + 1
            self._bridged[code] = count
            apart = self._separated.count(code)
            if count >= cfg.merge_frames and count / (count + apart) >= cfg.merge_ratio:
                if code in self._provisional:  # a growth joins its object for good (it never showed apart)
                    self._merge(*divmod(code, int(_PAIR_BASE)), growth=True)
                    continue
                a, b = self.objects.resolve(np.array(divmod(code, int(_PAIR_BASE))))
                if a != b:
                    keep, retire = int(min(a, b)), int(max(a, b))
                    self._merge(keep, retire)
                    merged.append((keep, retire))
        if self._provisional:
            self._detach_separated_growth(separated)
        return merged

    def _detach_separated_growth(self, separated: np.ndarray) -> None:
        """Provisional growths that frames showed apart from their object more often than together
        (bridged / (bridged + separated) below ``merge_ratio``) become objects of their own."""
        ratio = self.config.association.merge_ratio
        growth = np.fromiter(self._provisional, np.int64, len(self._provisional))
        for code in separated[np.isin(separated, growth)].tolist():
            count, apart = self._bridged.get(code, 0), self._separated.count(code)
            if count / max(count + apart, 1) < ratio:
                self._provisional.discard(code)
                self.objects.detach(code & (int(_PAIR_BASE) - 1))

    def _unseparated_growth(self, s: _Scores, separated: np.ndarray, visible_ids: np.ndarray) -> np.ndarray:
        """Codes of the provisional (object, growth) pairs with both on this frame's surface, whose object a
        segment holds while no other segment holds the growth: they count as together (nothing showed
        them apart: e.g. depth noise thickening the surface made the growth)."""
        cfg = self.config.association
        held = s.obj[(s.obj_share >= 0.5) & (s.visible >= cfg.min_visible) & (s.covered >= 0.5 * s.visible)]
        codes = np.fromiter(self._provisional, np.int64, len(self._provisional))
        parent, child = _split_codes(codes)
        return codes[np.isin(parent, held) & np.isin(child, visible_ids) & ~np.isin(codes, separated)]

    def _merge_tracked(self, track_ids: np.ndarray, ids: np.ndarray) -> list[tuple[int, int]]:
        """Merge the object pairs that track ids name as one (``TrackLinks.merge_candidates``)."""
        merged = []
        separated = lambda a, b: self._separated.count(int(a) * int(_PAIR_BASE) + int(b))
        for a, b in self.track_links.merge_candidates(track_ids, ids, self.objects.resolve, separated):
            a, b = self.objects.resolve(np.array([a, b]))
            if a != b:
                keep, retire = int(min(a, b)), int(max(a, b))
                self._merge(keep, retire)
                merged.append((keep, retire))
        return merged

    def _merge(self, keep: int, retire: int, growth: bool = False) -> None:
        self.track_links.merged(keep, retire)
        self.labels.merge(np.array([retire]), keep)
        if growth:  # a provisional growth confirmed: its frames are its object's, counted once
            self.objects.confirm(keep, retire)
        else:
            self.objects.merge(keep, retire)
        self._separated.rename(retire, keep)
        self._provisional = _renamed_codes(self._provisional, retire, keep)
        moved = {}
        for code in _codes_naming(self._bridged, retire):
            a, b = divmod(code, int(_PAIR_BASE))
            a, b = (keep if a == retire else a), (keep if b == retire else b)
            if a != b:
                key = min(a, b) * int(_PAIR_BASE) + max(a, b)
                moved[key] = moved.get(key, 0) + self._bridged[code]
            del self._bridged[code]
        for key, value in moved.items():
            self._bridged[key] = self._bridged.get(key, 0) + value

    # -- checks ---------------------------------------------------------------------------------------
    def _check(self, frame, segments, structure) -> None:
        if not isinstance(frame, Frame):
            raise TypeError(f"OnlineTracker.step: frame must be a scene.datasets.Frame, got {type(frame).__name__}")
        for s in segments:
            if not isinstance(s, Segment3D):
                raise TypeError(f"OnlineTracker.step (frame {frame.index}): segments must be Segment3D, got {type(s).__name__}")
            if abs(s.voxel_size - self.voxel_size) > 1e-9:
                raise ValueError(f"OnlineTracker.step (frame {frame.index}): segment voxel size {s.voxel_size} m differs "
                                 f"from the tracker's {self.voxel_size} m")
        if structure is not None and np.shape(structure) != (len(segments),):
            raise ValueError(f"OnlineTracker.step (frame {frame.index}): structure must have one flag per segment "
                             f"({len(segments)}), got shape {np.shape(structure)}")


class _PairCounts:
    """A counter over object-pair codes (``a * _PAIR_BASE + b``, a < b): sorted codes and their counts."""

    def __init__(self) -> None:
        self.codes = np.zeros(0, np.int64)
        self.counts = np.zeros(0, np.int64)

    def count(self, code: int) -> int:
        at = int(np.searchsorted(self.codes, code))
        return int(self.counts[at]) if at < self.codes.size and self.codes[at] == code else 0

    def add(self, codes: np.ndarray, counts: np.ndarray | None = None) -> None:
        """Add ``counts`` (default 1 each) to the sorted distinct ``codes``."""
        counts = np.ones(codes.size, np.int64) if counts is None else counts
        at = np.searchsorted(self.codes, codes)
        found = np.zeros(codes.size, bool)
        inside = at < self.codes.size
        found[inside] = self.codes[at[inside]] == codes[inside]
        self.counts[at[found]] += counts[found]
        fresh = ~found
        self.codes = np.insert(self.codes, at[fresh], codes[fresh])
        self.counts = np.insert(self.counts, at[fresh], counts[fresh])

    def rename(self, old: int, new: int) -> None:
        """Move the counts of pairs naming object ``old`` to the same pairs naming ``new``; a pair
        (old, new) disappears."""
        a, b = _split_codes(self.codes)
        hit = (a == old) | (b == old)
        if not hit.any():
            return
        a, b, moved = np.where(a[hit] == old, new, a[hit]), np.where(b[hit] == old, new, b[hit]), self.counts[hit]
        self.codes, self.counts = self.codes[~hit], self.counts[~hit]
        apart = a != b
        codes = np.minimum(a[apart], b[apart]) * _PAIR_BASE + np.maximum(a[apart], b[apart])
        distinct, _, inverse, _ = group_int64(codes)
        self.add(distinct, np.bincount(inverse, weights=moved[apart], minlength=distinct.size).astype(np.int64))


def _merged_counts(keys_a: np.ndarray, counts_a: np.ndarray, keys_b: np.ndarray, counts_b: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct keys, summed counts) of two (keys, counts) tables (``keys_a`` distinct and sorted
    when ``keys_b`` is empty: then returned as they are)."""
    if keys_b.size == 0:
        return keys_a, counts_a
    at, keys = distinct_index(np.concatenate([keys_a, keys_b]))
    return keys, np.bincount(at, weights=np.concatenate([counts_a, counts_b]), minlength=keys.size).astype(np.int64)


def _renamed_codes(codes: set[int], old: int, new: int) -> set[int]:
    """``codes`` with object ``old`` renamed ``new`` (a pair that becomes (new, new) disappears)."""
    if not codes:
        return codes
    array = np.fromiter(codes, np.int64, len(codes))
    a, b = _split_codes(array)
    a, b = np.where(a == old, new, a), np.where(b == old, new, b)
    keep = a != b
    return set((np.minimum(a, b) * _PAIR_BASE + np.maximum(a, b))[keep].tolist())


def _codes_naming(table: dict[int, int], obj: int) -> list[int]:
    """The pair codes of ``table`` with ``obj`` on either side (one vectorised scan of the keys)."""
    codes = np.fromiter(table, np.int64, len(table))
    a, b = _split_codes(codes)
    return codes[(a == obj) | (b == obj)].tolist()


def _split_codes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.divmod(codes, _PAIR_BASE)`` for non-negative codes, by shift and mask (several times faster)."""
    return codes >> 31, codes & (_PAIR_BASE - 1)


def _concat_keys(segments: list[Segment3D]) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.array([s.num_voxels for s in segments], np.int64)
    return np.repeat(np.arange(len(segments), dtype=np.int64), sizes), np.concatenate([s.voxel_keys for s in segments])


def _pair_counts(seg_rows: np.ndarray, slot_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(segment, object, shared voxels) from each key's segment and its voxel's labels (keys x slots)."""
    hit = slot_labels >= 0
    seg = np.broadcast_to(seg_rows[:, None], slot_labels.shape)[hit]
    obj = slot_labels[hit].astype(np.int64)
    base = int(obj.max(initial=0)) + 1
    codes, _, _, counts = group_int64(seg * base + obj)
    seg, obj = np.divmod(codes, base)
    return seg, obj, counts.astype(np.int64)


def _lookup_counts(ids: np.ndarray, counts: np.ndarray, query: np.ndarray) -> np.ndarray:
    """counts[ids == q] for each q of ``query`` (0 where absent); ``ids`` sorted."""
    out = np.zeros(query.size, np.int64)
    if ids.size:
        at = np.minimum(np.searchsorted(ids, query), ids.size - 1)
        found = ids[at] == query
        out[found] = counts[at[found]]
    return out


def _bridged_pairs(cover_seg: np.ndarray, cover_obj: np.ndarray) -> np.ndarray:
    """Distinct codes (a * base + b, a < b) of object pairs covered by one segment this frame."""
    if cover_seg.size < 2:
        return np.zeros(0, np.int64)
    order = np.lexsort((cover_obj, cover_seg))
    seg, obj = cover_seg[order], cover_obj[order]
    same = seg[:, None] == seg[None, :]
    a, b = np.nonzero(np.triu(same, 1))
    return np.unique(np.minimum(obj[a], obj[b]) * _PAIR_BASE + np.maximum(obj[a], obj[b]))


def _separated_pairs(s: _Scores, min_visible: int, together: np.ndarray | None = None) -> np.ndarray:
    """Codes of object pairs both visible and each mostly held by a different segment this frame (and,
    given ``together``, segments no coarser mask holds both of)."""
    held = (s.obj_share >= 0.5) & (s.visible >= min_visible) & (s.covered >= 0.5 * s.visible)
    seg, obj = s.seg[held], s.obj[held]
    if obj.size < 2:
        return np.zeros(0, np.int64)
    apart = seg[:, None] != seg[None, :]
    if together is not None:
        apart &= ~together[np.ix_(seg, seg)]
    a, b = np.nonzero(np.triu(apart, 1))
    a, b = obj[a], obj[b]
    keep = a != b
    return np.unique(np.minimum(a[keep], b[keep]) * _PAIR_BASE + np.maximum(a[keep], b[keep]))
