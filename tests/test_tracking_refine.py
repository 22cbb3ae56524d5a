"""Global refinement: view consensus reunites a split object, keeps the longest-lived id, filters."""
from __future__ import annotations

import numpy as np
from scipy import sparse

from lift3d.voxels import pack_keys
from test_tracking_online import Boxes, frame_at, gt_masks, sweep, track
from tracking import AssociationConfig, OnlineTracker, RefineConfig, TrackerConfig, refine
from tracking.consensus import ConsensusInput, VoxelTable, _heaviest_units, view_consensus
from tracking.postfilter import filter_objects

SMALL = RefineConfig(min_area=0.008, min_observers=2)


def _split_box_tracker(n_frames: int = 12, split_frames: int = 1):
    """A box seen as two halves in the first frames, as one mask later; online merging is disabled
    so the online map keeps the two halves apart."""
    scene = Boxes.row(1, size=0.6)
    config = TrackerConfig(association=AssociationConfig(merge_frames=10**6))
    tracker = OnlineTracker(config)
    for i, pose in enumerate(sweep(n_frames, start=0.1, step=0.02)):
        frame = frame_at(scene, i, pose)
        masks, owners = gt_masks(frame, split={1: "rows"} if i < split_frames else None)
        result, segments = track(tracker, frame, masks)
        if i == 0:
            halves = sorted(int(o) for s, o in zip(segments, result.object_ids) if owners[s.mask_index] == 1)
    return tracker, halves, frame


def test_global_refinement_reunites_a_split_object_under_the_longest_lived_id():
    tracker, (older, younger), frame = _split_box_tracker()
    online = tracker.object_map()
    box_points = _box_surface_points(frame)
    online_labels = online.label_points(box_points)
    assert {older, younger} <= set(online_labels.tolist())  # online: still two objects on the box
    assert tracker.objects.num_obs[older] > tracker.objects.num_obs[younger]

    result = refine(tracker, SMALL)
    labels = result.object_map.label_points(box_points)
    values, counts = np.unique(labels, return_counts=True)
    assert values[counts.argmax()] == older and counts.max() >= 0.95 * labels.size
    assert result.remap[younger] == older and result.remap[older] == older
    assert younger not in result.object_map.ids.tolist()


def test_a_refinement_that_keeps_no_object_gives_an_empty_map():
    tracker, _, _ = _split_box_tracker(n_frames=4)
    result = refine(tracker, RefineConfig(min_area=100.0))  # no surface of 100 m^2: every object dropped
    assert len(result.object_map) == 0 and result.object_map.keys.size == 0
    assert (result.segment_object == -1).all() and result.segment_object.size == len(tracker.segments)


def test_refinement_keeps_separate_objects_apart_and_wall_whole():
    tracker, frame = _two_boxes_and_wall_tracked()
    result = refine(tracker, SMALL)
    depth_ids = frame.instance_ids
    points, truth = _surface_points(frame), depth_ids.reshape(-1)[_valid_pixels(frame)]
    labels = result.object_map.label_points(points)
    for inst in (0, 1, 2):
        values, counts = np.unique(labels[truth == inst], return_counts=True)
        assert counts.max() >= 0.9 * counts.sum(), (inst, dict(zip(values, counts)))
    majority = {inst: np.bincount(np.maximum(labels[truth == inst], 0)).argmax() for inst in (0, 1, 2)}
    assert len(set(majority.values())) == 3


def test_view_consensus_joins_masks_that_frames_agree_on_and_leaves_out_undersegmenting_ones():
    # Cells along x: object A = cells 0..29, object B = cells 50..79; every frame sees both.
    a, b = np.arange(30), np.arange(50, 80)
    seg_cells, seg_frame, seg_mask = [], [], []
    for f in range(6):
        seg_cells += [a[: 15 + 5 * (f % 3)], b]  # A seen partly (a different part each frame), B whole
        seg_frame += [f, f]
        seg_mask += [0, 1]
    seg_cells.append(np.concatenate([a, b]))  # an under-segmenting mask covering both, in a 7th frame
    seg_frame.append(6)
    seg_mask.append(0)
    rows = np.concatenate([np.full(c.size, i) for i, c in enumerate(seg_cells)])
    keys = pack_keys(np.stack([np.concatenate(seg_cells), np.zeros(rows.size, int), np.zeros(rows.size, int)], 1))
    surf = pack_keys(np.stack([np.r_[a, b], np.zeros(60, int), np.zeros(60, int)], 1))
    data = ConsensusInput(rows, keys, np.array(seg_frame), np.repeat(np.arange(7), 60), np.tile(surf, 7), 7,
                          np.array(seg_mask))
    result = view_consensus(data, RefineConfig(cell_factor=1, min_observers=2, observe_cells=5))
    cluster = result.cluster
    assert result.underseg.tolist() == [False] * 12 + [True]
    assert cluster[12] == -1
    assert len(set(cluster[0:12:2])) == 1 and len(set(cluster[1:12:2])) == 1
    assert cluster[0] != cluster[1]


def test_post_filters_drop_rare_voxels_split_parts_and_absorb_contained_objects():
    cells = np.zeros((40, 3), np.int64)
    cells[:20, 0] = np.arange(20)  # cluster 0, part one: x 0..19
    cells[20:, 0] = np.arange(60, 80)  # cluster 0, part two far away: x 60..79
    keys = pack_keys(cells)
    rows = np.zeros(40, np.int64)
    # cluster 0 detected 3 times everywhere; cluster 1 detects x 0..4 once (contained); one rare voxel
    rep_keys = np.concatenate([keys, keys, keys, keys[:5], pack_keys(np.array([[200, 0, 0]]))])
    rep_rows = np.concatenate([rows, rows, rows, np.ones(5, np.int64), [0]])
    seen = np.full(rep_keys.size, 3)
    seen[-1] = 10  # detected once in ten views: dropped
    out = filter_objects(rep_rows, rep_keys, seen, 0.02, RefineConfig(min_area=0.002, split_gap=0.1, detection_ratio=0.3))
    assert out.keys.size == 40
    assert np.unique(out.object).size == 2  # the two far parts are separate objects
    assert set(out.origin.tolist()) == {0}  # cluster 1 (contained in 0) was absorbed


def _valid_pixels(frame):
    return np.flatnonzero(frame.depth.reshape(-1) > 0)


def _surface_points(frame):
    from lift3d.backproject import backproject_pixels

    return backproject_pixels(frame.depth, frame.K, frame.pose, _valid_pixels(frame))


def _box_surface_points(frame):
    pixels = _valid_pixels(frame)
    return _surface_points(frame)[frame.instance_ids.reshape(-1)[pixels] == 1]


def test_voxel_table_matches_the_tracker_seen_counts_and_the_row_keys():
    tracker, _, _ = _split_box_tracker(n_frames=6)
    seg_rows, seg_keys = tracker.segments.all_keys()
    surf_keys = tracker.surfaces.all_keys()[1]
    table = VoxelTable.build(seg_keys, surf_keys)
    assert np.array_equal(table.keys, np.unique(np.concatenate([seg_keys, surf_keys])))
    assert np.array_equal(table.keys[table.of_seg], seg_keys) and np.array_equal(table.keys[table.of_surf], surf_keys)
    assert np.array_equal(table.seen[table.of_seg], tracker.seen_counts(seg_keys))
    frame_rows = tracker.surfaces.all_keys()[0]
    by_frame = sum(np.isin(table.keys, surf_keys[frame_rows == f]).astype(int) for f in range(len(tracker.surfaces)))
    assert np.array_equal(table.seen, by_frame) and table.seen.max() > 1


def test_exclusive_units_give_each_frame_cell_to_its_heaviest_mask_ties_to_the_first():
    # frame 0: masks 0, 1; frame 1: mask 2. Cell 0: mask 0 has 1 row, mask 1 has 3 -> mask 1.
    # Cell 1: masks 0 and 1 tie (2 rows each) -> mask 0. Mask 2 (another frame) keeps both its cells.
    unit = np.array([0, 1, 1, 1, 0, 0, 1, 1, 2, 2])
    cell = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1])
    counts = sparse.csr_matrix((np.ones(unit.size), (unit, cell)), shape=(3, 2))  # duplicates summed
    U = _heaviest_units(counts, np.array([0, 0, 1])).toarray()
    assert U.tolist() == [[0, 1], [1, 0], [1, 1]]


def _two_part_views(together_frames: set, n_frames: int = 10):
    """Cells along x: part A = cells 0..29, part B = cells 30..59, every frame sees both. In the frames
    of ``together_frames`` one mask holds A and B, in the others two masks hold one part each; every
    segment carries the same online object (the online step put A and B together)."""
    a, b = np.arange(30), np.arange(30, 60)
    seg_cells, seg_frame, seg_mask = [], [], []
    for f in range(n_frames):
        parts = [np.r_[a, b]] if f in together_frames else [a, b]
        seg_cells += parts
        seg_frame += [f] * len(parts)
        seg_mask += list(range(len(parts)))
    rows = np.concatenate([np.full(c.size, i) for i, c in enumerate(seg_cells)])
    keys = pack_keys(np.stack([np.concatenate(seg_cells), np.zeros(rows.size, int), np.zeros(rows.size, int)], 1))
    surf = pack_keys(np.stack([np.r_[a, b], np.zeros(60, int), np.zeros(60, int)], 1))
    seg_frame = np.array(seg_frame)
    data = ConsensusInput(rows, keys, seg_frame, np.repeat(np.arange(n_frames), 60), np.tile(surf, n_frames),
                          n_frames, np.array(seg_mask))
    part_a = np.array([c[0] == 0 and c.size == 30 for c in seg_cells])
    part_b = np.array([c[0] == 30 for c in seg_cells])
    return data, part_a, part_b


def _parts_joined(data, part_a, part_b, **config) -> bool:
    cluster = view_consensus(data, RefineConfig(cell_factor=1, min_observers=2, observe_cells=5, **config)).cluster
    assert len(set(cluster[part_a])) == 1 and len(set(cluster[part_b])) == 1
    return cluster[part_a][0] == cluster[part_b][0]


def test_single_segments_join_a_part_most_views_hold_and_not_a_merge_few_views_made():
    # held together in 8 of 10 views (a part the generator splits now and then): consensus from single
    # segments joins the parts, since the two views that cut the whole in parts neither hold nor separate it
    often, part_a, part_b = _two_part_views({0, 1, 2, 3, 5, 6, 8, 9})
    assert _parts_joined(often, part_a, part_b)
    # merged by one mask in 1 of 10 views (a 2D merge error the online step followed): from single
    # segments the merge loses; started from the online objects (one object holding both), it survives
    rare, part_a, part_b = _two_part_views({4})
    assert not _parts_joined(rare, part_a, part_b)
    rare.initial = np.zeros(rare.seg_frame.size, np.int64)
    assert _parts_joined(rare, part_a, part_b)


def test_each_segment_row_points_at_its_voxel_in_the_refined_map_and_the_readers_agree_with_a_search():
    from scene.pipeline import _refined_statistics
    from scene.trim import owned_voxels

    tracker, _ = _two_boxes_and_wall_tracked()
    result = refine(tracker, SMALL)
    rows, keys = tracker.segments.all_keys()
    objects = result.object_map
    found = result.row_voxel >= 0
    assert result.row_voxel.shape == keys.shape and 0 < found.sum() < keys.size  # the filters dropped some voxels
    np.testing.assert_array_equal(objects.keys[result.row_voxel[found]], keys[found])
    assert not np.isin(keys[~found], objects.keys).any()
    searched, given = _refined_statistics(tracker, objects), _refined_statistics(tracker, objects, result.row_voxel)
    for name in searched:
        np.testing.assert_array_equal(searched[name], given[name])
    by_search = owned_voxels(rows, keys, result.segment_object, objects.keys, objects.object)
    by_rows = owned_voxels(rows, keys, result.segment_object, objects.keys, objects.object, result.row_voxel)
    assert by_search[1].any()
    for a, b in zip(by_search, by_rows):
        np.testing.assert_array_equal(a, b)


def _two_boxes_and_wall_tracked() -> tuple[OnlineTracker, object]:
    """Two boxes before a wall, seen in 10 frames with their ground-truth masks: the tracker and the
    last frame."""
    scene = Boxes.row(2, spacing=0.5)
    tracker = OnlineTracker()
    for i, pose in enumerate(sweep(10, start=0.0, step=0.03)):
        frame = frame_at(scene, i, pose)
        track(tracker, frame, gt_masks(frame)[0])
    return tracker, frame
