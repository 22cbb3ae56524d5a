"""Track ids as association evidence: a video segmenter's (SAM 2's) claim that masks show one object.

A mask's ``MaskSet.extra["track_id"]`` (int64, negative: none) says "the object that earlier masks of this
id showed". The tracker keeps, per track id, how often its masks were assigned to each object; the track's object is
the most voted (after merges) when it holds ``owner_share`` of the votes (a track whose masks went to
several objects, a broken tracker's, is no evidence), and weighs in three ways:
  1. in the one-to-one matching, a segment's pair with its track's object gains ``match_bonus`` of IoU
     when they share enough voxels to act on (the track tips the matching, the voxels must agree);
  2. a segment the geometry left unmatched (too little IoU, not mostly inside one object: it would start
     a new object) joins its track's object when they share voxels (the object seen from a new side: a
     few voxels in common; joining on overlapping boxes instead, without shared voxels, let swapped ids
     join neighbours: seeds 0-2 of the noisy room);
  3. a segment matched to another object names that object and the track's a merge candidate; they
     merge after ``merge_frames`` such frames (the association's: ``AssociationConfig``) when their boxes
     lie within ``max_gap`` metres and the votes are more than ``merge_ratio`` (the association's) of
     (votes + frames that showed the two under different segments: a frame's masks separating two objects
     outweigh a track's claim, which one id switch makes).
A track id never overrides clear 3D separation: a segment joins only an object it shares voxels with, far objects
never merge, and a segment keeps its clear geometric match.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lift3d.types import Segment3D


@dataclass(frozen=True)
class TrackIdConfig:
    """See the module docstring (``max_gap``: metres; 0: the boxes touch or overlap). ``enabled`` False
    ignores track ids altogether (the geometry alone)."""

    enabled: bool = True
    match_bonus: float = 0.5
    max_gap: float = 0.0
    owner_share: float = 0.5

    def __post_init__(self) -> None:
        if self.match_bonus < 0 or self.max_gap < 0 or not 0 < self.owner_share <= 1:
            raise ValueError(f"TrackIdConfig: match_bonus and max_gap must be >= 0, owner_share in (0, 1]: {self}")


@dataclass
class TrackHints:
    """One frame's track evidence for the tracker's assignment: ``bonus`` per scored (segment, object)
    pair (added to its IoU) and ``fallback`` per segment (the object it joins when nothing else matched; -1:
    none)."""

    bonus: np.ndarray
    fallback: np.ndarray


class TrackLinks:
    """Per track id, the objects its masks were assigned to (vote counts); per object, its world box."""

    def __init__(self, config: TrackIdConfig = TrackIdConfig(), merge_frames: int = 2, merge_ratio: float = 0.5):
        """``merge_frames`` / ``merge_ratio``: the merge test's (``AssociationConfig``'s, which the tracker
        passes)."""
        self.config = config
        self.merge_frames, self.merge_ratio = merge_frames, merge_ratio
        self._votes: dict[int, dict[int, int]] = {}
        self._box_min = np.zeros((0, 3))
        self._box_max = np.zeros((0, 3))
        self._merge_votes: dict[tuple[int, int], int] = {}

    def hints(self, track_ids: np.ndarray, pair_seg: np.ndarray, pair_obj: np.ndarray, pair_evidence: np.ndarray,
              resolve) -> TrackHints:
        """The frame's ``TrackHints`` for the scored (segment, object) pairs (they share voxels);
        ``pair_evidence``: the pair shares enough voxels to act on; ``resolve`` maps ids to surviving ids (``ObjectTable.resolve``)."""
        owner = self.owners(track_ids, resolve)
        owned = owner[pair_seg] == pair_obj
        bonus = np.where(owned & pair_evidence, self.config.match_bonus, 0.0)
        touching = np.zeros(owner.size, bool)
        touching[pair_seg[owned]] = True
        return TrackHints(bonus, np.where(touching, owner, -1))

    def owners(self, track_ids: np.ndarray, resolve) -> np.ndarray:
        """The object of each track id (-1: no track id, none yet, or no object holds ``owner_share`` of
        the track's votes)."""
        out = np.full(len(track_ids), -1, np.int64)
        for i, track in enumerate(np.asarray(track_ids, np.int64).tolist()):
            votes = self._votes.get(track)
            if track >= 0 and votes:
                totals: dict[int, int] = {}
                for obj, count in zip(resolve(np.fromiter(votes, np.int64)).tolist(), votes.values()):
                    totals[obj] = totals.get(obj, 0) + count
                best = max(totals, key=lambda o: (totals[o], -o))
                if totals[best] >= self.config.owner_share * sum(totals.values()):
                    out[i] = best
        return out

    def merge_candidates(self, track_ids: np.ndarray, ids: np.ndarray, resolve, separated) -> list[tuple[int, int]]:
        """Count this frame's (track's object, assigned object) disagreements; the pairs (a < b, surviving
        ids) that now pass the merge test. ``separated(a, b)``: frames that showed them apart."""
        owner = self.owners(track_ids, resolve)
        ids = resolve(np.asarray(ids, np.int64))
        disagree = (owner >= 0) & (owner != ids)
        pairs = {(int(min(a, b)), int(max(a, b))) for a, b in zip(owner[disagree].tolist(), ids[disagree].tolist())}
        ready = []
        for pair in sorted(pairs):
            votes = self._merge_votes.get(pair, 0) + 1
            self._merge_votes[pair] = votes
            if votes >= self.merge_frames and votes / (votes + separated(*pair)) > self.merge_ratio:
                box = self._boxes(np.array(pair), resolve)
                if _box_gap(box[0][:1], box[1][:1], box[0][1:], box[1][1:])[0] <= self.config.max_gap:
                    ready.append(pair)
        return ready

    def observe(self, track_ids: np.ndarray, ids: np.ndarray, segments: list[Segment3D]) -> None:
        """Record the frame's final assignment: votes of each track id and the objects' boxes."""
        ids = np.asarray(ids, np.int64)
        self._grow(int(ids.max(initial=-1)) + 1)
        for track, obj in zip(np.asarray(track_ids, np.int64).tolist(), ids.tolist()):
            if track >= 0:
                votes = self._votes.setdefault(track, {})
                votes[obj] = votes.get(obj, 0) + 1
        np.minimum.at(self._box_min, ids, np.stack([s.aabb_min for s in segments]))
        np.maximum.at(self._box_max, ids, np.stack([s.aabb_max for s in segments]))

    def merged(self, keep: int, retire: int) -> None:
        """Fold ``retire``'s box into ``keep`` (votes follow through ``resolve``)."""
        self._grow(max(keep, retire) + 1)
        self._box_min[keep] = np.minimum(self._box_min[keep], self._box_min[retire])
        self._box_max[keep] = np.maximum(self._box_max[keep], self._box_max[retire])

    def _boxes(self, objects: np.ndarray, resolve) -> tuple[np.ndarray, np.ndarray]:
        objects = resolve(np.asarray(objects, np.int64))
        self._grow(int(objects.max(initial=-1)) + 1)
        return self._box_min[objects], self._box_max[objects]

    def _grow(self, size: int) -> None:
        if size > len(self._box_min):
            extra = size - len(self._box_min)
            self._box_min = np.vstack([self._box_min, np.full((extra, 3), np.inf)])
            self._box_max = np.vstack([self._box_max, np.full((extra, 3), -np.inf)])


def _box_gap(min_a: np.ndarray, max_a: np.ndarray, min_b: np.ndarray, max_b: np.ndarray) -> np.ndarray:
    """Per row, the distance (metres) between two axis-aligned boxes (0 when they overlap; inf for an
    empty box)."""
    apart = np.maximum(np.maximum(min_a - max_b, min_b - max_a), 0.0)
    gap = np.sqrt((apart ** 2).sum(axis=1))
    return np.where(np.isfinite(gap), gap, np.inf)
