"""The faster per-frame paths give the same results as the plain ones: the label store's per-label
candidate rows, column-wise surface keys, the hash index's first probe, and the Mapper reusing the
tracker's voxel lookup."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from lift3d.labels import LabelStore, LabelStoreConfig
from lift3d.voxels import VoxelIndex, cells_of_points, pack_keys, point_cells, unique_cell_keys, unique_point_keys
from scene.config import MapperConfig
from scene.datasets.synthetic import make_scene
from scene.pipeline import Mapper


def _holders_by_scan(store: LabelStore, label: int) -> np.ndarray:
    return np.flatnonzero((store._labels[: len(store.index)] == label).any(1))


def test_label_rows_index_matches_a_full_scan():
    rng = np.random.default_rng(3)
    store = LabelStore(LabelStoreConfig(initial_slots=1, max_labels_per_voxel=3))  # small: labels get evicted
    keys = rng.integers(0, 400, 4000)
    for start in range(0, keys.size, 500):
        store.add(keys[start:start + 500], rng.integers(0, 30, 500))
        if start % 1000 == 0:
            store.merge(np.array([rng.integers(1, 30)]), int(rng.integers(0, 30)))
    store.relabel(np.array([2, 5, 7]), np.array([9, 9, 2]))
    store.remove(np.array([11]))
    restored = LabelStore.from_arrays(store.to_arrays())
    for s in (store, restored):
        for label in range(31):
            assert np.array_equal(s._rows_holding(np.array([label])), _holders_by_scan(s, label))
        np.testing.assert_array_equal(s._rows_holding(np.arange(31)), np.flatnonzero((s._labels[: len(s.index)] >= 0).any(1)))


def test_unique_keys_match_numpy():
    rng = np.random.default_rng(0)
    for n in (0, 1, 50, 3000):
        points = (rng.normal(size=(n, 3)) * 2).astype(np.float32)
        expected = np.unique(pack_keys(cells_of_points(points, 0.02)))
        np.testing.assert_array_equal(unique_point_keys(points, 0.02), expected)
        np.testing.assert_array_equal(unique_cell_keys(cells_of_points(points, 0.02)), expected)
        cells = point_cells(points, 0.02)  # the same keys, and each point's row among them
        np.testing.assert_array_equal(cells.keys, expected)
        np.testing.assert_array_equal(cells.keys[cells.of_point], pack_keys(cells_of_points(points, 0.02)))


def test_index_lookup_matches_a_dict():
    rng = np.random.default_rng(1)
    index, reference = VoxelIndex(initial_capacity=16), {}
    for _ in range(5):
        keys = rng.integers(0, 1 << 40, 3000)
        for key, row in zip(keys.tolist(), index.insert(keys).tolist()):
            assert reference.setdefault(key, row) == row
    probe = np.concatenate([np.array(list(reference)), rng.integers(0, 1 << 40, 1000)])
    np.testing.assert_array_equal(index.lookup(probe), [reference.get(k, -1) for k in probe.tolist()])


def test_mapper_reusing_the_tracker_lookup_builds_the_same_map():
    frames = list(make_scene("room", seed=1, noisy=True, num_frames=40, width=160, height=120).source(stop=6))
    config = MapperConfig()
    maps = []
    for reuse in (True, False):
        mapper = Mapper(config)
        if not reuse:
            step = mapper.tracker.step
            mapper.tracker.step = lambda *a, **k: replace(step(*a, **k), voxels=None)
        for frame in frames:
            mapper.integrate(frame)
        maps.append({o.id: o for o in mapper.map})
    assert maps[0].keys() == maps[1].keys() and maps[0]
    for obj in maps[0]:
        np.testing.assert_array_equal(maps[0][obj].points, maps[1][obj].points)
        np.testing.assert_array_equal(maps[0][obj].colors, maps[1][obj].colors)


def test_lifting_a_partition_image_equals_lifting_its_exclusive_masks():
    from lift3d.lift import LiftConfig, lift_frame, lift_partition
    from lift3d.clean import CleanConfig
    from segment2d.factory import make_generator
    from tracking.pipeline import exclusive_masks, exclusive_partition
    from tracking.surface import known_surface

    scene = make_scene("room", seed=2, noisy=True, num_frames=4, width=320, height=240)
    generator = make_generator("geometric")
    config = LiftConfig(clean=CleanConfig(drop_overlaps=False))
    for index in range(0, 4, 2):
        frame = scene.frame(index)
        masks = generator.generate(frame)
        exclusive = exclusive_masks(masks)
        selected, boxes, owner = exclusive_partition(masks)
        np.testing.assert_array_equal(boxes, exclusive.boxes)
        expected = lift_frame(frame, exclusive, config)
        for known in (None, known_surface(frame, config.voxel_size, config.stride, config.depth_range)):
            got = lift_partition(frame, owner, masks.scores[selected], boxes, config, known)
            assert len(got) == len(expected) > 5
            for a, b in zip(got, expected):
                assert (a.mask_index, a.part, a.num_points) == (b.mask_index, b.part, b.num_points)
                np.testing.assert_array_equal(a.voxel_keys, b.voxel_keys)
                np.testing.assert_array_equal(a.voxel_counts, b.voxel_counts)
                np.testing.assert_allclose(a.points, b.points, atol=1e-5)
                np.testing.assert_allclose(a.centroid, b.centroid, atol=1e-6)
