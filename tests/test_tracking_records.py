"""The tracker's records bounded by the map (``TrackerConfig.record_views``): a long sequence over the same
scene stops growing them, the frames kept are recorded exactly as without a bound, the global pass still
separates the objects, and a sequence below the budget is recorded in full."""
from __future__ import annotations

import numpy as np

from test_tracking_online import Boxes, frame_at, gt_masks, sweep, track
from test_tracking_refine import SMALL, _surface_points, _valid_pixels
from tracking import OnlineTracker, TrackerConfig, refine
from tracking.records import SurfaceRecords, redundant_frames

POSES = sweep(10, start=0.0, step=0.03)


def _looped(tracker: OnlineTracker, passes: int, each=None):
    """Two boxes before a wall, the same ten poses ``passes`` times over (frame indices increasing);
    ``each(tracker)`` after every frame. Returns the last frame."""
    scene = Boxes.row(2, spacing=0.5)
    for i in range(passes * len(POSES)):
        frame = frame_at(scene, i, POSES[i % len(POSES)])
        track(tracker, frame, gt_masks(frame)[0])
        if each is not None:
            each(tracker)
    return frame


def _record_bytes(tracker: OnlineTracker) -> int:
    return tracker.segments.nbytes() + tracker.surfaces.nbytes()


def test_records_stop_growing_on_a_long_sequence_over_one_scene():
    tracker = OnlineTracker(TrackerConfig(record_views=3.0))
    sizes, budgets, nbytes = [], [], []

    def measure(t):
        sizes.append(t.surfaces.keys.size)
        budgets.append(3.0 * len(t.labels.index))
        nbytes.append(_record_bytes(t))

    _looped(tracker, 6, measure)
    assert np.all(np.array(sizes) <= np.array(budgets))
    assert tracker.frames_forgotten > 0 and len(tracker.surfaces) < 60
    assert nbytes[-1] == nbytes[29]  # flat over the last three passes
    unbounded = OnlineTracker(TrackerConfig(record_views=None))
    _looped(unbounded, 6)
    assert _record_bytes(unbounded) > 2 * nbytes[-1]


def test_thinned_records_are_the_kept_frames_records_and_consistent():
    thinned, full = OnlineTracker(TrackerConfig(record_views=3.0)), OnlineTracker(TrackerConfig(record_views=None))
    _looped(thinned, 3)
    _looped(full, 3)
    kept = thinned.surfaces.frame.view
    assert 0 < kept.size < len(full.surfaces)
    # every segment's frame has its surface; offsets close the arrays
    assert np.isin(thinned.segments.frame.view, kept).all()
    assert thinned.segments.offsets.view[-1] == thinned.segments.keys.size == thinned.segments.counts.size
    assert thinned.surfaces.offsets.view[-1] == thinned.surfaces.keys.size
    # the kept frames' rows are those the unbounded tracker recorded for them, in order
    segment_rows = np.flatnonzero(np.isin(full.segments.frame.view, kept))
    for name in ("frame", "mask", "part", "object", "score", "structure", "box"):
        np.testing.assert_array_equal(getattr(thinned.segments, name).view, getattr(full.segments, name).view[segment_rows])
    np.testing.assert_array_equal(thinned.segments.keys.view,
                                  np.concatenate([full.segments.keys_of(i) for i in segment_rows]))
    surface_rows = np.flatnonzero(np.isin(full.surfaces.frame.view, kept))
    _, full_keys = full.surfaces.all_keys()
    rows, _ = full.surfaces.all_keys()
    np.testing.assert_array_equal(thinned.surfaces.keys.view, full_keys[np.isin(rows, surface_rows)])
    # the online map and the frames each voxel was seen in do not depend on the records kept
    assert np.isin(thinned.resolve(thinned.segments.object.view), thinned.objects.alive).all()
    keys = full.observed_keys()
    np.testing.assert_array_equal(thinned.observed_keys(), keys)
    np.testing.assert_array_equal(thinned.seen_counts(keys), full.seen_counts(keys))
    np.testing.assert_array_equal(thinned.object_map().keys, full.object_map().keys)


def test_global_pass_after_thinning_keeps_the_boxes_and_the_wall_apart():
    tracker = OnlineTracker(TrackerConfig(record_views=3.0))
    frame = _looped(tracker, 4)
    assert tracker.frames_forgotten > 0
    labels = refine(tracker, SMALL).object_map.label_points(_surface_points(frame))
    truth = frame.instance_ids.reshape(-1)[_valid_pixels(frame)]
    majority = {}
    for inst in (0, 1, 2):
        values, counts = np.unique(labels[truth == inst], return_counts=True)
        assert values[counts.argmax()] >= 0 and counts.max() >= 0.9 * counts.sum(), (inst, dict(zip(values, counts)))
        majority[inst] = values[counts.argmax()]
    assert len(set(majority.values())) == 3


def test_a_sequence_below_the_budget_is_recorded_and_refined_as_without_one():
    bounded, full = OnlineTracker(), OnlineTracker(TrackerConfig(record_views=None))
    assert bounded.config.record_views is not None
    _looped(bounded, 1)
    _looped(full, 1)
    assert bounded.frames_forgotten == 0 and len(bounded.surfaces) == len(POSES)
    np.testing.assert_array_equal(bounded.segments.keys.view, full.segments.keys.view)
    np.testing.assert_array_equal(bounded.surfaces.keys.view, full.surfaces.keys.view)
    a, b = refine(bounded, SMALL).object_map, refine(full, SMALL).object_map
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.object, b.object)


def test_redundant_frames_forget_repeated_views_before_the_only_view_of_a_surface():
    surfaces = SurfaceRecords()
    seen_thrice, seen_once = np.arange(100, dtype=np.int64), np.arange(100, 200, dtype=np.int64)
    for index, keys in ((10, seen_thrice), (11, seen_thrice), (12, seen_thrice), (13, seen_once)):
        surfaces.append(index, keys)
    assert redundant_frames(surfaces, 400).frames.size == 0
    np.testing.assert_array_equal(redundant_frames(surfaces, 300).frames, [10])  # ties: the oldest first
    thinning = redundant_frames(surfaces, 200)
    forgotten = thinning.frames
    assert forgotten.size == 2 and set(forgotten.tolist()) < {10, 11, 12}  # one view of each surface left
    np.testing.assert_array_equal(thinning.keys, seen_thrice)
    np.testing.assert_array_equal(thinning.views, np.full(100, 2))
    surfaces.drop_frames(forgotten)
    np.testing.assert_array_equal(surfaces.frame.view, np.setdiff1d([10, 11, 12, 13], forgotten))
    np.testing.assert_array_equal(surfaces.keys.view, np.r_[seen_thrice, seen_once])
