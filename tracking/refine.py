"""Global refinement: view-consensus clustering of every recorded segment, post-filters, stable ids.

``refine(tracker)`` reads the tracker's compact records (segments and observed surfaces), clusters the
segments (``consensus``), cleans the clusters into objects on the voxel grid (``postfilter``) and names
each object after the longest-lived online object it overlaps, so ids keep their meaning. It can run
at the end of a sequence or every N frames; the online map is left as it is (``RefineResult`` holds the
refined map and the id remap).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import RefineConfig
from .consensus import ConsensusInput, VoxelTable, distinct_counts, view_consensus
from .export import ObjectMap, observation_confidence
from .online import OnlineTracker
from .overlap import pass_threads, side_by_side
from .postfilter import filter_objects


@dataclass
class RefineResult:
    """``object_map``: the refined objects; ``segment_object``: per recorded segment its refined object id
    (-1: dropped); ``remap``: online id -> refined id (where most of its segments' voxels went);
    ``underseg``: per segment, left out as under-segmenting; ``rounds``: observer thresholds used;
    ``row_voxel``: per (segment, voxel) row of ``SegmentRecords.all_keys``, the index of its voxel in
    ``object_map.keys`` (-1: no object kept it), the refinement's own lookup, which spares its readers
    a search of every row (None: not known)."""

    object_map: ObjectMap
    segment_object: np.ndarray
    remap: dict
    underseg: np.ndarray
    rounds: list
    row_voxel: np.ndarray | None = None


def refine(tracker: OnlineTracker, config: RefineConfig = RefineConfig()) -> RefineResult:
    """Re-cluster every segment the tracker recorded. New objects (no online object to inherit from)
    get fresh ids reserved in ``tracker``'s object table, so they never collide with later online ids."""
    if not tracker.config.keep_records:
        raise ValueError("refine: the tracker was built with keep_records=False, so it kept no segments to refine")
    records = tracker.segments
    seg_rows, keys = records.all_keys()
    frames, surf_col = np.unique(tracker.surfaces.frame.view, return_inverse=True)
    surf_rows, surf_keys = tracker.surfaces.all_keys()
    threads = pass_threads(config.threads)
    table = VoxelTable.build(keys, surf_keys, threads)
    seg_frame = np.searchsorted(frames, records.frame.view)
    online = tracker.resolve(records.object.view)
    initial = online if config.starts_from_online(tracker.one_level_masks) else None
    data = ConsensusInput(seg_rows, keys, seg_frame, surf_col.reshape(-1)[surf_rows], surf_keys, int(frames.size),
                          records.mask.view, initial, table)
    # the free-space votes do not depend on the clusters: read beside the clustering
    clusters, carved = side_by_side(lambda: view_consensus(data, config), lambda: _carved_rows(tracker, table), threads)
    clusters.cluster = _adopt_weak_clusters(clusters.cluster, online, config.weak_cluster)
    row_cluster = clusters.cluster[seg_rows]
    member = (row_cluster >= 0) & ~carved
    member_voxel = table.of_seg[member]
    voxels = filter_objects(row_cluster[member], keys[member], table.seen[member_voxel], tracker.voxel_size, config,
                            member_voxel)
    table_voxel = _table_voxels(table, voxels)
    segment_object = _segment_objects(seg_rows, table, voxels, len(records), table_voxel)
    sizes = np.diff(records.offsets.view)
    names = _inherit_ids(segment_object, online, sizes, voxels.origin.size, tracker)
    segment_named = _named(segment_object, names)
    object_map = _object_map(voxels, names, clusters.cluster, records, tracker, config, table, table_voxel)
    remap = _remap(online, segment_named, sizes)
    return RefineResult(object_map, segment_named, remap, clusters.underseg, clusters.rounds,
                        table_voxel.astype(np.int32)[table.of_seg])


def _carved_rows(tracker: OnlineTracker, table: VoxelTable) -> np.ndarray:
    """Per segment row of ``table``: its voxel was seen through by more frames than saw it as surface
    (``tracking.freespace.FreeSpaceVotes``, counted as frames arrived); all False without votes."""
    cut = np.zeros(table.keys.size, bool)
    if tracker.config.free_space.carve and len(tracker.free_space):
        mine = np.flatnonzero(np.bincount(table.of_seg, minlength=table.keys.size))  # sorted, O(rows)
        cut[mine] = tracker.free_space.carved(table.keys[mine])
    return cut[table.of_seg]


def unique_counts(values: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_counts=True)`` for int64 values in [0, ``bound``): one bincount, no sort,
    when ``bound`` is at most a few times the number of values (the usual case: 2.7 M (segment, object)
    rows over 0.9 M possible pairs on 7-Scenes, 0.14 -> 0.006 s), else a sort."""
    if bound > 4 * values.size + 4096:
        return distinct_counts(values)
    counts = np.bincount(values, minlength=bound)
    present = np.flatnonzero(counts)
    return present, counts[present]


def _majority(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per row 0..n-1, its most frequent value (-1 for rows without any)."""
    out = np.full(n, -1, np.int64)
    if rows.size == 0:
        return out
    base = int(values.max()) + 1
    codes, counts = unique_counts(rows * base + values, n * base)
    row, value = np.divmod(codes, base)
    order = np.lexsort((-counts, row))
    first = np.r_[True, row[order][1:] != row[order][:-1]]
    out[row[order][first]] = value[order][first]
    return out


def _adopt_weak_clusters(cluster: np.ndarray, online: np.ndarray, weak: int) -> np.ndarray:
    """Clusters of at most ``weak`` segments (no multi-view consensus either way: small or rarely seen
    objects) join the largest cluster holding the same online object, or unite per online object."""
    cluster = cluster.copy()
    member = np.flatnonzero(cluster >= 0)
    if member.size == 0 or weak < 1:
        return cluster
    sizes = np.bincount(cluster[member])
    base = int(online.max()) + 1
    codes, counts = np.unique(cluster[member] * base + online[member], return_counts=True)
    c, o = np.divmod(codes, base)
    strong = sizes[c] > weak
    # per online id: its largest strong cluster, else a new cluster for its weak ones
    order = np.lexsort((-counts, ~strong, o))
    first = np.r_[True, o[order][1:] != o[order][:-1]]
    home_online, home_cluster, home_strong = o[order][first], c[order][first], strong[order][first]
    fresh = np.flatnonzero(~home_strong)
    home_cluster[fresh] = sizes.size + np.arange(fresh.size)
    is_weak = sizes[cluster[member]] <= weak
    moved = member[is_weak]
    cluster[moved] = home_cluster[np.searchsorted(home_online, online[moved])]
    return np.unique(cluster, return_inverse=True)[1].reshape(-1) - (1 if (cluster < 0).any() else 0)


def _table_voxels(table: VoxelTable, voxels) -> np.ndarray:
    """Per voxel of ``table``, its index in ``voxels.keys`` (sorted), -1 for voxels no object kept (one
    sorted search over distinct voxels instead of one per key row)."""
    if voxels.keys.size == 0:
        return np.full(table.keys.size, -1, np.int64)
    at = np.minimum(np.searchsorted(voxels.keys, table.keys), voxels.keys.size - 1)
    return np.where(voxels.keys[at] == table.keys, at, -1)


def _table_objects(voxels, table_voxel: np.ndarray) -> np.ndarray:
    """Per voxel of the ``VoxelTable``, its (dense) refined object, -1 for voxels no object kept;
    ``table_voxel``: ``_table_voxels`` of that table."""
    if voxels.keys.size == 0:
        return table_voxel
    return np.where(table_voxel >= 0, voxels.object[np.maximum(table_voxel, 0)], -1)


def _segment_objects(seg_rows, table: VoxelTable, voxels, n_segments, table_voxel: np.ndarray) -> np.ndarray:
    """Per segment, the (dense) refined object holding most of its voxels, -1 if none holds any."""
    if voxels.keys.size == 0:
        return np.full(n_segments, -1, np.int64)
    row_object = _table_objects(voxels, table_voxel)[table.of_seg]
    hit = row_object >= 0
    return _majority(seg_rows[hit], row_object[hit], n_segments)


def _inherit_ids(segment_object, online, sizes, n_obj, tracker) -> np.ndarray:
    """Id of each dense refined object: the longest-lived online id among those holding >= 20% of its
    segment voxels, each id used once (largest objects choose first); otherwise a fresh reserved id."""
    names = np.full(n_obj, -1, np.int64)
    mine = segment_object >= 0
    if not mine.any():
        names[:] = tracker.objects.create(n_obj)
        return names
    base = int(online.max()) + 1
    codes, inverse = np.unique(segment_object[mine] * base + online[mine], return_inverse=True)
    weight = np.bincount(inverse.reshape(-1), weights=sizes[mine])
    obj, cand = np.divmod(codes, base)
    total = np.bincount(obj, weights=weight, minlength=n_obj)
    used = set()
    num_obs = tracker.objects.num_obs
    for o in np.argsort(-total, kind="stable"):
        pick = (obj == o) & (weight >= 0.2 * total[o])
        for c in cand[pick][np.argsort(-num_obs[cand[pick]], kind="stable")]:
            if int(c) not in used:
                names[o] = c
                used.add(int(c))
                break
    fresh = np.flatnonzero(names < 0)
    names[fresh] = tracker.objects.create(fresh.size)
    return names


def _object_map(voxels, names, cluster, records, tracker, config, table: VoxelTable,
                table_voxel: np.ndarray) -> ObjectMap:
    """Objects with the statistics of the cluster each came from: mean mask score, distinct frames, and
    the detection consistency (those frames over the frames whose surface showed the object)."""
    member = cluster >= 0
    n_cluster = max(int(cluster.max(initial=-1)), int(voxels.origin.max(initial=-1))) + 1
    c, frames = cluster[member], records.frame.view[member]
    count = np.maximum(np.bincount(c, minlength=n_cluster), 1)
    score = np.bincount(c, weights=records.score.view[member], minlength=n_cluster) / count
    structure = np.bincount(c, weights=records.structure.view[member], minlength=n_cluster) > 0.5 * count
    base = int(frames.max(initial=0)) + 1
    num_obs = np.bincount(np.unique(c * base + frames) // base, minlength=n_cluster)
    origin = voxels.origin
    order = np.argsort(names)
    seen = _frames_seeing(voxels, tracker, table, table_voxel)
    consistency = num_obs[origin] / np.maximum(seen, num_obs[origin])
    confidence = observation_confidence(score[origin], num_obs[origin], consistency, np.bincount(voxels.object),
                                        saturation=tracker.config.confidence_frames,
                                        voxel_scale=tracker.config.confidence_voxels)
    return ObjectMap(voxels.keys, names[voxels.object], names[order], confidence[order], num_obs[origin][order],
                     structure[origin][order], tracker.voxel_size)


def _frames_seeing(voxels, tracker, table: VoxelTable, table_voxel: np.ndarray) -> np.ndarray:
    """Per (dense) object, the frames whose observed surface held enough of its voxels (the tracker's
    ``min_visible``, or a tenth of the object)."""
    n_obj = voxels.origin.size
    frame_rows, keys = tracker.surfaces.all_keys()
    if voxels.keys.size == 0 or keys.size == 0:
        return np.zeros(n_obj, np.int64)
    row_object = _table_objects(voxels, table_voxel)[table.of_surf]
    hit = row_object >= 0
    n_frames = len(tracker.surfaces)
    codes, counts = unique_counts(row_object[hit] * n_frames + frame_rows[hit], n_obj * n_frames)
    obj = codes // n_frames
    size = np.bincount(voxels.object, minlength=n_obj)
    enough = counts >= np.maximum(tracker.config.association.min_visible, 0.1 * size[obj])
    return np.bincount(obj[enough], minlength=n_obj)


def _named(segment_object: np.ndarray, names: np.ndarray) -> np.ndarray:
    """Each segment's refined object id (-1: its voxels went to no object; all of them when none was kept)."""
    if names.size == 0:
        return np.full(segment_object.shape, -1, np.int64)
    return np.where(segment_object >= 0, names[np.maximum(segment_object, 0)], -1)


def _remap(online, segment_named, sizes) -> dict:
    """Online id -> refined id holding most of its segments' voxels."""
    mine = segment_named >= 0
    if not mine.any():
        return {}
    base = int(segment_named.max()) + 1
    codes, inverse = np.unique(online[mine] * base + segment_named[mine], return_inverse=True)
    weight = np.bincount(inverse.reshape(-1), weights=sizes[mine])
    src, dst = np.divmod(codes, base)
    order = np.lexsort((-weight, src))
    first = np.r_[True, src[order][1:] != src[order][:-1]]
    return dict(zip(src[order][first].tolist(), dst[order][first].tolist()))
