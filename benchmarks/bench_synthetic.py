"""Timings of the synthetic generator: scene generation, per-frame render (median), a whole in-memory
room sequence, and writing the project layout.

    .venv/bin/python benchmarks/bench_synthetic.py [--preset room] [--frames 100] [--width 640 --height 480]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from scene.datasets.synthetic import make_scene, write_scene


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="room")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--write-frames", type=int, default=20, help="frames written in the writing test")
    args = parser.parse_args()
    size = dict(width=args.width, height=args.height)

    gen_times = [timed(lambda s=s: make_scene(args.preset, seed=s, num_frames=args.frames, **size))[1]
                 for s in range(3)]
    print(f"generate '{args.preset}' (layout + visibility pruning + path): "
          f"median {np.median(gen_times):.3f} s over 3 seeds")

    for noisy in (False, True):
        start = time.perf_counter()
        scene = make_scene(args.preset, seed=0, num_frames=args.frames, noisy=noisy, **size)
        per_frame = [timed(lambda i=i: scene.frame(i))[1] for i in range(len(scene))]
        total = time.perf_counter() - start
        label = "noisy" if noisy else "clean"
        print(f"{label}: {args.frames} frames {args.width}x{args.height}: "
              f"per-frame median {1000 * np.median(per_frame):.1f} ms, "
              f"generate + render all {total:.1f} s")

    _, gt_time = timed(lambda: scene.gt_points())
    print(f"gt points: {len(scene.gt_points())} points in {gt_time:.2f} s")

    small = make_scene(args.preset, seed=0, num_frames=args.write_frames, noisy=True, **size)
    with tempfile.TemporaryDirectory() as tmp:
        frames = [small.frame(i) for i in range(len(small))]
        _, write_time = timed(lambda: write_scene(small, Path(tmp) / "out", frames=frames))
    print(f"write {args.write_frames} pre-rendered frames + GT: {write_time:.2f} s "
          f"({1000 * write_time / args.write_frames:.1f} ms per frame incl. GT share)")


if __name__ == "__main__":
    main()
