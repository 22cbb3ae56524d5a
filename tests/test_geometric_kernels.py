"""The geometric generator's faster kernels equal the straightforward versions they replaced, bit for bit,
on random input (the references below are those versions, kept here only to compare against)."""
from __future__ import annotations

import numpy as np
import pytest

from segment2d import depth_ops
from segment2d.geometric import GeometricConfig
from segment2d.geometric.regions import components, grow
from segment2d.planes import PointSamples, fit_region_planes


def _scene(seed: int, h: int = 60, w: int = 80):
    """Depth with steps, slopes, noise and invalid holes; its points, normals and colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = 1.5 + 0.01 * xx + 0.3 * (yy > h / 2) + 0.2 * ((xx > w / 3) & (xx < w / 2))
    depth = (depth + rng.normal(0, 0.004, (h, w))).astype(np.float32)
    depth[rng.random((h, w)) < 0.08] = 0
    depth[5:12, 10:25] = 0  # a hole larger than hole filling reaches
    color = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    K = np.array([[60.0, 0, w / 2], [0, 60.0, h / 2], [0, 0, 1]])
    pts = depth_ops.backproject(depth, K)
    return depth, color, pts


@pytest.mark.parametrize("reach", [1, 2, 3])
def test_edge_shift_views_and_gathers_equal_shifted_copies(reach):
    rng = np.random.default_rng(reach)
    for a in (rng.random((7, 9)).astype(np.float32), rng.random((3, 5, 4)), rng.random((6, 6)) > 0.5):
        at = depth_ops.EdgeShifts(a, reach)
        pixels = rng.choice(a.shape[-2] * a.shape[-1], 10, replace=False)
        index = at.padded_index(pixels)
        for dy in range(-reach, reach + 1):
            for dx in range(-reach, reach + 1):
                expected = depth_ops.shifted(a, dy, dx)
                assert np.array_equal(at(dy, dx), expected)
                assert np.array_equal(at.gather(index, dy, dx),
                                      expected.reshape(expected.shape[:-2] + (-1,))[..., pixels])
    with pytest.raises(ValueError, match="beyond the padding"):
        at(reach + 1, 0)


def _fill_reference(depth, color, iterations):
    """The straightforward hole filling: every hole pixel visits its 8 neighbours in every step."""
    d = depth.copy()
    h, w = d.shape
    flat = depth_ops.pad1(d).ravel()
    rgb = [depth_ops.pad1(color[..., i].astype(np.int16)).ravel() for i in range(3)]
    idx = np.flatnonzero(depth_ops.pad1(d <= 0))
    steps = [dy * (w + 2) + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    for _ in range(iterations):
        if len(idx) == 0:
            break
        own = [c[idx] for c in rgb]
        best_cost = np.full(len(idx), np.iinfo(np.int16).max, np.int16)
        best_depth = np.zeros(len(idx), np.float32)
        for step in steps:
            zq = flat[idx + step]
            cost = sum(np.abs(c[idx + step] - o) for c, o in zip(rgb, own))
            better = (zq > 0) & (cost < best_cost)
            best_cost = np.where(better, cost, best_cost)
            best_depth = np.where(better, zq, best_depth)
        flat[idx] = best_depth
        idx = idx[best_depth <= 0]
    return flat.reshape(h + 2, w + 2)[1:-1, 1:-1].copy()


@pytest.mark.parametrize("seed", range(4))
def test_frontier_hole_filling_equals_visiting_every_hole(seed):
    depth, color, _ = _scene(seed)
    depth[0, 3] = -1.0  # negative readings count as holes too
    for iterations in (0, 1, 3, 6):
        assert np.array_equal(depth_ops.fill_small_holes(depth, color, iterations),
                              _fill_reference(depth, color, iterations))


def _normals_reference(points, valid, radius, smooth):
    """The straightforward normals: shifted copies, new arrays for every step."""
    sh = depth_ops.shifted
    du = sh(points, 0, radius) - sh(points, 0, -radius)
    dv = sh(points, radius, 0) - sh(points, -radius, 0)
    n = np.stack([du[1] * dv[2] - du[2] * dv[1], du[2] * dv[0] - du[0] * dv[2], du[0] * dv[1] - du[1] * dv[0]])
    unit = lambda v: v / (np.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]) + np.float32(1e-12))  # noqa: E731
    n = unit(n)
    ok = valid.copy()
    for dy, dx in ((0, radius), (0, -radius), (radius, 0), (-radius, 0)):
        ok &= sh(valid, dy, dx)
    n *= ok
    if smooth > 1:
        import cv2

        n = np.stack([cv2.boxFilter(c, -1, (smooth, smooth), normalize=False) for c in n])
    facing = n[0] * points[0] + n[1] * points[1] + n[2] * points[2]
    n *= np.where(facing > 0, np.float32(-1.0), np.float32(1.0))
    n = unit(n)
    n *= valid
    return n


@pytest.mark.parametrize("seed", range(3))
def test_in_place_normals_equal_the_straightforward_ones(seed):
    depth, _, pts = _scene(seed)
    for radius, smooth in ((1, 5), (2, 3), (1, 1)):
        assert np.array_equal(depth_ops.normals_from_points(pts, depth > 0, radius, smooth),
                              _normals_reference(pts, depth > 0, radius, smooth))


@pytest.mark.parametrize("seed", range(3))
def test_concave_strength_with_a_floor_is_exact_above_it(seed):
    depth, _, pts = _scene(seed)
    valid = depth > 0
    normals = depth_ops.normals_from_points(pts, valid, 1, 3)
    full = depth_ops.concave_strength(pts, normals, valid, 2)
    assert (full > 0.05).any() and ((full > 0) & (full <= 0.05)).any()  # both sides of the floor occur
    for floor in (0.05, 0.12, 0.5):
        floored = depth_ops.concave_strength(pts, normals, valid, 2, floor=floor)
        assert np.array_equal(floored, np.where(full > np.float32(floor), full, np.float32(0)))


def _grow_reference(labels, depth, valid, pts, planes, planar, cfg):
    """The straightforward growth: one neighbour direction at a time, a strictly smaller cost wins."""
    h, w = labels.shape
    lab = depth_ops.pad1(labels).ravel()
    dep = depth_ops.pad1(depth).ravel()
    xyz = depth_ops.pad1(pts).reshape(3, -1)
    open_ = depth_ops.pad1(valid & (labels == 0)).ravel()
    plane = np.concatenate([planes.normal, planes.offset[:, None]], axis=1).astype(np.float32)
    inf = np.float32(np.inf)
    for _ in range(cfg.grow_iters):
        front = np.flatnonzero(open_)
        z = dep[front]
        limit = depth_ops.jump_limit(z, cfg.rel_jump, cfg.sigma0, cfg.sigma2, cfg.n_sigma)
        plane_limit = np.float32(cfg.on_plane_abs) + np.float32(cfg.on_plane_rel) * z
        best_cost = np.full(len(front), inf, np.float32)
        best_label = np.zeros(len(front), lab.dtype)
        for s in (1, -1, w + 2, -(w + 2)):
            nl = lab[front + s]
            cost = np.abs(dep[front + s] - z)
            cost[cost > limit] = inf
            for k in np.flatnonzero(planar[nl]):
                p = plane[nl[k]]
                dist = np.abs(p[0] * xyz[0, front[k]] + p[1] * xyz[1, front[k]] + p[2] * xyz[2, front[k]] + p[3])
                cost[k] = dist if dist <= plane_limit[k] else inf
            better = (cost < best_cost) & (nl > 0)
            best_cost[better], best_label[better] = cost[better], nl[better]
        done = best_label > 0
        lab[front[done]] = best_label[done]
        open_[front[done]] = False
    return lab.reshape(h + 2, w + 2)[1:-1, 1:-1]


@pytest.mark.parametrize("seed", range(4))
def test_frontier_growth_equals_growing_every_open_pixel(seed):
    depth, _, pts = _scene(seed)
    valid = depth > 0
    rng = np.random.default_rng(seed)
    cut = rng.random(depth.shape) < 0.25
    labels, n = components(valid & ~cut, 4)
    planes = fit_region_planes(pts, labels, n)
    planar = rng.random(n) < 0.6
    planar[0] = False
    for cfg in (GeometricConfig(), GeometricConfig(grow_iters=2, on_plane_abs=0.005)):
        grown = grow(labels, depth, valid, pts, planes, planar, cfg)
        assert (grown > labels).any()
        assert np.array_equal(grown, _grow_reference(labels, depth, valid, pts, planes, planar, cfg))


def test_plane_fits_from_shared_samples_equal_fits_from_points():
    depth, _, pts = _scene(5)
    labels, n = components(depth > 0, 4)
    samples = PointSamples.of(pts)
    direct, shared = fit_region_planes(pts, labels, n), fit_region_planes(samples, labels, n)
    for name in ("count", "centroid", "normal", "offset", "rms", "extent"):
        assert np.array_equal(getattr(direct, name), getattr(shared, name))
    # one set of samples serves another labelling of the same pixels
    relabelled = np.where(labels > 0, labels % 3 + 1, 0)
    assert np.array_equal(fit_region_planes(samples, relabelled, 4).normal,
                          fit_region_planes(pts, relabelled, 4).normal)


@pytest.mark.parametrize("f", [2, 4, 8])
def test_label_upsampling_by_resize_equals_taking_source_pixels(f):
    from segment2d.geometric.masks import _upsample_labels

    rng = np.random.default_rng(f)
    for top, (h, w) in ((200, (30, 41)), (3000, (17, 9))):
        labels = rng.integers(0, top, (h, w)).astype(np.int32)
        for full_hw in ((h * f, w * f), (h * f + 1, w * f - 1)):  # exact ratio (resized) and not (taken)
            ys = np.minimum(np.arange(full_hw[0]) // f, h - 1)
            xs = np.minimum(np.arange(full_hw[1]) // f, w - 1)
            up = _upsample_labels(labels, f, full_hw)
            assert up.shape == full_hw and up.dtype == (np.uint8 if top <= 256 else np.uint16)
            assert np.array_equal(up, labels[ys][:, xs])


def test_label_presence_from_run_starts_equals_presence_over_every_pixel():
    from segment2d.geometric.masks import label_presence

    rng = np.random.default_rng(7)
    for shape, n in (((40, 55), 6), ((13, 7), 30), ((1, 9), 3), ((9, 1), 3)):
        blocky = rng.integers(0, n, (shape[0] // 3 + 1, shape[1] // 3 + 1)).repeat(3, 0).repeat(3, 1)
        for labels in (rng.integers(0, n, shape), blocky[:shape[0], :shape[1]]):
            labels = labels.astype(np.int32)
            rows, cols = label_presence(labels, n + 2)  # labels n, n+1 never occur
            for k in range(n + 2):
                assert np.array_equal(rows[k], (labels == k).any(axis=1))
                assert np.array_equal(cols[k], (labels == k).any(axis=0))


def test_unusable_depth_cleaned_after_subsampling_gives_the_masks_of_zeroed_depth():
    from scene.datasets import Frame
    from segment2d.geometric import GeometricMaskGenerator

    depth, color, _ = _scene(11, 120, 160)
    depth[depth == 0] = 2.0
    K = np.array([[120.0, 0, 80], [0, 120.0, 60], [0, 0, 1]])
    bad = depth.copy()
    bad[10:50, 10:50], bad[40:50, 100:140], bad[70:90, 60:80], bad[0:8, 60:80] = np.nan, np.inf, -1.0, 12.0
    zeroed = np.where(np.isfinite(bad) & (bad >= 0) & (bad <= 10.0), bad, 0).astype(np.float32)
    generator = GeometricMaskGenerator(work_width=80)
    a = generator.generate(Frame(0, 0.0, color, bad, K, np.eye(4)))
    b = generator.generate(Frame(0, 0.0, color, zeroed, K, np.eye(4)))
    assert len(a) > 0 and np.array_equal(a.masks, b.masks) and np.array_equal(a.scores, b.scores)
    assert not a.masks[:, 25:35, 25:35].any()  # the middle of the NaN block is nobody's


def test_border_pairs_are_the_differing_neighbour_pairs_of_both_directions():
    from segment2d.geometric.levels import border_pairs

    rng = np.random.default_rng(3)
    for shape in ((20, 30), (1, 12), (9, 1), (2, 2)):
        labels = rng.integers(0, 4, shape).astype(np.int32)
        disc = rng.random(shape) < 0.3
        a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
        b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
        jump = np.concatenate([(disc[:, :-1] | disc[:, 1:]).ravel(), (disc[:-1, :] | disc[1:, :]).ravel()])
        border = a != b
        assert np.array_equal(np.stack(border_pairs(labels, disc)), np.stack([a[border], b[border], jump[border]]))
