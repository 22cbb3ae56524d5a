"""The multi-view evidence graph (``tracking.graph``): counting, the minority-merge rule, convexity and
confidence on generated views."""
from __future__ import annotations

import numpy as np
import pytest

from tracking.graph import GraphConfig, PairEvidence, PrimitiveGeometry, cluster_graph, junction_convexity


def _grid_pairs(rows: int, cols: int) -> np.ndarray:
    ids = np.arange(rows * cols).reshape(rows, cols)
    return np.concatenate([np.stack([ids[:, :-1].ravel(), ids[:, 1:].ravel()], 1),
                           np.stack([ids[:-1].ravel(), ids[1:].ravel()], 1)])


def _objects_views(truth: np.ndarray, pairs: np.ndarray, views: int, merge_rate: float, drop_rate: float, seed: int):
    """Views of primitives labelled by ``truth``: per view each primitive is visible with prob 1 - drop;
    each pair of touching objects is merged (one label) independently with prob ``merge_rate``."""
    rng = np.random.default_rng(seed)
    n_obj = int(truth.max()) + 1
    obj_pairs = np.unique(np.sort(truth[pairs], 1), axis=0)
    obj_pairs = obj_pairs[obj_pairs[:, 0] != obj_pairs[:, 1]]
    for _ in range(views):
        parent = np.arange(n_obj)
        for a, b in obj_pairs[rng.random(len(obj_pairs)) < merge_rate]:
            parent[parent == parent[b]] = parent[a]
        seen = rng.random(truth.size) >= drop_rate
        yield np.flatnonzero(seen), parent[truth[seen]] + 1000 * rng.integers(0, 1 << 20)


def _purity(label: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """(clusters mixing two true objects, true objects split over several clusters)."""
    mixed = sum(np.unique(truth[label == c]).size > 1 for c in np.unique(label))
    split = sum(np.unique(label[truth == t]).size > 1 for t in np.unique(truth))
    return mixed, split


def test_counts_together_and_apart_per_pair():
    pairs = np.array([[0, 1], [1, 2]])
    evidence = PairEvidence(3, pairs)
    evidence.add_view([0, 1, 2], [5, 5, 7])
    evidence.add_view([0, 1, 2], [5, 5, 5])
    evidence.add_view([0, 1], [3, -1])  # 1 visible but held by no mask: no evidence on (0, 1)
    assert evidence.together.tolist() == [2.0, 1.0]
    assert evidence.apart.tolist() == [0.0, 1.0]
    assert evidence.held.tolist() == [3.0, 2.0, 2.0]


def test_any_shared_mask_counts_together_and_shares_weight():
    evidence = PairEvidence(2, np.array([[0, 1]]))
    # fine level splits them, a coarse level holds both: one mask holds both -> together
    evidence.add_view([0, 1, 0, 1], [1, 2, 9, 9], shares=[1.0, 1.0, 0.6, 0.8])
    assert evidence.together.tolist() == [pytest.approx(0.6)] and evidence.apart.tolist() == [0.0]
    evidence.add_view([0, 1], [1, 2], shares=[0.5, 0.9])
    assert evidence.apart.tolist() == [pytest.approx(0.5)]


def test_pairs_given_per_view_grow_the_table():
    evidence = PairEvidence()
    evidence.add_view([0, 1, 2], [1, 1, 2], pairs=np.array([[1, 0], [2, 1], [0, 0]]))
    assert evidence.pairs.tolist() == [[0, 1], [1, 2]]
    evidence.add_view([2, 3], [4, 4], pairs=np.array([[2, 3]]))
    assert evidence.pairs.tolist() == [[0, 1], [1, 2], [2, 3]]
    assert evidence.together.tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="give its pairs"):
        PairEvidence().add_view([0, 1], [1, 1])
    with pytest.raises(ValueError, match="one entry per row"):
        evidence.add_view([0, 1], [1])


def test_a_merge_seen_in_a_minority_of_views_loses():
    truth = np.repeat(np.arange(6), 8)  # six objects of eight primitives in a row
    pairs = np.stack([np.arange(47), np.arange(1, 48)], 1)
    evidence = PairEvidence(48, pairs)
    for seen, labels in _objects_views(truth, pairs, views=30, merge_rate=0.3, drop_rate=0.2, seed=0):
        evidence.add_view(seen, labels)
    result = cluster_graph(evidence)
    assert _purity(result.label, truth) == (0, 0)
    assert result.label.max() + 1 == 6


def test_a_merge_seen_in_most_views_wins():
    truth = np.repeat([0, 1], 5)
    pairs = np.stack([np.arange(9), np.arange(1, 10)], 1)
    evidence = PairEvidence(10, pairs)
    for seen, labels in _objects_views(truth, pairs, views=20, merge_rate=0.8, drop_rate=0.0, seed=1):
        evidence.add_view(seen, labels)
    assert np.unique(cluster_graph(evidence).label).size == 1


def test_grid_of_objects_with_every_error_recovers_them():
    """Objects on a 2D grid of primitives; per view 10% of touching object pairs merged, 20% of
    primitives unseen: the clustering recovers every object, where the union of any mask's joins would
    fuse them all."""
    rows, cols = 12, 12
    truth = (np.arange(rows)[:, None] // 4 * 3 + np.arange(cols)[None, :] // 4).ravel()
    pairs = _grid_pairs(rows, cols)
    evidence = PairEvidence(rows * cols, pairs)
    for seen, labels in _objects_views(truth, pairs, views=25, merge_rate=0.1, drop_rate=0.2, seed=2):
        evidence.add_view(seen, labels)
    result = cluster_graph(evidence)
    assert _purity(result.label, truth) == (0, 0)
    ever_together = evidence.together > 0
    crossing = truth[pairs[:, 0]] != truth[pairs[:, 1]]
    assert (ever_together & crossing).any()  # the merges happened: a union of joins would fuse objects


def test_unobserved_or_once_seen_pairs_do_not_join():
    evidence = PairEvidence(3, np.array([[0, 1], [1, 2]]))
    evidence.add_view([0, 1], [1, 1])
    result = cluster_graph(evidence, GraphConfig(min_views=2))
    assert np.unique(result.label).size == 3
    assert np.unique(cluster_graph(evidence, GraphConfig(min_views=1)).label).size == 2


def test_confidence_follows_consistency_and_views():
    pairs = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]])
    clean, noisy = PairEvidence(6, pairs), PairEvidence(6, pairs)
    for v in range(20):
        clean.add_view(np.arange(6), [1, 1, 1, 2, 2, 2])
        noisy.add_view(np.arange(6), [1, 1, 1, 2, 2, 2] if v % 3 else [1, 1, 1, 1, 2, 2])
    c, n = cluster_graph(clean), cluster_graph(noisy)
    assert (c.confidence > n.confidence.max()).all()
    few = PairEvidence(6, pairs)
    for _ in range(3):
        few.add_view(np.arange(6), [1, 1, 1, 2, 2, 2])
    assert cluster_graph(few).confidence.max() < c.confidence.min()
    assert ((c.confidence > 0) & (c.confidence <= 1)).all()


def test_junction_convexity_of_a_box_and_the_floor_it_stands_on():
    # box top (normal up) and side (normal +x): convex; floor (up) next to the box side: concave
    centroid = np.array([[0.0, 0, 1], [1, 0, 0], [2, 0, -1], [3, 0, -1]])
    normal = np.array([[0.0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 0, 1]])
    sign = junction_convexity(np.array([[0, 1], [2, 1], [2, 3]]), PrimitiveGeometry(centroid, normal), 10.0)
    assert sign.tolist() == [1, -1, 0]


def test_convexity_tips_balanced_evidence():
    centroid = np.array([[0.0, 0, 1], [1, 0, 0]])
    evidence = PairEvidence(2, np.array([[0, 1]]))
    evidence.add_view([0, 1], [1, 1])
    evidence.add_view([0, 1], [1, 2])
    convex = PrimitiveGeometry(centroid, np.array([[0.0, 0, 1], [1, 0, 0]]))
    concave = PrimitiveGeometry(centroid, np.array([[0.0, 0, 1], [-1, 0, 0]]))
    assert np.unique(cluster_graph(evidence, GraphConfig(min_views=1), convex).label).size == 1
    assert np.unique(cluster_graph(evidence, GraphConfig(min_views=1), concave).label).size == 2
    assert np.unique(cluster_graph(evidence, GraphConfig(min_views=1)).label).size == 2  # p = 0.5: no join


def test_memory_follows_the_map_not_the_views():
    truth = np.repeat(np.arange(4), 10)
    pairs = np.stack([np.arange(39), np.arange(1, 40)], 1)
    evidence = PairEvidence(40, pairs)
    sizes = []
    for k, (seen, labels) in enumerate(_objects_views(truth, pairs, views=200, merge_rate=0.1, drop_rate=0.3, seed=3)):
        evidence.add_view(seen, labels)
        if k in (10, 199):
            sizes.append(evidence.nbytes())
    assert sizes[0] == sizes[1]
