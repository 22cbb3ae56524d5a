"""Per-object statistics of the map, as growable struct-of-arrays indexed by object id.

Ids are dense, start at 0 and never change meaning: a merge retires the younger id and records it in
``parent`` (``resolve`` follows the chain to the surviving id). Updates cost O(objects touched).
"""
from __future__ import annotations

import numpy as np

_FIELDS = {
    "first_frame": (np.int64, -1),
    "last_frame": (np.int64, -1),
    "num_obs": (np.int64, 0),  # frames in which the object was observed
    "num_visible": (np.int64, 0),  # frames whose surface held enough of the object to have observed it
    "score_sum": (np.float64, 0.0),  # sum over observations of the mask score
    "structure_votes": (np.int64, 0),  # observations whose mask was structure (floor, wall, ...)
    "best_frame": (np.int64, -1),  # frame of the largest observation
    "best_points": (np.int64, 0),  # its number of lifted points
    "parent": (np.int64, -1),  # -1 while alive, else the id it was merged into
    "growth": (np.bool_, False),  # a provisional growth of its parent, never an object of its own (yet)
}


class ObjectTable:
    """Statistics of every object id ever created. See the module docstring."""

    def __init__(self, capacity: int = 256):
        self._data = {name: np.full(capacity, fill, dtype) for name, (dtype, fill) in _FIELDS.items()}
        self.best_box = np.zeros((capacity, 4), np.float32)  # XYXY pixels in best_frame
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def __getattr__(self, name: str) -> np.ndarray:
        data = self.__dict__.get("_data")
        if data is not None and name in data:
            return data[name][: self.size]
        raise AttributeError(name)

    def create(self, n: int) -> np.ndarray:
        """Allocate ``n`` new ids (returned, increasing)."""
        self._reserve(self.size + n)
        ids = np.arange(self.size, self.size + n, dtype=np.int64)
        self.size += n
        return ids

    def observe(self, ids: np.ndarray, frame_index: int, scores: np.ndarray, structure: np.ndarray,
                points: np.ndarray, boxes: np.ndarray) -> None:
        """Record one frame's observations: one row per segment (ids may repeat; each object counts once)."""
        ids = np.asarray(ids, np.int64)
        d = self._data
        unique = np.unique(ids)
        d["first_frame"][unique] = np.where(d["first_frame"][unique] < 0, frame_index, d["first_frame"][unique])
        d["last_frame"][unique] = frame_index
        d["num_obs"][unique] += 1
        best = _largest_per_id(ids, points)
        np.add.at(d["score_sum"], unique, _mean_per_id(ids, scores, unique))
        np.add.at(d["structure_votes"], unique, (_mean_per_id(ids, structure.astype(np.float64), unique) > 0.5))
        better = points[best] > d["best_points"][ids[best]]
        rows = best[better]
        d["best_points"][ids[rows]] = points[rows]
        d["best_frame"][ids[rows]] = frame_index
        self.best_box[ids[rows]] = boxes[rows]

    def saw(self, ids: np.ndarray) -> None:
        """Count one frame in which ``ids`` (distinct) were visible."""
        self._data["num_visible"][np.asarray(ids, np.int64)] += 1

    def consistency(self, ids: np.ndarray) -> np.ndarray:
        """Share of the frames that saw each object in which it was detected (1 when never counted)."""
        d = self._data
        return d["num_obs"][ids] / np.maximum(np.maximum(d["num_visible"][ids], d["num_obs"][ids]), 1)

    def merge(self, keep: int, retire: int) -> None:
        """Fold ``retire``'s statistics into ``keep`` and retire it."""
        d = self._data
        d["first_frame"][keep] = min(d["first_frame"][keep], d["first_frame"][retire])
        d["last_frame"][keep] = max(d["last_frame"][keep], d["last_frame"][retire])
        for name in ("num_obs", "num_visible", "score_sum", "structure_votes"):
            d[name][keep] += d[name][retire]
        if d["best_points"][retire] > d["best_points"][keep]:
            for name in ("best_points", "best_frame"):
                d[name][keep] = d[name][retire]
            self.best_box[keep] = self.best_box[retire]
        d["parent"][retire] = keep

    def confirm(self, keep: int, growth: int) -> None:
        """Make the provisional ``growth`` of ``keep`` part of it for good. Unlike ``merge``, the
        observation counts are not added: a growth is seen in the frames that see its object, so a sum
        would count those frames twice; the one observed more often gives them."""
        d = self._data
        if d["num_obs"][growth] > d["num_obs"][keep]:
            for name in ("num_obs", "num_visible", "score_sum", "structure_votes"):
                d[name][keep] = d[name][growth]
        for name in ("num_obs", "num_visible", "score_sum", "structure_votes"):
            d[name][growth] = 0
        self.merge(keep, growth)  # stays flagged a growth: never shown, left out of ``remap_table``

    def attach(self, ids: np.ndarray, parents: np.ndarray) -> None:
        """Resolve the new ``ids`` to ``parents`` without folding their statistics: provisional growths,
        left out of ``remap_table`` until ``detach`` makes them objects of their own (``merge`` makes the
        link final)."""
        ids = np.asarray(ids, np.int64)
        self._data["parent"][ids] = np.asarray(parents, np.int64)
        self._data["growth"][ids] = True

    def detach(self, obj: int) -> None:
        """Undo ``attach``: ``obj`` becomes an object of its own, resolving to itself."""
        self._data["parent"][obj] = -1
        self._data["growth"][obj] = False

    def resolve(self, ids: np.ndarray) -> np.ndarray:
        """The surviving id of each of ``ids`` (follows merge chains; -1 stays -1)."""
        ids = np.asarray(ids, np.int64).copy()
        parent = self._data["parent"]
        while True:
            valid = ids >= 0
            nxt = np.where(valid, parent[np.where(valid, ids, 0)], -1)
            step = valid & (nxt >= 0)
            if not step.any():
                return ids
            ids[step] = nxt[step]

    @property
    def alive(self) -> np.ndarray:
        """Ids never merged away, increasing."""
        return np.flatnonzero(self._data["parent"][: self.size] < 0)

    def mean_score(self, ids: np.ndarray) -> np.ndarray:
        d = self._data
        return d["score_sum"][ids] / np.maximum(d["num_obs"][ids], 1)

    def remap_table(self) -> dict[int, int]:
        """Retired id -> surviving id (provisional growths, never shown as objects, left out)."""
        retired = np.flatnonzero((self._data["parent"][: self.size] >= 0) & ~self._data["growth"][: self.size])
        return dict(zip(retired.tolist(), self.resolve(retired).tolist()))

    def _reserve(self, n: int) -> None:
        capacity = len(self._data["parent"])
        if n <= capacity:
            return
        grown = max(n, 2 * capacity)
        for name, (dtype, fill) in _FIELDS.items():
            new = np.full(grown, fill, dtype)
            new[:capacity] = self._data[name]
            self._data[name] = new
        self.best_box = np.concatenate([self.best_box, np.zeros((grown - capacity, 4), np.float32)])


def _largest_per_id(ids: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Row index of the largest observation of each distinct id."""
    order = np.lexsort((-points, ids))
    first = np.r_[True, ids[order][1:] != ids[order][:-1]]
    return order[first]


def _mean_per_id(ids: np.ndarray, values: np.ndarray, unique: np.ndarray) -> np.ndarray:
    at = np.searchsorted(unique, ids)
    sums = np.bincount(at, weights=values, minlength=unique.size)
    return sums / np.bincount(at, minlength=unique.size)
