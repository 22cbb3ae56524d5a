"""The global pass's rewritten kernels equal their straightforward versions on generated views."""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest

from lift3d.voxels import pack_keys
from tracking import RefineConfig, refine
from tracking.consensus import ConsensusInput, VoxelTable, _binary, _Graph, _heaviest_of, distinct_counts, _join, _node_stats, _undersegmenting, view_consensus

CONFIG = RefineConfig(cell_factor=1, min_observers=2, observe_cells=5)


def _random_views(seed: int, n_frames: int = 24, n_objects: int = 12):
    """Objects are runs of cells along x; each frame sees a window of them, its masks hold the visible
    part of one object, now and then of two neighbours together (under-segmenting) or half of one."""
    rng = np.random.default_rng(seed)
    edges = np.r_[0, np.sort(rng.choice(np.arange(5, 300), n_objects - 1, replace=False)), 300]
    seg_cells, seg_frame, seg_mask, online, surf_frame, surf_cells = [], [], [], [], [], []
    for f in range(n_frames):
        lo = int(rng.integers(0, 200))
        window = np.arange(lo, lo + 100)
        surf_cells.append(window)
        surf_frame.append(np.full(window.size, f))
        objects = [o for o in range(n_objects) if edges[o] < window[-1] and edges[o + 1] > window[0]]
        o = 0
        while o < len(objects):
            obj = objects[o]
            cells = window[(window >= edges[obj]) & (window < edges[obj + 1])]
            if o + 1 < len(objects) and rng.random() < 0.15:  # merged with its neighbour
                nxt = objects[o + 1]
                cells = np.r_[cells, window[(window >= edges[nxt]) & (window < edges[nxt + 1])]]
                o += 1
            parts = np.array_split(cells, 2) if rng.random() < 0.2 and cells.size > 4 else [cells]
            for part in parts:
                seg_cells.append(part)
                seg_frame.append(f)
                seg_mask.append(len(seg_mask))
                online.append(obj if rng.random() < 0.8 else int(rng.integers(n_objects)))
            o += 1

    def keys(cells):
        return pack_keys(np.stack([cells, np.zeros_like(cells), np.zeros_like(cells)], 1))

    rows = np.concatenate([np.full(c.size, i) for i, c in enumerate(seg_cells)])
    data = ConsensusInput(rows, keys(np.concatenate(seg_cells)), np.array(seg_frame), np.concatenate(surf_frame),
                          keys(np.concatenate(surf_cells)), n_frames, np.array(seg_mask), initial=np.array(online))
    return data


def _assert_same_stats(a, b):
    assert a.n_nodes == b.n_nodes
    np.testing.assert_array_equal(a.observes, b.observes)
    np.testing.assert_array_equal(a.inside_underseg, b.inside_underseg)
    assert (a.contained != b.contained).nnz == 0 and a.contained.shape == b.contained.shape


def test_node_statistics_taken_over_from_the_previous_round_equal_those_computed_afresh():
    for seed in range(4):
        data = _random_views(seed)
        graph = _Graph(data, 1)
        underseg = _undersegmenting(graph, CONFIG)
        members = np.arange(data.seg_frame.size)
        assign = np.unique(data.initial, return_inverse=True)[1].reshape(-1)
        first = _node_stats(graph, members, assign, underseg, CONFIG)
        assert first.contained.nnz > 0 and first.observes.any() and first.inside_underseg.any()
        rng = np.random.default_rng(seed)
        edges = rng.choice(first.n_nodes, (3, 2), replace=False)  # three joins: most nodes stay as they were
        joined = _join(assign, edges, first.n_nodes)
        _assert_same_stats(_node_stats(graph, members, joined, underseg, CONFIG, previous=first),
                           _node_stats(graph, members, joined, underseg, CONFIG))
        renamed = (first.n_nodes - 1) - assign  # the same nodes under other numbers: every row copied
        _assert_same_stats(_node_stats(graph, members, renamed, underseg, CONFIG, previous=first),
                           _node_stats(graph, members, renamed, underseg, CONFIG))
        split = assign.copy()  # a node split in two: both halves computed, not copied
        big = np.bincount(assign).argmax()
        mine = np.flatnonzero(assign == big)
        split[mine[: mine.size // 2]] = first.n_nodes
        _assert_same_stats(_node_stats(graph, members, split, underseg, CONFIG, previous=first),
                           _node_stats(graph, members, split, underseg, CONFIG))


def test_consensus_on_generated_views_joins_some_online_objects():
    data = _random_views(0)
    result = view_consensus(data, CONFIG)
    assert result.rounds and result.underseg.any()
    assert 1 < result.cluster.max() + 1 < np.unique(data.initial).size


def test_side_by_side_returns_both_values_in_order_and_raises_either_error():
    from tracking.overlap import side_by_side

    for threads in (1, 2):
        assert side_by_side(lambda: np.sort(np.arange(5)[::-1]).tolist(), lambda: "second", threads) == (
            [0, 1, 2, 3, 4], "second")
        with pytest.raises(ZeroDivisionError):
            side_by_side(lambda: 1, lambda: 1 // 0, threads)
        with pytest.raises(KeyError):
            side_by_side(lambda: {}["missing"], lambda: 2, threads)


def _same_matrix(a, b):
    assert a.shape == b.shape and (a != b).nnz == 0


def test_the_threaded_graph_and_consensus_equal_the_one_thread_ones():
    data = _random_views(1)
    one, two = _Graph(data, 1, threads=1), _Graph(data, 1, threads=2)
    for name in ("M", "V", "covered", "U", "UT"):
        _same_matrix(getattr(one, name), getattr(two, name))
    table_one = VoxelTable.build(data.seg_keys, data.surf_keys, threads=1)
    table_two = VoxelTable.build(data.seg_keys, data.surf_keys, threads=2)
    for name in ("keys", "of_seg", "of_surf", "seen"):
        np.testing.assert_array_equal(getattr(table_one, name), getattr(table_two, name))
    results = [view_consensus(data, replace(CONFIG, threads=threads)) for threads in (1, 2)]
    np.testing.assert_array_equal(results[0].cluster, results[1].cluster)
    np.testing.assert_array_equal(results[0].underseg, results[1].underseg)
    assert results[0].rounds == results[1].rounds


def test_the_threaded_refinement_of_a_tracked_scene_equals_the_one_thread_one():
    from test_tracking_refine import SMALL, _two_boxes_and_wall_tracked

    tracker, _ = _two_boxes_and_wall_tracked()
    one = refine(copy.deepcopy(tracker), replace(SMALL, threads=1))
    two = refine(copy.deepcopy(tracker), replace(SMALL, threads=2))
    assert one.object_map.ids.size >= 2
    for name in ("keys", "object", "ids", "confidence", "num_obs"):
        np.testing.assert_array_equal(getattr(one.object_map, name), getattr(two.object_map, name))
    np.testing.assert_array_equal(one.segment_object, two.segment_object)
    np.testing.assert_array_equal(one.row_voxel, two.row_voxel)
    assert one.remap == two.remap and one.rounds == two.rounds


def _exclusive_units_by_rows(unit: np.ndarray, cell: np.ndarray, unit_frame: np.ndarray, shape):
    """The reference: each (mask, cell) pair's voxels counted over every segment row."""
    base = np.int64(shape[1])
    pairs, weight = distinct_counts(unit.astype(np.int64) * base + cell)
    pair_unit, pair_cell = np.divmod(pairs, base)
    return _heaviest_of(pair_unit, pair_cell, weight, unit_frame, shape)


def test_the_graph_masks_and_covered_cells_from_segment_counts_equal_those_counted_over_every_row():
    for seed in range(3):
        data = _random_views(seed)
        graph = _Graph(data, 2)
        table = VoxelTable.build(data.seg_keys, data.surf_keys)
        from tracking.consensus import coarse_keys

        cell = np.unique(coarse_keys(table.keys, 2), return_inverse=True)[1].reshape(-1)[table.of_seg]
        straight = _exclusive_units_by_rows(graph.unit_of[data.seg_rows], cell, graph.unit_frame, graph.U.shape)
        pairs = np.unique(graph.unit_of[data.seg_rows] * np.int64(graph.U.shape[1]) + cell).size
        assert straight.nnz < pairs  # masks of one frame shared cells: the heaviest took them
        _same_matrix(graph.U, straight)
        _same_matrix(graph.UT, straight.T.tocsr())
        covered = _binary(cell, graph.seg_frame[data.seg_rows], graph.covered.shape)  # over every row
        assert graph.covered.nnz == covered.nnz and (graph.covered != covered).nnz == 0
        assert graph.covered.has_sorted_indices and set(graph.covered.data.tolist()) == {1.0}
