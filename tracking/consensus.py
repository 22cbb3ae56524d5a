"""View-consensus clustering of segments (MaskClustering, training-free): the global step's graph.

Everything is sparse matrix algebra on coarse cells (``cell_factor`` voxels per side):
``M`` (segments x cells) incidence, ``V`` (cells x frames) observed-surface visibility.
For a node (a set of segments) n and a frame f: visible cells ``(N V)[n, f]``; a mask m of frame f
contains n when it holds >= ``contain_share`` of them; n observes f when >= ``visible_share`` of its
cells are visible. Two nodes are joined when, among the frames observing both, the share in which one
mask contains both is >= ``consensus`` and there are enough such observers; the observer threshold
falls over iterations (connected components each round). Segments split across several masks in more
than ``underseg_share`` of their frames are under-segmenting: they are no nodes and contain nothing.
Clustering from single segments (no initial groups: one-level masks, ``RefineConfig.from_online``),
each mask is taken for a whole object: a segment that swallowed a whole mask of another view counts as
split in that view, and a view that cuts a node across masks is left out of its pairs' observers; and
(``RefineConfig.keep_apart``) no join puts two segments that the views keep apart in one node.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from lift3d.voxels import pack_keys, stable_argsort, unpack_keys

from .config import RefineConfig
from .overlap import pass_threads, side_by_side


@dataclass
class ConsensusInput:
    """``seg_rows``/``seg_keys``: (segment, voxel key) rows; ``seg_frame``: frame column of each segment;
    ``surf_frame``/``surf_keys``: (frame column, voxel key) rows of the observed surfaces; ``num_frames``;
    ``seg_mask``: per segment the 2D mask it came from (any int, unique within a frame): spatial parts of
    one mask are contained together by it; ``initial``: optional starting group per segment (e.g. the
    online object ids): the clustering then only joins groups, every segment is a member; ``voxels``:
    optionally the ``VoxelTable`` of (seg_keys, surf_keys), when the caller already built it."""

    seg_rows: np.ndarray
    seg_keys: np.ndarray
    seg_frame: np.ndarray
    surf_frame: np.ndarray
    surf_keys: np.ndarray
    num_frames: int
    seg_mask: np.ndarray | None = None
    initial: np.ndarray | None = None
    voxels: "VoxelTable | None" = None


@dataclass
class VoxelTable:
    """The distinct voxels of two key-row arrays (segment rows, surface rows), built with one sort and
    shared by every step of the global pass: ``keys`` sorted distinct keys, ``of_seg``/``of_surf`` the
    voxel (index into ``keys``) of each row, ``seen`` per voxel the surface rows holding it (frames that
    observed it: a frame's surface keys are distinct)."""

    keys: np.ndarray
    of_seg: np.ndarray
    of_surf: np.ndarray
    seen: np.ndarray

    @classmethod
    def build(cls, seg_keys: np.ndarray, surf_keys: np.ndarray, threads: int = 1) -> "VoxelTable":
        # Both row sets come in sorted runs (a segment's keys, a frame's keys): a stable sort of the values
        # takes the runs whole, then each row finds its voxel by binary search (1.7x faster than a grouping
        # argsort with its inverse on scene0113_00's 10.5M rows). Each row set is sorted apart and their
        # distinct keys merged (two sorted runs: one more stable sort, linear): 7-Scenes 0.43 -> 0.28 CPU-s,
        # scene0113_00 0.80 -> 0.64, than sorting both row sets together; with ``threads`` >= 2 the two
        # row sets are sorted and searched side by side
        keys = _sorted_distinct(np.concatenate(side_by_side(lambda: _sorted_distinct(seg_keys),
                                                            lambda: _sorted_distinct(surf_keys), threads)))
        of_seg, of_surf = side_by_side(lambda: np.searchsorted(keys, seg_keys),
                                       lambda: np.searchsorted(keys, surf_keys), threads)
        return cls(keys, of_seg, of_surf, np.bincount(of_surf, minlength=keys.size))


@dataclass
class ConsensusResult:
    """``cluster``: per segment its cluster (0..C-1), -1 for under-segmenting segments;
    ``underseg``: bool per segment; ``rounds``: observer thresholds used."""

    cluster: np.ndarray
    underseg: np.ndarray
    rounds: list


def coarse_keys(keys: np.ndarray, factor: int) -> np.ndarray:
    """Keys of the cells of ``factor`` voxels per side holding each voxel key."""
    if factor == 1:
        return np.asarray(keys, np.int64)
    return pack_keys(np.floor_divide(unpack_keys(keys), factor))


class _Graph:
    """The fixed matrices, all binary: M (segments x cells), V (cells x frames: on the frame's surface),
    covered (cells x frames: under some mask of the frame), U (masks x cells, exclusive per frame);
    ``threads``: for the products that may run side by side."""

    def __init__(self, data: ConsensusInput, factor: int, threads: int = 1):
        voxels = data.voxels if data.voxels is not None else VoxelTable.build(data.seg_keys, data.surf_keys, threads)
        cells, cell_of_voxel = np.unique(coarse_keys(voxels.keys, factor), return_inverse=True)
        cell_of_voxel = cell_of_voxel.reshape(-1)  # coarse keys once per distinct voxel, not per row
        n_cells = cells.size
        n_seg = data.seg_frame.size
        self.threads = threads
        self.seg_frame = np.asarray(data.seg_frame, np.int64)
        self.num_frames = data.num_frames
        seg_cells = cell_of_voxel[voxels.of_seg]
        mask = np.zeros(n_seg, np.int64) if data.seg_mask is None else np.asarray(data.seg_mask, np.int64)
        units, first, unit_of = np.unique(np.stack([self.seg_frame, mask], 1), axis=0, return_index=True, return_inverse=True)
        self.unit_of = unit_of.reshape(-1)  # the mask (container) of each segment
        self.unit_frame = self.seg_frame[first]

        def segment_side():
            counts = _counts(data.seg_rows, seg_cells, (n_seg, n_cells))
            # each mask's voxels per cell, summed from its segments' (1.6 M entries on scene0113_00), not
            # counted again over every segment row (5 M)
            by_unit = _binary(self.unit_of, np.arange(n_seg), (units.shape[0], n_seg)) @ counts
            U = _heaviest_units(by_unit, self.unit_frame)
            M = counts.copy()
            M.data[:] = 1.0
            # the cells under some mask of each frame, from the segments' cells too
            in_frame = _binary(self.seg_frame, np.arange(n_seg), (data.num_frames, n_seg))
            covered = (in_frame @ M).T.tocsr()
            covered.data[:] = 1.0
            return M, U, U.T.tocsr(), covered  # every product takes U^T as CSR: converted once, not per round

        (self.M, self.U, self.UT, self.covered), self.V = side_by_side(
            segment_side, lambda: _binary(cell_of_voxel[voxels.of_surf], data.surf_frame, (n_cells, data.num_frames)),
            threads)


def _heaviest_units(by_unit: sparse.csr_matrix, unit_frame: np.ndarray) -> sparse.csr_matrix:
    """Masks x cells from the voxel counts per (mask, cell) ``by_unit`` (masks x cells), each (frame, cell)
    given to the one mask of that frame with most voxels in it, so a small object's border cells do not
    make its neighbour's mask contain it."""
    by_unit = by_unit.tocsr()
    by_unit.sum_duplicates()  # canonical: (mask, cell) pairs in order, as ``_heaviest_of`` wants them
    pair_unit = np.repeat(np.arange(by_unit.shape[0]), np.diff(by_unit.indptr))
    return _heaviest_of(pair_unit, by_unit.indices.astype(np.int64), by_unit.data.astype(np.int64), unit_frame,
                        by_unit.shape)


def _heaviest_of(pair_unit, pair_cell, weight, unit_frame, shape) -> sparse.csr_matrix:
    """Masks x cells holding each (frame, cell) of the distinct (mask, cell) pairs (in mask, cell order)
    for the one of its frame with the largest ``weight``, ties to the first."""
    base = np.int64(shape[1])
    pair_frame = unit_frame[pair_unit]
    # by slot (frame, cell), then falling weight, ties in unit order (``pairs`` is): one stable radix sort
    heaviest = np.int64(weight.max()) + 1
    slot = pair_frame * base + pair_cell
    order = stable_argsort(slot * heaviest + (heaviest - 1 - weight))
    slot = slot[order]
    win = order[np.r_[True, slot[1:] != slot[:-1]]]
    return _binary(pair_unit[win], pair_cell[win], shape)


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of 1-D int64 ``values`` (a stable sort: see ``distinct_counts``)."""
    ordered = np.sort(values, kind="stable")
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if ordered.size else ordered


def distinct_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, counts) of 1-D int64 ``values``. A stable sort of the values themselves:
    the rows come segment by segment, in long sorted runs that the merge sort takes whole (4x faster
    here than ``group_int64``'s radix argsort, which also builds an inverse nobody needs)."""
    ordered = np.sort(values, kind="stable")
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return ordered[starts], np.diff(np.r_[starts, ordered.size])


def view_consensus(data: ConsensusInput, config: RefineConfig = RefineConfig()) -> ConsensusResult:
    """Cluster the segments of ``data``; see the module docstring."""
    n_seg = data.seg_frame.size
    if n_seg == 0:
        return ConsensusResult(np.zeros(0, np.int64), np.zeros(0, bool), [])
    graph = _Graph(data, config.cell_factor, pass_threads(config.threads))
    whole_masks = data.initial is None
    underseg = _undersegmenting(graph, config, whole_masks)
    if data.initial is None:
        members = np.flatnonzero(~underseg)
        assign = np.arange(members.size)  # node of each member segment
    else:
        members = np.arange(n_seg)
        assign = np.unique(np.asarray(data.initial), return_inverse=True)[1].reshape(-1)
    thresholds = None
    rounds = []
    stats = None
    apart = None
    while thresholds is None or thresholds:
        stats = _node_stats(graph, members, assign, underseg, config, previous=stats, whole_masks=whole_masks)
        pairs, support, observers = _pair_evidence(stats, config)
        if thresholds is None:
            thresholds = _schedule(observers, config)
            if whole_masks and config.keep_apart:
                apart = _KeptApart(stats, config)
        if not thresholds:
            break
        k = thresholds.pop(0)
        rounds.append(k)
        edge = (observers >= k) & (support >= config.consensus * np.maximum(observers, 1))
        if apart is None:
            assign = _join(assign, pairs[edge], stats.n_nodes)
        else:
            assign = _join_unless_apart(assign, pairs[edge], support[edge] / observers[edge], observers[edge], apart)
    cluster = np.full(n_seg, -1, np.int64)
    cluster[members] = assign
    return ConsensusResult(cluster, underseg, rounds)


@dataclass
class _NodeStats:
    n_nodes: int
    observes: np.ndarray  # nodes x frames bool
    inside_underseg: np.ndarray  # nodes x frames bool: contained by an under-segmenting mask (or cut: ``_node_rows``)
    contained: sparse.csr_matrix  # nodes x masks binary: the mask contains the node
    assign: np.ndarray | None = None  # per member segment, the node these rows describe


def _node_stats(graph: _Graph, members, assign, underseg, config, previous: _NodeStats | None = None,
                whole_masks: bool = False) -> _NodeStats:
    """The statistics of the nodes ``assign`` makes of ``members``. Each node's rows depend on its own
    segments only, so with ``previous`` (the statistics of an earlier assignment of the same members)
    the nodes it already held are copied and only the others computed: a consensus round joins a few
    nodes (scene0113_00: 652 nodes, 0-18 new per round)."""
    n_nodes = int(assign.max()) + 1
    bad_unit = np.zeros(graph.U.shape[0], bool)
    bad_unit[graph.unit_of[underseg]] = True
    kept_new, kept_old = _same_nodes(previous, assign, n_nodes)
    fresh = np.ones(n_nodes, bool)
    fresh[kept_new] = False
    fresh = np.flatnonzero(fresh)
    observes, inside_underseg, rows, cols = _node_rows(graph, members, assign, fresh, bad_unit, config, whole_masks)
    if kept_new.size:
        observes, inside_underseg = (_gather_rows(n_nodes, kept_new, old[kept_old], fresh, new)
                                     for old, new in ((previous.observes, observes),
                                                      (previous.inside_underseg, inside_underseg)))
        copied = previous.contained[kept_old].tocoo()
        rows = np.concatenate([kept_new[copied.row], rows])
        cols = np.concatenate([copied.col, cols])
    contained = _binary(rows, cols, (n_nodes, graph.U.shape[0]))
    return _NodeStats(n_nodes, observes, inside_underseg, contained, assign)


def _same_nodes(previous: _NodeStats | None, assign: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """(new nodes, their previous node) for the nodes of ``assign`` that hold exactly the segments of
    one node of ``previous`` (none without ``previous``), sorted by new node."""
    if previous is None or previous.assign is None or previous.assign.size != assign.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    base = np.int64(previous.n_nodes)
    codes = np.unique(assign.astype(np.int64) * base + previous.assign)
    new, old = np.divmod(codes, base)
    one_to_one = (np.bincount(new, minlength=n_nodes)[new] == 1) & (np.bincount(old, minlength=base)[old] == 1)
    return new[one_to_one], old[one_to_one]


def _gather_rows(n_nodes: int, kept: np.ndarray, kept_rows: np.ndarray, fresh: np.ndarray, fresh_rows: np.ndarray
                 ) -> np.ndarray:
    out = np.empty((n_nodes,) + fresh_rows.shape[1:], fresh_rows.dtype)
    out[kept], out[fresh] = kept_rows, fresh_rows
    return out


def _node_rows(graph: _Graph, members, assign, nodes: np.ndarray, bad_unit: np.ndarray, config,
               whole_masks: bool = False):
    """For the (sorted) ``nodes`` only: observes and inside_underseg (len(nodes) x frames) and the
    (node, mask) entries of ``contained``, nodes named by their id in ``assign``. ``whole_masks``
    (clustering from single segments): a frame that cuts a node across two or more masks (each holding
    ``split_share`` of its visible cells, ``split_min_cells`` at least) counts as inside_underseg too:
    it did not show the node whole, so it neither holds nor separates the node's pairs. Without it a
    mask split in a tenth of the views of a floor leaves a tenth of the floor's pairs unheld, below
    ``consensus``, and the floor falls apart in pieces."""
    local = np.full(int(assign.max()) + 1, -1, np.int64)
    local[nodes] = np.arange(nodes.size)
    mine = local[assign] >= 0
    A = _binary(local[assign[mine]], members[mine], (nodes.size, graph.M.shape[0]))
    N = (A @ graph.M).tocsr()
    N.data[:] = 1
    size = np.asarray(N.sum(1)).reshape(-1)
    observes, covered = _visibility(graph, N, size, config)
    inter = (N @ graph.UT).tocoo()
    frame = graph.unit_frame[inter.col]
    cov = covered[inter.row, frame]
    hit = (cov > 0) & (inter.data >= config.contain_share * np.maximum(cov, 1)) & observes[inter.row, frame]
    good = hit & ~bad_unit[inter.col]
    bad = hit & bad_unit[inter.col]
    inside_underseg = np.zeros_like(observes)
    inside_underseg[inter.row[bad], frame[bad]] = True
    if whole_masks:
        inside_underseg |= _cut_views(inter, frame, cov, observes, config)
    return observes, inside_underseg, nodes[inter.row[good]], inter.col[good]


def _cut_views(inter: sparse.coo_matrix, frame: np.ndarray, cov: np.ndarray, observes: np.ndarray,
               config) -> np.ndarray:
    """Nodes x frames: two or more masks of the frame each hold ``split_share`` of the node's visible cells."""
    piece = (cov > 0) & (inter.data >= np.maximum(config.split_share * cov, config.split_min_cells))
    codes, counts = np.unique(inter.row[piece].astype(np.int64) * observes.shape[1] + frame[piece], return_counts=True)
    cut = np.zeros_like(observes)
    node, where = np.divmod(codes[counts >= 2], observes.shape[1])
    cut[node, where] = True
    return cut


def _visibility(graph: _Graph, N, size, config) -> tuple[np.ndarray, np.ndarray]:
    """(observes, covered), nodes x frames: a node observes a frame when >= visible_share of its cells
    (or ``observe_cells`` cells: a large node is never 30% in one view) are on the frame's surface and most of those lie under some mask of the frame (masks never cover
    the whole surface: eroded borders, depth edges); ``covered`` counts the cells under a mask, the
    base of every containment share."""
    visible, covered = side_by_side(lambda: (N @ graph.V).toarray(), lambda: (N @ graph.covered).toarray(),
                                    graph.threads)
    enough = np.minimum(config.visible_share * size, config.observe_cells)[:, None]
    observes = (visible >= np.maximum(enough, 1)) & (covered >= 0.5 * visible)
    return observes, covered


def _pair_evidence(stats: _NodeStats, config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate node pairs (P x 2, a < b), frames where one mask contains both, frames observing both."""
    together = sparse.triu(stats.contained @ stats.contained.T, k=1).tocoo()
    pairs = np.stack([together.row, together.col], 1).astype(np.int64)
    if pairs.size == 0:
        return pairs.reshape(0, 2), np.zeros(0), np.zeros(0)
    usable = _usable_views(stats)
    observers = np.bitwise_count(usable[pairs[:, 0]] & usable[pairs[:, 1]]).sum(1).astype(np.int64)
    return pairs, together.data.astype(np.float64), observers


def _usable_views(stats: _NodeStats) -> np.ndarray:
    """Nodes x frames, bit-packed: the frames that observe a node whole (not cut, not inside an
    under-segmenting mask): the views that count as a pair's observers."""
    return np.packbits(stats.observes & ~stats.inside_underseg, axis=1)


def _schedule(observers: np.ndarray, config: RefineConfig) -> list[int]:
    """Falling observer thresholds: quantiles of the candidate pairs' observer counts, >= min_observers."""
    if observers.size == 0:
        return []
    levels = np.quantile(observers, config.observer_quantiles).astype(np.int64)
    levels = np.maximum(levels, config.min_observers)
    return sorted(set(levels.tolist()), reverse=True)


def _undersegmenting(graph: _Graph, config: RefineConfig, whole_masks: bool = False) -> np.ndarray:
    """Segments split across two or more masks (each holding >= split_share of their visible cells) in
    more than underseg_share of the frames they observe. ``whole_masks`` (clustering from single
    segments: each mask taken for a whole object): a mask of which the segment holds ``contain_share``
    of the cells its own frame saw (and ``split_min_cells``) counts as one of those masks too, so a
    segment that swallowed a small object's mask (a wall's mask merged with a picture on it: the picture
    is far below ``split_share`` of the wall) is split in the views that show the picture apart."""
    size = np.asarray(graph.M.sum(1)).reshape(-1)
    (observes, covered), inter = side_by_side(lambda: _visibility(graph, graph.M, size, config),
                                              lambda: (graph.M @ graph.UT).tocoo(), graph.threads)
    frame = graph.unit_frame[inter.col]
    cov = covered[inter.row, frame]
    share_ok = (cov > 0) & (inter.data >= np.maximum(config.split_share * cov, config.split_min_cells))
    if whole_masks:
        share_ok |= _swallowed(graph, inter, config)
    share_ok &= observes[inter.row, frame]
    share_ok &= frame != graph.seg_frame[inter.row]  # a segment's own frame cannot split it
    code = inter.row[share_ok].astype(np.int64) * graph.num_frames + frame[share_ok]
    codes, counts = np.unique(code, return_counts=True)
    split = np.bincount(codes[counts >= 2] // graph.num_frames, minlength=size.size)
    return split > config.underseg_share * np.maximum(observes.sum(1), 1)


def _swallowed(graph: _Graph, inter: sparse.coo_matrix, config: RefineConfig) -> np.ndarray:
    """Per (segment, mask) entry of ``inter``: the segment holds ``contain_share`` of the mask's cells
    that the segment's frame saw, and at least ``split_min_cells``."""
    seen_by_frame = (graph.U @ graph.V).tocsr()  # masks x frames: a mask's cells on each frame's surface
    seen = np.asarray(seen_by_frame[inter.col, graph.seg_frame[inter.row]]).reshape(-1)
    return (inter.data >= config.split_min_cells) & (inter.data >= config.contain_share * np.maximum(seen, 1))


class _KeptApart:
    """Whether the views keep two sets of single segments (the nodes the clustering starts from) apart,
    as firmly as ``consensus`` asks of a join: some pair, one from each set, that at least
    ``min_observers`` views observe both of (whole: cut and under-segmenting views count as in
    ``_pair_evidence``) and at most ``1 - consensus`` of them hold in one mask. Asked pair of sets by
    pair of sets as joins come, so memory follows the two sets, not segments x segments."""

    def __init__(self, stats: _NodeStats, config: RefineConfig, block_bytes: int = 1 << 25):
        self.usable = _usable_views(stats)
        self.contained = stats.contained.tocsr()
        self.min_observers, self.consensus, self.block_bytes = config.min_observers, config.consensus, block_bytes

    def any_between(self, first: np.ndarray, second: np.ndarray) -> bool:
        block = max(1, self.block_bytes // max(second.size * self.usable.shape[1] * 8, 1))
        other_usable, other_contained = self.usable[second], self.contained[second].T
        for lo in range(0, first.size, block):
            rows = first[lo:lo + block]
            observers = np.bitwise_count(self.usable[rows, None, :] & other_usable[None, :, :]).sum(2, dtype=np.int64)
            together = (self.contained[rows] @ other_contained).toarray()
            if ((observers >= self.min_observers) & (together <= (1.0 - self.consensus) * observers)).any():
                return True
        return False


def _join_unless_apart(assign: np.ndarray, edges: np.ndarray, share: np.ndarray, observers: np.ndarray,
                       apart: _KeptApart) -> np.ndarray:
    """``_join`` with the edges taken one by one, the best held first (share of the observers, then their
    number), each skipped when it would put two single segments that the views keep ``apart`` in one
    node. Connected components chain: a segment of a mask that merged two objects is held with each in
    the views that see only that one (it observes a view by a part of it), so it would bridge the two
    though every view seeing both keeps them apart."""
    n_nodes = int(assign.max(initial=-1)) + 1
    parent = np.arange(n_nodes)
    nodes = np.ones(n_nodes, np.int64)  # per root, the nodes of ``assign`` it holds
    segments = _starting_segments(assign, n_nodes)  # per root, the starting segments it holds
    for e in np.lexsort((-observers, -share)):
        a, b = _root(parent, int(edges[e, 0])), _root(parent, int(edges[e, 1]))
        if a == b:
            continue
        if nodes[a] < nodes[b]:
            a, b = b, a
        if apart.any_between(segments[b], segments[a]):
            continue
        parent[b] = a
        nodes[a] += nodes[b]
        segments[a] = np.concatenate([segments[a], segments[b]])
    roots = np.array([_root(parent, node) for node in range(n_nodes)], np.int64)
    return np.unique(roots, return_inverse=True)[1].reshape(-1)[assign]


def _starting_segments(assign: np.ndarray, n_nodes: int) -> list[np.ndarray]:
    """Per node of ``assign``, the (member) segments it holds."""
    order = np.argsort(assign, kind="stable")
    return np.split(order, np.cumsum(np.bincount(assign, minlength=n_nodes))[:-1])


def _root(parent: np.ndarray, node: int) -> int:
    while parent[node] != node:
        parent[node] = parent[parent[node]]
        node = parent[node]
    return node


def _join(assign: np.ndarray, edges: np.ndarray, n_nodes: int) -> np.ndarray:
    """New node of each member after joining nodes along ``edges`` (connected components)."""
    graph = sparse.coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n_nodes, n_nodes))
    _, component = connected_components(graph, directed=False)
    return component[assign]


def _binary(rows: np.ndarray, cols: np.ndarray, shape) -> sparse.csr_matrix:
    matrix = _counts(rows, cols, shape)
    matrix.data[:] = 1.0
    return matrix


def _counts(rows: np.ndarray, cols: np.ndarray, shape) -> sparse.csr_matrix:
    """How many times each (row, col) occurs, canonical CSR (float32: exact up to 2^24)."""
    matrix = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    return matrix
