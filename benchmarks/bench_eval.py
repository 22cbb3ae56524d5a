"""Median timings of scene.eval: 2D mask recall, 3D instance AP, 3D box AP (synthetic inputs).

Run: .venv/bin/python benchmarks/bench_eval.py
"""
from __future__ import annotations

import time

import numpy as np

from scene.eval import SceneBoxes, ScenePredictions, evaluate_box_scenes, evaluate_scenes, mask_recall


def median_ms(fn, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def rectangles(rng, count: int, height: int, width: int, max_side: int) -> np.ndarray:
    """count x H x W bool random rectangles."""
    y0, x0 = rng.integers(0, height - 10, count), rng.integers(0, width - 10, count)
    y1 = np.minimum(y0 + rng.integers(10, max_side, count), height)
    x1 = np.minimum(x0 + rng.integers(10, max_side, count), width)
    rows, cols = np.arange(height), np.arange(width)
    in_rows = (rows[None] >= y0[:, None]) & (rows[None] < y1[:, None])
    in_cols = (cols[None] >= x0[:, None]) & (cols[None] < x1[:, None])
    return in_rows[:, :, None] & in_cols[:, None, :]


def instance_image(rng, count: int, height: int, width: int) -> np.ndarray:
    gt = np.zeros((height, width), np.int32)
    for k, rect in enumerate(rectangles(rng, count, height, width, 200), start=1):
        gt[rect] = k  # later rectangles occlude earlier ones, like instances in a view
    return gt


def bench_masks2d(rng) -> None:
    gt = instance_image(rng, 40, 480, 640)
    masks = rectangles(rng, 200, 480, 640, 250)
    ms = median_ms(lambda: mask_recall(gt, masks))
    print(f"mask_recall 640x480, 200 masks, {len(np.unique(gt)) - 1} GT: {ms:.1f} ms")


def bench_instance_ap(rng) -> None:
    points, instances, predictions = 150_000, 80, 300
    gt = np.sort(rng.integers(0, instances + 1, points))  # contiguous blocks, id 0 void
    owner = rng.integers(1, instances + 1, predictions)
    masks = (gt[None] == owner[:, None]) ^ (rng.random((predictions, points)) < 0.002)
    scene = ScenePredictions(gt, masks, rng.random(predictions))
    ms = median_ms(lambda: evaluate_scenes([scene]), repeats=3)
    print(f"instance AP, {points} points, {instances} GT, {predictions} predictions, 10 overlaps: {ms:.0f} ms")


def bench_box_ap(rng) -> None:
    scenes = []
    for name in range(100):
        low = rng.uniform(0, 5, (30, 3))
        gt = np.hstack([low, low + rng.uniform(0.2, 1.5, (30, 3))])
        pred = gt[rng.integers(0, 30, 60)] + rng.normal(0, 0.1, (60, 6))
        pred = np.hstack([np.minimum(pred[:, :3], pred[:, 3:]), np.maximum(pred[:, :3], pred[:, 3:])])
        scenes.append(SceneBoxes(gt, pred, rng.random(60), str(name)))
    print(f"box AP, 100 scenes x (30 GT, 60 predictions): {median_ms(lambda: evaluate_box_scenes(scenes)):.1f} ms")


def main() -> None:
    rng = np.random.default_rng(0)
    bench_masks2d(rng)
    bench_instance_ap(rng)
    bench_box_ap(rng)


if __name__ == "__main__":
    main()
