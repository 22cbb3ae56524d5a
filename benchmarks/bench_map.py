"""Median timings of InstanceMap queries, SQLite save/load and file size on a generated map.

Default: 200 objects, ~1M points (Gaussian blobs in a 10 x 10 x 3 m room). Run:
    .venv/bin/python benchmarks/bench_map.py [--objects 200] [--points 1000000] [--repeats 5]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np

from scene.map import InstanceMap, MapMetadata, MapObject
from scene.storage import MapStore


def generated_map(n_objects: int, n_points: int, seed: int = 0) -> InstanceMap:
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(n_points - 10 * n_objects, np.full(n_objects, 1.0 / n_objects)) + 10
    imap = InstanceMap(MapMetadata(voxel_size=0.02, K=[[525.0, 0, 319.5], [0, 525.0, 239.5], [0, 0, 1]],
                                   image_size=(480, 640), up=[0, 0, 1]))
    for object_id, n in enumerate(sizes):
        centre = rng.uniform([0, 0, 0], [10, 10, 3])
        points = rng.normal(size=(n, 3)) * rng.uniform(0.05, 0.5, 3) + centre
        imap.add(MapObject(object_id, points, rng.integers(0, 256, (n, 3)), weights=rng.random(n),
                           num_observations=int(rng.integers(1, 100)), confidence=float(rng.random())))
    for frame in range(300):
        pose = np.eye(4)
        pose[:3, 3] = [frame / 30.0, 5.0, 1.5]
        imap.add_frame(frame, pose)
    return imap


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return median(times), result


def camera_pose() -> np.ndarray:
    """Camera at (-1, 5, 1.5) looking along world +x (OpenCV axes: y down = world -z)."""
    pose = np.eye(4)
    pose[:3, :3] = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], np.float64).T
    pose[:3, 3] = [-1.0, 5.0, 1.5]
    return pose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    imap = generated_map(args.objects, args.points)
    rng = np.random.default_rng(1)
    probe = rng.uniform([0, 0, 0], [10, 10, 3])
    labels_in = rng.uniform([0, 0, 0], [10, 10, 3], (100_000, 3))
    K = imap.metadata.K
    print(f"map: {len(imap)} objects, {imap.num_points} points, {imap.num_frames} frames; "
          f"medians of {args.repeats} runs")

    def cold_index():  # as after a load: no concatenation, no tree yet
        imap._index = None
        imap._trees.clear()
        return imap.label_points(labels_in[:1000], 0.05)

    def online_update():  # the pipeline's pattern: replace 5 objects, then query
        for object_id in rng.choice(imap.ids, 5, replace=False):
            obj = imap.get(object_id)
            imap.update(obj.with_points(obj.points, obj.colors, obj.weights))
        return imap.label_points(labels_in[:1000], 0.05)

    queries = {
        "cold index + label 1k points": cold_index,
        "update 5 objects + label 1k": online_update,
        "object_at": lambda: imap.object_at(probe, 0.1),
        "within_radius r=0.5 m": lambda: imap.within_radius(probe, 0.5),
        "nearest k=5": lambda: imap.nearest(probe, 5),
        "in_box 2x2x2 m (intersect)": lambda: imap.in_box(probe - 1, probe + 1),
        "in_box 2x2x2 m (fully inside)": lambda: imap.in_box(probe - 1, probe + 1, fully_inside=True),
        "ray_pick": lambda: imap.ray_pick([-1.0, 5.0, 1.5], [1.0, 0.01, 0.0], 20.0),
        "visible_from 640x480 size 1": lambda: imap.visible_from(K, camera_pose(), 640, 480),
        "visible_from 640x480 size 3": lambda: imap.visible_from(K, camera_pose(), 640, 480, point_size=3),
        "label_points 100k": lambda: imap.label_points(labels_in, 0.05),
        "filter": lambda: imap.filter(min_points=1000, min_confidence=0.5),
    }
    for name, query in queries.items():
        seconds, _ = timed(query, args.repeats)
        print(f"  {name:32s} {seconds * 1e3:9.2f} ms")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "map.sqlite"

        def full_save():
            with MapStore(path) as store:
                store.save(imap)

        def load():
            with MapStore(path, read_only=True) as store:
                return store.load()

        def incremental_save():
            with MapStore(path) as store:
                for object_id in rng.choice(imap.ids, 5, replace=False):
                    obj = imap.get(object_id)
                    imap.update(obj.with_points(obj.points + np.float32(0.001), obj.colors, obj.weights))
                last = int(imap.trajectory[0][-1])
                imap.add_frame(last + 1, camera_pose())
                store.save_incremental(imap)

        for name, function in (("save (full)", full_save), ("load", load),
                               ("save_incremental (5 objects, 1 frame)", incremental_save)):
            seconds, _ = timed(function, args.repeats)
            print(f"  {name:32s} {seconds * 1e3:9.2f} ms")
        print(f"  file size: {path.stat().st_size / 2**20:.1f} MiB "
              f"({path.stat().st_size / imap.num_points:.1f} bytes/point)")


if __name__ == "__main__":
    main()
