"""The voxel x label count store against a brute-force dictionary reference."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from lift3d import LabelStore, LabelStoreConfig


class Reference:
    """{(key, label): count}: the obvious, slow model of the store."""

    def __init__(self):
        self.counts = Counter()

    def add(self, keys, labels, weights):
        for k, l, w in zip(keys.tolist(), labels.tolist(), weights.tolist()):
            self.counts[(k, l)] += w

    def overlap(self, keys, min_count=1):
        out = Counter()
        for k in set(keys.tolist()):
            for (kk, l), c in self.counts.items():
                if kk == k and c >= min_count:
                    out[l] += 1
        return out

    def relabel(self, mapping):
        merged = Counter()
        for (k, l), c in self.counts.items():
            merged[(k, mapping.get(l, l))] += c
        self.counts = merged

    def voxels_per_label(self):
        out = Counter()
        for (k, l), c in self.counts.items():
            if c > 0:
                out[l] += 1
        return out


def random_segments(rng, n_segments, n_keys=400, n_labels=12):
    for _ in range(n_segments):
        keys = rng.choice(n_keys, size=rng.integers(1, 60), replace=False).astype(np.int64) * 7919
        yield keys, int(rng.integers(0, n_labels))


def filled(rng, n_segments=80, config=LabelStoreConfig(initial_slots=1, max_labels_per_voxel=16)):
    store, ref = LabelStore(config), Reference()
    for keys, label in random_segments(rng, n_segments):
        weights = rng.integers(1, 3, keys.size)
        store.add(keys, label, weights)
        ref.add(keys, np.full(keys.size, label), weights)
    return store, ref


def as_dict(labels, counts):
    return dict(zip(labels.tolist(), counts.tolist()))


def test_overlap_counts_match_brute_force():
    rng = np.random.default_rng(0)
    store, ref = filled(rng)
    for _ in range(10):
        query = rng.choice(500, size=80, replace=False).astype(np.int64) * 7919
        for min_count in (1, 3):
            assert as_dict(*store.overlap(query, min_count)) == dict(ref.overlap(query, min_count))
    voxels = ref.voxels_per_label()
    labels = np.arange(14)
    np.testing.assert_array_equal(store.voxel_count(labels), [voxels.get(l, 0) for l in labels])
    np.testing.assert_array_equal(store.labels, sorted(voxels))


def test_batched_add_and_overlaps_equal_one_at_a_time():
    rng = np.random.default_rng(1)
    segments = list(random_segments(rng, 30))
    one, batched = LabelStore(), LabelStore()
    for keys, label in segments:
        one.add(keys, label)
    batched.add(np.concatenate([k for k, _ in segments]), np.concatenate([np.full(k.size, l) for k, l in segments]))
    keys = np.concatenate([k for k, _ in segments])
    groups = np.concatenate([np.full(k.size, i) for i, (k, _) in enumerate(segments)])
    g, l, c = batched.overlaps(keys, groups)
    for i, (k, _) in enumerate(segments):
        assert as_dict(l[g == i], c[g == i]) == as_dict(*one.overlap(k))


def test_relabel_and_merge_add_counts_like_the_reference():
    rng = np.random.default_rng(2)
    store, ref = filled(rng)
    store.relabel(np.array([3, 5]), np.array([7, 7]))
    ref.relabel({3: 7, 5: 7})
    store.merge(np.array([1, 2]), 0)
    ref.relabel({1: 0, 2: 0})
    all_keys = np.arange(400, dtype=np.int64) * 7919
    for min_count in (1, 2, 4):
        assert as_dict(*store.overlap(all_keys, min_count)) == dict(ref.overlap(all_keys, min_count))
    voxels = ref.voxels_per_label()
    np.testing.assert_array_equal(store.voxel_count(np.arange(14)), [voxels.get(l, 0) for l in range(14)])
    assert not set(store.labels.tolist()) & {1, 2, 3, 5}
    keys = all_keys[:50]
    labels, slot_counts = store.labels_at(keys)
    for k, row_l, row_c in zip(keys.tolist(), labels, slot_counts):
        assert sorted(l for l in row_l.tolist() if l >= 0) == sorted(l for (kk, l) in ref.counts if kk == k)


def test_remove_deletes_every_observation_of_a_label():
    rng = np.random.default_rng(3)
    store, ref = filled(rng)
    store.remove(np.array([4, 6]))
    all_keys = np.arange(400, dtype=np.int64) * 7919
    labels, _ = store.overlap(all_keys)
    assert 4 not in labels and 6 not in labels
    np.testing.assert_array_equal(store.voxel_count(np.array([4, 6])), [0, 0])
    assert store.keys_of(4).size == 0
    expected = {l: c for l, c in ref.overlap(all_keys).items() if l not in (4, 6)}
    assert as_dict(*store.overlap(all_keys)) == expected


def test_keys_of_and_dominant_label():
    store = LabelStore()
    store.add(np.array([10, 11, 12]), 1)
    store.add(np.array([11, 12]), 2, weights=np.array([5, 1]))
    np.testing.assert_array_equal(store.keys_of(2), [11, 12])
    np.testing.assert_array_equal(store.keys_of(2, min_count=2), [11])
    labels, counts = store.dominant_label(np.array([10, 11, 12, 99]))
    np.testing.assert_array_equal(labels, [1, 2, 1, -1])
    np.testing.assert_array_equal(counts, [1, 5, 1, 0])


def test_full_voxels_evict_their_least_observed_label():
    store = LabelStore(LabelStoreConfig(initial_slots=1, max_labels_per_voxel=2))
    key = np.array([42])
    store.add(key, 1, weights=5)
    store.add(key, 2, weights=1)
    store.add(key, 3, weights=2)  # evicts label 2 (count 1)
    labels, counts = store.labels_at(key)
    assert sorted(zip(labels[0].tolist(), counts[0].tolist())) == [(1, 5), (3, 2)]
    np.testing.assert_array_equal(store.voxel_count(np.array([1, 2, 3])), [1, 0, 1])


def test_bad_labels_are_rejected():
    store = LabelStore()
    with pytest.raises(ValueError, match="labels must lie"):
        store.add(np.array([1, 2]), -3)
    with pytest.raises(TypeError, match="integers"):
        store.add(np.array([1]), np.array([0.5]))
    with pytest.raises(ValueError, match="distinct"):
        store.relabel(np.array([1, 1]), np.array([2, 3]))


def test_arrays_round_trip_keeps_every_answer():
    rng = np.random.default_rng(5)
    store, _ = filled(rng)
    restored = LabelStore.from_arrays({k: v.copy() for k, v in store.to_arrays().items()})
    all_keys = np.arange(400, dtype=np.int64) * 7919
    for min_count in (1, 2):
        assert as_dict(*restored.overlap(all_keys, min_count)) == as_dict(*store.overlap(all_keys, min_count))
    np.testing.assert_array_equal(restored.voxel_count(np.arange(14)), store.voxel_count(np.arange(14)))
    np.testing.assert_array_equal(restored.index.lookup(all_keys), store.index.lookup(all_keys))
    restored.add(all_keys[:5], 3)  # still usable
    with pytest.raises(ValueError, match="missing"):
        LabelStore.from_arrays({"keys": all_keys})
