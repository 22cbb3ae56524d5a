"""Multi-view clustering of a scan's primitives (superpoints) by view consensus (MaskClustering /
SAM3D style): two adjacent clusters join when, among the views that see both well enough to say, a
large enough share has one 2D mask holding both. Rounds run with falling consensus thresholds, and
after each round a cluster's label in a view is re-read as the mask holding most of its visible
vertices there (ambiguous when no mask holds a ``dominance`` share of them).

Input shape (the same as the generic multi-view graph of the fusion work, so either can serve the
scan mode): per view the primitive ids seen, the mask label per primitive (-1: none) and the number
of the primitive's vertices seen; primitive adjacency pairs. Output: a cluster label per primitive and
a confidence per cluster. Everything is kept as sparse observation lists (primitive, view), never as a
primitives x views table.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass
class PrimitiveView:
    """One view's evidence: ``primitives`` int64 ids seen (distinct), ``labels`` int64 mask label of each
    (-1: no mask or no single mask), ``seen`` float64 vertices of each primitive seen in the view,
    ``shares`` (optional) the share of those held by the labelling mask."""

    primitives: np.ndarray
    labels: np.ndarray
    seen: np.ndarray
    shares: np.ndarray | None = None  # share of the seen vertices held by the labelling mask


@dataclass(frozen=True)
class ConsensusConfig:
    """``thresholds``: consensus needed to join, one round each (falling); ``min_views``: views that must
    see and label both clusters; ``min_seen``: vertices of a cluster a view must see to count;
    ``dominance``: share of a cluster's seen vertices one mask must hold to label it in that view;
    ``confident_views``: views after which a cluster's confidence stops growing with its view count."""

    thresholds: tuple = (0.9, 0.8, 0.7, 0.6)
    min_views: int = 2
    min_seen: float = 5.0
    dominance: float = 0.6
    confident_views: int = 5


@dataclass
class Observations:
    """Sparse (primitive or cluster, view) table: ``owner``, ``view``, ``label`` (-1 ambiguous), ``seen``
    (vertices), ``share`` (fraction of the seen vertices in the dominant mask); sorted by (owner, view)."""

    owner: np.ndarray
    view: np.ndarray
    label: np.ndarray
    seen: np.ndarray
    share: np.ndarray


def cluster_primitives(num_primitives: int, views: list[PrimitiveView], adjacency: np.ndarray,
                       config: ConsensusConfig = ConsensusConfig()) -> tuple[np.ndarray, np.ndarray]:
    """(cluster label per primitive 0..C-1, confidence per cluster in [0, 1])."""
    raw = _raw_observations(views)
    cluster = np.arange(num_primitives, dtype=np.int64)
    adjacency = np.asarray(adjacency, np.int64).reshape(-1, 2)
    for threshold in config.thresholds:
        obs = aggregate(raw, cluster, config)
        pairs = np.unique(np.sort(cluster[adjacency], axis=1), axis=0)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        same, both = pair_consensus(obs, pairs)
        join = (both >= config.min_views) & (same >= threshold * np.maximum(both, 1))
        if not join.any():
            continue
        graph = coo_matrix((np.ones(int(join.sum())), (pairs[join, 0], pairs[join, 1])),
                           shape=(cluster.max() + 1,) * 2)
        cluster = connected_components(graph, directed=False)[1][cluster]
    cluster = np.unique(cluster, return_inverse=True)[1].astype(np.int64)
    return cluster, cluster_confidence(raw, cluster, config)


def _raw_observations(views: list[PrimitiveView]) -> tuple[np.ndarray, ...]:
    lengths = [len(v.primitives) for v in views]
    view = np.repeat(np.arange(len(views), dtype=np.int64), lengths)
    cat = lambda name, dtype: (np.concatenate([np.asarray(getattr(v, name), dtype) for v in views])  # noqa: E731
                               if views else np.zeros(0, dtype))
    return cat("primitives", np.int64), view, cat("labels", np.int64), cat("seen", np.float64)


def aggregate(raw: tuple, cluster: np.ndarray, config: ConsensusConfig) -> Observations:
    """Per (cluster, view): the mask holding most of the cluster's seen vertices, if it holds a
    ``dominance`` share, else -1; views seeing under ``min_seen`` vertices are left out."""
    primitive, view, label, seen = raw
    owner = cluster[primitive]
    group = np.unique(np.stack([owner, view]), axis=1, return_inverse=True)
    keys, index = group[0], group[1].reshape(-1)
    total = np.bincount(index, weights=seen, minlength=keys.shape[1])
    labelled = label >= 0
    per_label = np.unique(np.stack([index[labelled], label[labelled]]), axis=1, return_inverse=True)
    label_keys, label_index = per_label[0], per_label[1].reshape(-1)
    label_seen = np.bincount(label_index, weights=seen[labelled], minlength=label_keys.shape[1])
    order = np.lexsort((-label_seen, label_keys[0]))
    first = order[np.r_[True, label_keys[0][order][1:] != label_keys[0][order][:-1]]]
    best_label = np.full(keys.shape[1], -1, np.int64)
    best_seen = np.zeros(keys.shape[1])
    best_label[label_keys[0][first]] = label_keys[1][first]
    best_seen[label_keys[0][first]] = label_seen[first]
    share = best_seen / np.maximum(total, 1e-9)
    best_label[share < config.dominance] = -1
    keep = total >= config.min_seen
    return Observations(keys[0][keep], keys[1][keep], best_label[keep], total[keep], share[keep])


def pair_consensus(obs: Observations, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster pair: (views where one mask labels both, views where both are labelled)."""
    if len(pairs) == 0 or len(obs.owner) == 0:
        return np.zeros(len(pairs)), np.zeros(len(pairs))
    num_views = int(obs.view.max()) + 1
    key = obs.owner * num_views + obs.view  # sorted: observations come sorted by (owner, view)
    start = np.searchsorted(obs.owner, pairs[:, 0], side="left")
    count = np.searchsorted(obs.owner, pairs[:, 0], side="right") - start
    pair = np.repeat(np.arange(len(pairs)), count)
    row = np.repeat(start - np.cumsum(count) + count, count) + np.arange(count.sum())
    other_key = pairs[pair, 1] * num_views + obs.view[row]
    at = np.minimum(np.searchsorted(key, other_key), len(key) - 1)
    found = key[at] == other_key
    la, lb = obs.label[row], np.where(found, obs.label[at], -1)
    both = found & (la >= 0) & (lb >= 0)
    same = both & (la == lb)
    return (np.bincount(pair, weights=same, minlength=len(pairs)),
            np.bincount(pair, weights=both, minlength=len(pairs)))


def cluster_confidence(raw: tuple, cluster: np.ndarray, config: ConsensusConfig) -> np.ndarray:
    """Per cluster: the mean over the views seeing it of the IoU between its seen vertices and the seen
    vertices of the mask holding most of them (an object's mask matches it; a fragment of a wall lies
    in a much larger mask), scaled down for clusters seen in fewer than ``confident_views`` views."""
    primitive, view, label, seen = raw
    num_clusters = int(cluster.max()) + 1 if len(cluster) else 0
    if len(primitive) == 0:
        return np.zeros(num_clusters)
    owner = cluster[primitive]
    num_views, num_labels = int(view.max()) + 1, int(max(label.max(), 0)) + 2
    mask_key = view * num_labels + (label + 1)  # label -1 (no mask) gets its own key, never a best mask
    mask_total = _sum_by(mask_key, seen)
    view_key = owner * num_views + view
    cluster_total = _sum_by(view_key, seen)
    triple = view_key * num_labels + (label + 1)
    keys, triple_seen = _sum_by_keys(triple[label >= 0], seen[label >= 0])
    order = np.lexsort((-triple_seen, keys // num_labels))
    first = order[np.r_[True, (keys // num_labels)[order][1:] != (keys // num_labels)[order][:-1]]]
    best_view_key, best_seen = keys[first] // num_labels, triple_seen[first]
    best_mask_key = (best_view_key % num_views) * num_labels + keys[first] % num_labels
    union = cluster_total(best_view_key) + mask_total(best_mask_key) - best_seen
    iou = best_seen / np.maximum(union, 1e-9)
    valid_views_key, totals = _sum_by_keys(view_key, seen)
    counted = totals >= config.min_seen
    views = np.bincount(valid_views_key[counted] // num_views, minlength=num_clusters)
    good = cluster_total(best_view_key) >= config.min_seen
    score = np.bincount(best_view_key[good] // num_views, weights=iou[good], minlength=num_clusters)
    mean = score / np.maximum(views, 1)
    return np.clip(mean * np.minimum(1.0, views / max(1, config.confident_views)), 0.0, 1.0)


def _sum_by_keys(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    distinct, index = np.unique(keys, return_inverse=True)
    return distinct, np.bincount(index, weights=values, minlength=len(distinct))


def _sum_by(keys: np.ndarray, values: np.ndarray):
    """A lookup: key array -> the sum of ``values`` over rows with that key (0 for absent keys)."""
    distinct, sums = _sum_by_keys(keys, values)

    def lookup(query: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(distinct, query), max(len(distinct) - 1, 0))
        return np.where(distinct[at] == query, sums[at], 0.0) if len(distinct) else np.zeros(len(query))
    return lookup
