"""``RefineConfig.keep_apart``: clustering one-level masks from single segments, a join never puts two
segments that the views keep apart in one object, so a mask that merged two objects in one view does not
bridge them though each view that sees only one of them holds it with that one."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from lift3d.voxels import pack_keys
from tracking import RefineConfig
from tracking.consensus import ConsensusInput, view_consensus

CONFIG = RefineConfig(cell_factor=1, min_observers=2, observe_cells=5)
A, B = np.arange(0, 50), np.arange(50, 100)  # two objects side by side: runs of cells along x


def _keys(cells: np.ndarray) -> np.ndarray:
    return pack_keys(np.stack([cells, np.zeros_like(cells), np.zeros_like(cells)], 1))


def _views(seed: int, alone: int = 14, both: int = 10) -> tuple[ConsensusInput, np.ndarray]:
    """Views of A alone, of B alone (each a random window of most of the object), of both apart, and one
    last view whose mask merged both. Returns the input (no initial groups: one-level masks) and per
    segment its object (0: A, 1: B, -1: the merged mask)."""
    rng = np.random.default_rng(seed)
    views = [[A[int(rng.integers(0, 10)):][:40]] for _ in range(alone)]
    views += [[B[int(rng.integers(0, 10)):][:40]] for _ in range(alone)]
    views += [[A, B] for _ in range(both)] + [[np.r_[A, B]]]
    seg_cells, seg_frame, seg_mask, surf_cells, surf_frame, truth = [], [], [], [], [], []
    for frame, masks in enumerate(views):
        for mask in masks:
            seg_cells.append(mask)
            seg_frame.append(frame)
            seg_mask.append(len(seg_mask))
            truth.append(-1 if mask.size > A.size else int(mask[0] >= B[0]))
        seen = np.concatenate(masks)
        surf_cells.append(seen)
        surf_frame.append(np.full(seen.size, frame))
    rows = np.concatenate([np.full(c.size, i) for i, c in enumerate(seg_cells)])
    data = ConsensusInput(rows, _keys(np.concatenate(seg_cells)), np.array(seg_frame), np.concatenate(surf_frame),
                          _keys(np.concatenate(surf_cells)), len(views), np.array(seg_mask))
    return data, np.array(truth)


def _clusters_of(result, truth: np.ndarray, obj: int) -> set:
    return set(result.cluster[truth == obj].tolist()) - {-1}


def test_a_merged_view_does_not_bridge_two_objects_the_views_keep_apart():
    for seed in range(3):
        data, truth = _views(seed)
        result = view_consensus(data, CONFIG)
        merged = result.cluster[truth == -1]
        # the merged mask is cut in the 10 views of both, under a third of the 38 it observes: no view
        # flags it, so it stays in the graph and joins one of the two
        assert not result.underseg[truth == -1].any() and merged[0] >= 0
        a, b = _clusters_of(result, truth, 0), _clusters_of(result, truth, 1)
        assert len(a) == 1 and len(b) == 1 and a != b, (seed, a, b)
        assert merged[0] in a | b

        chained = view_consensus(data, replace(CONFIG, keep_apart=False))
        # connected components: the merged segment joins A in A's views and B in B's, so both are one
        assert _clusters_of(chained, truth, 0) == _clusters_of(chained, truth, 1) == {chained.cluster[truth == -1][0]}


def test_keep_apart_leaves_the_clustering_from_online_objects_as_it_was():
    # from the online objects (the weight-free generator, SAM) the evidence model is unchanged
    data, truth = _views(0)
    data.initial = np.arange(truth.size)  # every segment its own group
    on = view_consensus(data, CONFIG)
    off = view_consensus(data, replace(CONFIG, keep_apart=False))
    np.testing.assert_array_equal(on.cluster, off.cluster)


def test_kept_apart_in_blocks_equals_the_pairwise_rule():
    # random observations and containments: any pair of the two sets with >= min_observers views observing
    # both and at most 1 - consensus of them holding both; blocks of a few rows must give the same answers
    from scipy import sparse

    from tracking.consensus import _KeptApart, _NodeStats

    rng = np.random.default_rng(7)
    n, frames, masks = 40, 30, 60
    observes = rng.random((n, frames)) < 0.6
    underseg = rng.random((n, frames)) < 0.1
    contained = sparse.csr_matrix((rng.random((n, masks)) < 0.15).astype(np.int8))
    stats = _NodeStats(n, observes, underseg, contained)
    usable = (observes & ~underseg).astype(np.int64)
    observers = usable @ usable.T
    together = (contained @ contained.T).toarray()
    config = RefineConfig(min_observers=10)
    apart = (observers >= config.min_observers) & (together <= (1.0 - config.consensus) * observers)
    whole, blocked = _KeptApart(stats, config), _KeptApart(stats, config, block_bytes=1)
    answers = set()
    for _ in range(200):
        first, second = (rng.choice(n, int(rng.integers(1, 6)), replace=False) for _ in range(2))
        expected = bool(apart[np.ix_(first, second)].any())
        answers.add(expected)
        assert whole.any_between(first, second) == expected == blocked.any_between(first, second)
    assert answers == {True, False}
