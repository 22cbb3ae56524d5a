"""A sparse voxel x label count matrix: which labels (object ids) observed each voxel, how often.

Each voxel (a row of a ``VoxelIndex``) keeps up to ``slots`` (label, count) pairs in two dense
``n_voxels x slots`` arrays; the slot width doubles on demand up to ``max_labels_per_voxel``, after
which a new label replaces the voxel's least-observed one. Adding a segment and querying overlaps
cost O(voxels touched), independent of how many frames were seen. Relabelling reads only the voxels
that ever held the old labels (a per-label list of candidate rows, checked on use), so merging objects
does not grow with the map; removal scans the slot arrays once per call (vectorised), so batch it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .voxels import VoxelIndex, group_int64

NO_LABEL = -1


@dataclass(frozen=True)
class LabelStoreConfig:
    initial_slots: int = 2
    max_labels_per_voxel: int = 8


class LabelStore:
    """Voxel key -> {label: count}. Labels are non-negative ints (int64 accepted, stored as int32)."""

    def __init__(self, config: LabelStoreConfig = LabelStoreConfig(), index: VoxelIndex | None = None):
        if not 1 <= config.initial_slots <= config.max_labels_per_voxel:
            raise ValueError(f"LabelStoreConfig: need 1 <= initial_slots <= max_labels_per_voxel, got {config}")
        self.config = config
        self.index = index if index is not None else VoxelIndex()
        self._labels = np.full((max(len(self.index), 1024), config.initial_slots), NO_LABEL, np.int32)
        self._counts = np.zeros_like(self._labels, dtype=np.int32)
        self._label_voxels = np.zeros(64, np.int64)  # per label: number of voxels holding it
        # per label: chunks of rows that held it at some time (a superset of its holders, checked on use)
        self._holders: dict[int, list[np.ndarray]] = {}

    # -- updates ----------------------------------------------------------------------------------
    def add(self, keys: np.ndarray, labels: np.ndarray | int, weights: np.ndarray | int = 1,
            rows: np.ndarray | None = None) -> np.ndarray:
        """Add ``weights`` observations of ``labels`` to the voxels ``keys`` (one label per key or a scalar).

        Returns the voxel rows of ``keys``. Duplicate (key, label) pairs in a call add up. ``rows``:
        ``index.lookup(keys)`` when the caller has it from after the index last grew (saves the lookup).
        """
        keys = np.asarray(keys, dtype=np.int64).reshape(-1)
        labels = self._check_labels(np.broadcast_to(np.asarray(labels), keys.shape), "add")
        weights = np.broadcast_to(np.asarray(weights, dtype=np.int64), keys.shape)
        rows = self.index.insert(keys, rows)
        self._grow_rows(len(self.index))
        self._grow_label_table(int(labels.max(initial=-1)) + 1)
        pair_rows, pair_labels, pair_weights = _sum_pairs(rows, labels, weights)
        slot = self._find_slots(pair_rows, pair_labels)
        have = slot >= 0
        self._counts[pair_rows[have], slot[have]] += pair_weights[have].astype(np.int32)
        self._insert_new_pairs(pair_rows[~have], pair_labels[~have], pair_weights[~have])
        return rows

    def relabel(self, old_labels: np.ndarray, new_labels: np.ndarray) -> None:
        """Rename ``old_labels[i]`` to ``new_labels[i]`` everywhere; labels that meet in a voxel merge
        (their counts add). Chains are not followed: give final targets."""
        old = self._check_labels(np.asarray(old_labels).reshape(-1), "relabel")
        new = self._check_labels(np.asarray(new_labels).reshape(-1), "relabel")
        if old.shape != new.shape:
            raise ValueError(f"relabel: old_labels ({old.size}) and new_labels ({new.size}) differ in length")
        if np.unique(old).size != old.size:
            raise ValueError("relabel: old_labels must be distinct")
        if old.size == 0:
            return
        self._grow_label_table(int(max(old.max(), new.max())) + 1)
        lut = np.arange(self._label_voxels.size, dtype=np.int32)
        lut[old] = new
        touched = self._rows_holding(old)
        before = self._labels[touched]
        sub = before.copy()
        occupied = sub >= 0
        sub[occupied] = lut[sub[occupied]]
        self._labels[touched] = sub
        self._merge_duplicate_slots(touched)
        self._shift_label_voxels(before, self._labels[touched])
        for label in old[old != new].tolist():
            self._holders.pop(label, None)
        changed = sub != before
        self._note_holders(np.broadcast_to(touched[:, None], sub.shape)[changed], sub[changed])

    def merge(self, sources: np.ndarray, target: int) -> None:
        """Merge the labels ``sources`` into ``target``."""
        sources = np.setdiff1d(np.asarray(sources).reshape(-1), [target])
        self.relabel(sources, np.full(sources.size, target))

    def remove(self, labels: np.ndarray) -> None:
        """Delete every observation of ``labels``."""
        labels = self._check_labels(np.asarray(labels).reshape(-1), "remove")
        n = len(self.index)
        hit = np.isin(self._labels[:n], labels)
        self._labels[:n][hit] = NO_LABEL
        self._counts[:n][hit] = 0
        known = labels[labels < self._label_voxels.size]
        self._label_voxels[known] = 0
        for label in labels.tolist():
            self._holders.pop(label, None)

    # -- queries --------------------------------------------------------------------------------------
    def overlap(self, keys: np.ndarray, min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(labels, voxel counts): for each label, how many of the distinct ``keys`` it holds with a
        count >= ``min_count``. Sorted by label."""
        return self.label_totals(np.unique(np.asarray(keys, dtype=np.int64).reshape(-1)), min_count)

    def label_totals(self, keys: np.ndarray, min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``overlap`` for keys known to be distinct (no sort): one bincount over the held labels."""
        self._grow_rows(len(self.index))
        rows = self.index.lookup(np.asarray(keys, dtype=np.int64).reshape(-1))
        rows = rows[rows >= 0]
        slot_labels = np.take(self._labels, rows, axis=0)  # np.take: several times faster than [rows] here
        held = slot_labels[(slot_labels >= 0) & (np.take(self._counts, rows, axis=0) >= min_count)]
        totals = np.bincount(held, minlength=self._label_voxels.size)
        labels = np.flatnonzero(totals)
        return labels, totals[labels].astype(np.int64)

    def overlaps(
        self, keys: np.ndarray, groups: np.ndarray, min_count: int = 1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batched overlap for many key sets: ``groups[i]`` (int >= 0) names the set ``keys[i]`` belongs to.

        Returns (group, label, voxel count) triples sorted by group then label. Keys repeated within a
        group count once per repetition: pass distinct keys per group (a Segment3D's keys are).
        """
        keys = np.asarray(keys, dtype=np.int64).reshape(-1)
        groups = np.asarray(groups, dtype=np.int64).reshape(-1)
        if groups.shape != keys.shape:
            raise ValueError(f"overlaps: keys ({keys.size}) and groups ({groups.size}) differ in length")
        self._grow_rows(len(self.index))  # the index may be shared with, and grown by, another store
        rows = self.index.lookup(keys)
        known = rows >= 0
        rows, groups = rows[known], groups[known]
        slot_labels = self._labels[rows]
        hit = (slot_labels >= 0) & (self._counts[rows] >= min_count)
        pair_groups = np.broadcast_to(groups[:, None], slot_labels.shape)[hit]
        pair_labels = slot_labels[hit].astype(np.int64)
        combined = pair_groups * (self._label_voxels.size + 1) + pair_labels
        unique, _, _, counts = group_int64(combined)
        g, l = np.divmod(unique, self._label_voxels.size + 1)
        return g, l, counts.astype(np.int64)

    def labels_at(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels, counts), each len(keys) x slots; NO_LABEL / 0 in empty slots and for unknown keys."""
        return self.labels_of_rows(self.index.lookup(np.asarray(keys, dtype=np.int64).reshape(-1)))

    def labels_of_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``labels_at`` for voxel rows of ``index`` (-1: unknown voxel)."""
        self._grow_rows(len(self.index))
        unknown = rows < 0
        labels = np.take(self._labels, np.maximum(rows, 0), axis=0)
        counts = np.take(self._counts, np.maximum(rows, 0), axis=0)
        if unknown.any():
            labels[unknown], counts[unknown] = NO_LABEL, 0
        return labels, counts

    def dominant_label(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per key, the label with the highest count and that count (NO_LABEL, 0 where none)."""
        labels, counts = self.labels_at(keys)
        best = counts.argmax(1)
        picked = np.arange(labels.shape[0])
        return labels[picked, best], counts[picked, best]

    def voxel_count(self, labels: np.ndarray) -> np.ndarray:
        """Number of voxels holding each of ``labels``."""
        labels = np.asarray(labels, dtype=np.int64)
        inside = (labels >= 0) & (labels < self._label_voxels.size)
        return np.where(inside, self._label_voxels[np.clip(labels, 0, self._label_voxels.size - 1)], 0)

    def keys_of(self, label: int, min_count: int = 1) -> np.ndarray:
        """Sorted keys of the voxels holding ``label`` with count >= ``min_count`` (scans the store)."""
        n = len(self.index)
        hit = ((self._labels[:n] == label) & (self._counts[:n] >= min_count)).any(1)
        return np.sort(self.index.keys[hit])

    @property
    def labels(self) -> np.ndarray:
        """All labels held by at least one voxel, sorted."""
        return np.flatnonzero(self._label_voxels > 0)

    # -- persistence ------------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The store as plain arrays (for ``np.savez``): voxel keys by row, slot labels and counts."""
        n = len(self.index)
        return {
            "keys": np.array(self.index.keys),
            "labels": self._labels[:n].copy(),
            "counts": self._counts[:n].copy(),
            "max_labels_per_voxel": np.array([self.config.max_labels_per_voxel]),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "LabelStore":
        """Rebuild a store written by ``to_arrays``; rows keep their order."""
        missing = {"keys", "labels", "counts", "max_labels_per_voxel"} - set(arrays)
        if missing:
            raise ValueError(f"LabelStore.from_arrays: missing arrays {sorted(missing)}")
        keys, labels, counts = (np.asarray(arrays[k]) for k in ("keys", "labels", "counts"))
        if labels.shape != counts.shape or labels.ndim != 2 or labels.shape[0] != keys.size:
            raise ValueError(
                f"LabelStore.from_arrays: keys {keys.shape}, labels {labels.shape}, counts {counts.shape} disagree"
            )
        width = max(labels.shape[1], 1)
        most = max(int(arrays["max_labels_per_voxel"][0]), width)
        config = LabelStoreConfig(initial_slots=width, max_labels_per_voxel=most)
        store = cls(config)
        store.index.insert(keys.astype(np.int64))
        store._grow_rows(keys.size)
        store._labels[: keys.size], store._counts[: keys.size] = labels, counts
        store._grow_label_table(int(labels.max(initial=-1)) + 1)
        held = labels >= 0
        store._label_voxels[: labels.max(initial=-1) + 1] = np.bincount(labels[held])
        store._note_holders(np.broadcast_to(np.arange(keys.size)[:, None], labels.shape)[held], labels[held])
        return store

    # -- internals ------------------------------------------------------------------------------------
    def _find_slots(self, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
        match = np.take(self._labels, rows, axis=0) == labels[:, None]
        return np.where(match.any(1), match.argmax(1), -1)

    def _insert_new_pairs(self, rows: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> None:
        """Put (row, label) pairs absent from the store into free slots, one pair per row per round."""
        self._note_holders(rows, labels)
        order = np.argsort(rows, kind="stable")
        rows, labels, weights = rows[order], labels[order], weights[order]
        first = np.r_[True, rows[1:] != rows[:-1]] if rows.size else np.zeros(0, bool)
        rank = np.arange(rows.size) - np.maximum.accumulate(np.where(first, np.arange(rows.size), 0))
        for r in range(int(rank.max(initial=-1)) + 1):
            pick = rank == r
            self._insert_one_per_row(rows[pick], labels[pick], weights[pick])

    def _insert_one_per_row(self, rows: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> None:
        free = self._labels[rows] == NO_LABEL
        if not free.any(1).all() and self._labels.shape[1] < self.config.max_labels_per_voxel:
            self._widen()
            free = self._labels[rows] == NO_LABEL
        has_free = free.any(1)
        slot = np.where(has_free, free.argmax(1), self._counts[rows].argmin(1))
        evicted = self._labels[rows[~has_free], slot[~has_free]]
        np.subtract.at(self._label_voxels, evicted, 1)
        self._labels[rows, slot] = labels
        self._counts[rows, slot] = weights.astype(np.int32)
        np.add.at(self._label_voxels, labels, 1)

    def _merge_duplicate_slots(self, rows: np.ndarray) -> None:
        """After relabelling, fold repeated labels within a voxel into their first slot."""
        ordered = np.sort(self._labels[rows], axis=1)
        rows = rows[((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any(1)]  # the few with repeats
        labels, counts = self._labels[rows], self._counts[rows]
        width = labels.shape[1]
        for j in range(width):
            for k in range(j + 1, width):
                same = (labels[:, k] == labels[:, j]) & (labels[:, j] >= 0)
                counts[same, j] += counts[same, k]
                labels[same, k], counts[same, k] = NO_LABEL, 0
        self._labels[rows], self._counts[rows] = labels, counts

    def _rows_holding(self, labels: np.ndarray) -> np.ndarray:
        """Sorted rows of the voxels holding any of ``labels``: each label's candidate rows, checked
        (and compacted to the rows that still hold it)."""
        found = [np.zeros(0, np.int64)]
        for label in np.unique(labels).tolist():
            chunks = self._holders.get(label)
            if not chunks:
                continue
            rows = np.unique(np.concatenate(chunks))
            rows = rows[(np.take(self._labels, rows, axis=0) == label).any(1)]
            self._holders[label] = [rows]
            found.append(rows)
        return np.unique(np.concatenate(found))

    def _note_holders(self, rows: np.ndarray, labels: np.ndarray) -> None:
        """Record that voxel ``rows`` now hold ``labels`` (one label per row)."""
        if rows.size == 0:
            return
        order = np.argsort(labels, kind="stable")
        rows, labels = np.asarray(rows, np.int64)[order], labels[order]
        cuts = np.flatnonzero(labels[1:] != labels[:-1]) + 1
        starts, ends = np.r_[0, cuts].tolist(), np.r_[cuts, labels.size].tolist()
        holders = self._holders
        for label, a, b in zip(labels[starts].tolist(), starts, ends):
            chunks = holders.setdefault(label, [])
            chunks.append(rows[a:b])
            if len(chunks) >= 32:  # bounded chunk lists: fold them (amortised)
                chunks[:] = [np.concatenate(chunks)]

    def _shift_label_voxels(self, before: np.ndarray, after: np.ndarray) -> None:
        """Update the per-label voxel counts for rows whose slots went from ``before`` to ``after``
        (a voxel holds a label in one slot at most, so slot entries count voxels)."""
        size = self._label_voxels.size
        self._label_voxels += np.bincount(after[after >= 0], minlength=size)
        self._label_voxels -= np.bincount(before[before >= 0], minlength=size)

    def _widen(self) -> None:
        width = min(2 * self._labels.shape[1], self.config.max_labels_per_voxel)
        pad = width - self._labels.shape[1]
        self._labels = np.pad(self._labels, ((0, 0), (0, pad)), constant_values=NO_LABEL)
        self._counts = np.pad(self._counts, ((0, 0), (0, pad)))

    def _grow_rows(self, n: int) -> None:
        if n > self._labels.shape[0]:
            extra = max(n, 2 * self._labels.shape[0]) - self._labels.shape[0]
            self._labels = np.pad(self._labels, ((0, extra), (0, 0)), constant_values=NO_LABEL)
            self._counts = np.pad(self._counts, ((0, extra), (0, 0)))

    def _grow_label_table(self, n: int) -> None:
        if n > self._label_voxels.size:
            grown = max(n, 2 * self._label_voxels.size)
            self._label_voxels = np.pad(self._label_voxels, (0, grown - self._label_voxels.size))

    @staticmethod
    def _check_labels(labels: np.ndarray, what: str) -> np.ndarray:
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"LabelStore.{what}: labels must be integers, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= np.iinfo(np.int32).max):
            raise ValueError(
                f"LabelStore.{what}: labels must lie in [0, 2**31 - 1), got [{labels.min()}, {labels.max()}]"
            )
        return labels


def _sum_pairs(rows: np.ndarray, labels: np.ndarray, weights: np.ndarray):
    """Distinct (row, label) pairs with their summed weights."""
    combined = rows * (int(labels.max(initial=0)) + 1) + labels
    unique, _, inverse, _ = group_int64(combined)
    summed = np.bincount(inverse, weights=weights, minlength=unique.size).astype(np.int64)
    pair_rows, pair_labels = np.divmod(unique, int(labels.max(initial=0)) + 1)
    return pair_rows, pair_labels, summed
