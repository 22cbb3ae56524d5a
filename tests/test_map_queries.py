"""InstanceMap queries against brute force on generated maps (random blobs of points as objects)."""
import numpy as np
import pytest

from scene.datasets.geometry import look_at
from scene.map import InstanceMap, MapMetadata, MapObject, oriented_box


def random_map(seed: int = 0, n_objects: int = 25, voxel_size: float = 0.03) -> InstanceMap:
    """Gaussian blobs of 20-300 points with random shapes in a 4 m cube; ids are sparse."""
    rng = np.random.default_rng(seed)
    imap = InstanceMap(MapMetadata(voxel_size=voxel_size))
    ids = rng.choice(1000, size=n_objects, replace=False)
    for object_id in ids:
        n = int(rng.integers(20, 300))
        scale = rng.uniform(0.03, 0.3, size=3)
        points = rng.normal(size=(n, 3)) * scale + rng.uniform(0.0, 4.0, size=3)
        imap.add(MapObject(
            int(object_id), points, rng.integers(0, 256, (n, 3)), num_observations=int(rng.integers(0, 20)),
            confidence=float(rng.random()), is_structure=bool(rng.random() < 0.2),
        ))
    return imap


def all_points(imap: InstanceMap) -> tuple[np.ndarray, np.ndarray]:
    points = np.concatenate([o.points for o in imap]).astype(np.float64)
    owners = np.concatenate([np.full(o.num_points, o.id) for o in imap])
    return points, owners


def brute_object_distances(imap: InstanceMap, xyz) -> dict[int, float]:
    return {o.id: float(np.linalg.norm(o.points.astype(np.float64) - xyz, axis=1).min()) for o in imap}


@pytest.fixture(scope="module")
def imap() -> InstanceMap:
    return random_map()


@pytest.mark.parametrize("n_queries", [100, 2000])  # per-object trees / one tree over all points
def test_label_points_and_object_at_match_brute_force(n_queries):
    imap = random_map()
    rng = np.random.default_rng(1)
    points, owners = all_points(imap)
    half = n_queries // 2
    queries = np.concatenate([points[rng.choice(len(points), half)] + rng.normal(0, 0.03, (half, 3)),
                              rng.uniform(-0.5, 4.5, (half, 3))])
    distances = np.linalg.norm(queries[:, None, :] - points[None, :, :], axis=2)
    nearest = distances.argmin(axis=1)
    expected = np.where(distances.min(axis=1) <= 0.05, owners[nearest], -1)
    labels = imap.label_points(queries, 0.05)
    np.testing.assert_array_equal(labels, expected)
    assert 0 < np.sum(labels >= 0) < len(queries)  # both hits and misses were exercised
    for q, e in zip(queries[:50], expected[:50]):
        assert imap.object_at(q, max_distance=0.05) == (None if e < 0 else e)


def test_within_radius_matches_brute_force(imap):
    rng = np.random.default_rng(2)
    for centre, radius in zip(rng.uniform(0, 4, (20, 3)), rng.uniform(0.05, 1.5, 20)):
        truth = {i: d for i, d in brute_object_distances(imap, centre).items() if d <= radius}
        ids, distances = imap.within_radius(centre, radius)
        assert set(ids.tolist()) == set(truth)
        np.testing.assert_allclose(distances, [truth[i] for i in ids], rtol=1e-12)
        assert np.all(np.diff(distances) >= 0)


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_nearest_matches_brute_force(imap, k):
    rng = np.random.default_rng(3)
    for centre in rng.uniform(-1, 5, (10, 3)):
        truth = sorted(brute_object_distances(imap, centre).items(), key=lambda item: item[1])[:k]
        ids, distances = imap.nearest(centre, k)
        assert ids.tolist() == [i for i, _ in truth]
        np.testing.assert_allclose(distances, [d for _, d in truth], rtol=1e-12)


def test_in_box_matches_brute_force(imap):
    rng = np.random.default_rng(4)
    intersecting_seen = inside_seen = 0
    for _ in range(30):
        a, b = rng.uniform(-0.5, 4.5, (2, 3))
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        hit = [o.id for o in imap if np.any(np.all((o.points >= lo) & (o.points <= hi), axis=1))]
        inside = [o.id for o in imap if np.all((o.points >= lo) & (o.points <= hi))]
        assert imap.in_box(lo, hi).tolist() == sorted(hit)
        assert imap.in_box(lo, hi, fully_inside=True).tolist() == sorted(inside)
        intersecting_seen += len(hit) - len(inside)
        inside_seen += len(inside)
    assert intersecting_seen > 0 and inside_seen > 0


def test_ray_pick_matches_brute_force(imap):
    rng = np.random.default_rng(5)
    points, owners = all_points(imap)
    radius = imap.metadata.voxel_size
    hits = 0
    targets = np.concatenate([[o.centroid for o in imap], rng.uniform(0, 4, (20, 3))])
    for target in targets:
        origin = rng.uniform(-3, 7, 3)
        direction = (target - origin) / np.linalg.norm(target - origin)
        depth = (points - origin) @ direction
        perpendicular = np.linalg.norm(points - origin - depth[:, None] * direction, axis=1)
        ok = (depth >= 0) & (depth <= 8.0) & (perpendicular <= radius)
        hit = imap.ray_pick(origin, direction * 3.0, max_distance=8.0)  # direction need not be unit
        if not np.any(ok):
            assert hit is None
            continue
        first = np.flatnonzero(ok)[np.argmin(depth[ok])]
        assert hit is not None and hit.id == owners[first]
        assert hit.depth == pytest.approx(depth[first], abs=1e-9)
        np.testing.assert_allclose(hit.point, points[first])
        hits += 1
    assert hits >= len(imap)


def brute_render(imap, K, pose, width, height, point_size, tolerance, min_depth=0.01):
    """Per-point Python loop: the reference z-buffer."""
    world_to_camera = np.linalg.inv(pose)
    depth = np.full((height, width), np.inf)
    ids = np.full((height, width), -1)
    projected = []
    low = -((point_size - 1) // 2)
    for o in imap:
        for p in o.points.astype(np.float64):
            x, y, z = world_to_camera[:3, :3] @ p + world_to_camera[:3, 3]
            if z <= min_depth:
                continue
            u, v = K[0, 0] * x / z + K[0, 2], K[1, 1] * y / z + K[1, 2]
            col, row = int(np.floor(u + 0.5)), int(np.floor(v + 0.5))
            projected.append((o.id, row, col, z))
            for dr in range(low, low + point_size):
                for dc in range(low, low + point_size):
                    r, c = row + dr, col + dc
                    if 0 <= r < height and 0 <= c < width and z < depth[r, c]:
                        depth[r, c], ids[r, c] = z, o.id
    counts = {}
    for object_id, row, col, z in projected:
        if 0 <= row < height and 0 <= col < width and z <= depth[row, col] + tolerance:
            counts[object_id] = counts.get(object_id, 0) + 1
    return np.where(np.isfinite(depth), depth, 0.0), ids, counts


@pytest.mark.parametrize("point_size", [1, 3])
def test_visible_from_matches_brute_force_projection(point_size):
    imap = random_map(seed=6, n_objects=12)
    K = np.array([[60.0, 0, 40.0], [0, 60.0, 30.0], [0, 0, 1]])
    pose = look_at(np.array([-2.0, -1.5, 3.0]), np.array([2.0, 2.0, 2.0]))
    result = imap.visible_from(K, pose, 80, 60, depth_tolerance=0.05, point_size=point_size)
    depth, ids, counts = brute_render(imap, K, pose, 80, 60, point_size, 0.05)
    np.testing.assert_allclose(result.depth, depth.astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(result.id_image, ids)
    assert result.ids.tolist() == sorted(counts)
    assert result.visible_points.tolist() == [counts[i] for i in sorted(counts)]
    assert 0 < result.visible_points.sum() < imap.num_points  # back sides and occluded points are hidden


def test_visible_from_hides_an_object_behind_a_wall():
    rng = np.random.default_rng(7)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 60), np.linspace(-1, 1, 60)), -1).reshape(-1, 2)
    imap = InstanceMap()
    imap.add(MapObject(1, np.column_stack([grid, np.full(len(grid), 2.0)])))  # wall at z = 2 m
    imap.add(MapObject(2, rng.normal(0, 0.05, (100, 3)) + [0, 0, 3.0]))  # behind it
    imap.add(MapObject(3, rng.normal(0, 0.05, (100, 3)) + [0, 0, -3.0]))  # behind the camera
    K = np.array([[50.0, 0, 32.0], [0, 50.0, 24.0], [0, 0, 1]])
    result = imap.visible_from(K, np.eye(4), 64, 48, point_size=3)
    assert result.ids.tolist() == [1]
    assert set(np.unique(result.id_image).tolist()) <= {-1, 1}
    without_wall = InstanceMap()
    without_wall.add(imap.get(2))
    assert without_wall.visible_from(K, np.eye(4), 64, 48).ids.tolist() == [2]


def test_filter_matches_the_thresholds(imap):
    for min_points, min_obs, min_conf, structure in [(0, 0, 0.0, True), (100, 5, 0.3, False), (250, 0, 0.9, True)]:
        expected = sorted(o.id for o in imap if o.num_points >= min_points and o.num_observations >= min_obs
                          and o.confidence >= min_conf and (structure or not o.is_structure))
        assert imap.filter(min_points, min_obs, min_conf, structure).tolist() == expected
    assert len(imap.filter(include_structure=False)) < len(imap)


def test_queries_follow_updates_and_removals():
    imap = random_map(seed=8, n_objects=5)
    victim = imap.ids[0]
    probe = imap.get(victim).points[0]
    assert imap.object_at(probe, 0.0) == victim
    imap.remove(victim)
    assert imap.object_at(probe, 0.0) != victim
    moved = imap.get(imap.ids[0]).with_points(np.array([[10.0, 10.0, 10.0], [10.1, 10.0, 10.0]]))
    imap.update(moved)
    assert imap.object_at([10.05, 10.0, 10.0], 0.06) == moved.id
    assert imap.in_box([9.9, 9.9, 9.9], [10.2, 10.1, 10.1], fully_inside=True).tolist() == [moved.id]
    assert imap.pending_changes().removed_ids == {int(victim)}
    queries = np.random.default_rng(9).uniform(-0.5, 4.5, (300, 3))
    points, owners = all_points(imap)
    distances = np.linalg.norm(queries[:, None, :] - points[None, :, :], axis=2)
    expected = np.where(distances.min(axis=1) <= 0.3, owners[distances.argmin(axis=1)], -1)
    np.testing.assert_array_equal(imap.label_points(queries, 0.3), expected)


def test_empty_map_queries():
    imap = InstanceMap()
    assert imap.object_at([0, 0, 0]) is None
    assert imap.label_points(np.zeros((3, 3)), 1.0).tolist() == [-1, -1, -1]
    assert len(imap.within_radius([0, 0, 0], 1.0)[0]) == 0 and len(imap.nearest([0, 0, 0], 2)[0]) == 0
    assert imap.in_box([0, 0, 0], [1, 1, 1]).size == 0 and imap.ray_pick([0, 0, 0], [1, 0, 0]) is None
    assert np.all(imap.visible_from(np.eye(3), np.eye(4), 4, 3).id_image == -1)


def test_oriented_box_recovers_a_rotated_box():
    rng = np.random.default_rng(9)
    angle = 0.6
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    local = rng.uniform(-0.5, 0.5, (4000, 3)) * [2.0, 0.8, 0.3]
    points = local @ rotation.T + [1.0, 2.0, 0.5]
    centre, axes, extents = oriented_box(points)
    np.testing.assert_allclose(extents, [2.0, 0.8, 0.3], atol=0.02)
    np.testing.assert_allclose(np.abs(axes.T @ rotation), np.eye(3), atol=0.02)
    np.testing.assert_allclose(centre, [1.0, 2.0, 0.5], atol=0.02)
    assert np.linalg.det(axes) == pytest.approx(1.0)
    tilted = points @ np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]]).T
    obj = MapObject.from_points(1, tilted, up=[0, 0, 2.0])
    np.testing.assert_allclose(obj.obb_rotation[:, 2], [0, 0, 1])  # kept upright
    local_points = (obj.points - obj.obb_center) @ obj.obb_rotation
    assert np.all(np.abs(local_points) <= obj.obb_extents / 2 + 1e-6)


def test_object_derived_fields_and_bad_input():
    points = np.array([[0, 0, 0], [1, 2, 3], [2, 0, 1]], np.float64)
    obj = MapObject(4, points)
    assert obj.points.dtype == np.float32 and obj.colors.dtype == np.uint8 and obj.colors.shape == (3, 3)
    np.testing.assert_array_equal(obj.aabb_min, [0, 0, 0])
    np.testing.assert_array_equal(obj.aabb_max, [2, 2, 3])
    np.testing.assert_allclose(obj.centroid, [1, 2 / 3, 4 / 3])
    with pytest.raises(ValueError, match="MapObject 4: points"):
        MapObject(4, np.array([[0, np.nan, 0]]))
    with pytest.raises(ValueError, match="N x 3"):
        MapObject(4, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="confidence"):
        MapObject(4, points, confidence=1.5)
    with pytest.raises(ValueError, match="colors must be 3 x 3"):
        MapObject(4, points, colors=np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="id must be a non-negative"):
        MapObject(-2, points)
    imap = InstanceMap()
    imap.add(obj)
    with pytest.raises(ValueError, match="already in the map"):
        imap.add(obj)
    with pytest.raises(KeyError, match="no object with id 5"):
        imap.get(5)
    with pytest.raises(ValueError, match="within_radius: xyz"):
        imap.within_radius([0, 0], 1.0)
    with pytest.raises(ValueError, match="box_min .* exceeds"):
        imap.in_box([1, 1, 1], [0, 0, 0])


def test_trajectory_and_remap_table():
    imap = InstanceMap()
    pose = np.eye(4)
    imap.add_frame(0, pose)
    imap.add_frame(10, pose)
    with pytest.raises(ValueError, match="after the last recorded frame"):
        imap.add_frame(10, pose)
    with pytest.raises(ValueError, match="not a finite rigid"):
        imap.add_frame(20, np.full((4, 4), np.inf))
    frames, poses = imap.trajectory
    assert frames.tolist() == [0, 10] and poses.shape == (2, 4, 4) and imap.num_frames == 2
    imap.record_remap({3: 2})
    imap.record_remap({2: 1, 5: 5})
    assert imap.id_remap == {3: 1, 2: 1}
    assert imap.resolve_id(3) == 1 and imap.resolve_id(7) == 7
    assert imap.next_id() == 4


def test_copy_keeps_trajectory_remap_and_objects_and_is_independent():
    imap = InstanceMap(MapMetadata(voxel_size=0.02))
    imap.add_frame(3, np.eye(4))
    imap.add(MapObject.from_points(0, np.random.default_rng(0).random((20, 3)).astype(np.float32)))
    imap.add(MapObject.from_points(1, np.random.default_rng(1).random((20, 3)).astype(np.float32)))
    imap.record_remap({5: 1})
    copy = imap.copy()
    assert copy.ids.tolist() == [0, 1] and copy.get(0) is imap.get(0)
    assert copy.trajectory[0].tolist() == [3] and copy.num_frames == 1 and copy.resolve_id(5) == 1
    assert copy.pending_changes().frames == [3]
    copy.remove(1)
    copy.record_remap({1: 0})
    copy.add_frame(4, np.eye(4))
    assert 1 in imap and imap.resolve_id(1) == 1 and imap.num_frames == 1
    empty = imap.copy(with_objects=False)
    assert len(empty) == 0 and empty.trajectory[0].tolist() == [3] and empty.metadata is imap.metadata


def test_cross3_is_numpys_cross_bit_for_bit():
    from scene.objects import cross3

    rng = np.random.default_rng(0)
    for _ in range(2000):
        a, b = rng.normal(size=3) * 10.0 ** rng.integers(-6, 6), rng.normal(size=3)
        assert np.cross(a, b).tobytes() == cross3(a, b).tobytes()
