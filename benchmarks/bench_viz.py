"""Speed of viz: offscreen renders, overlays + MP4 writing, and live viewer updates. Prints medians.

    .venv/bin/python benchmarks/bench_viz.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from scene.datasets.synthetic import make_scene
from scene.map import InstanceMap
from viz.render import RenderConfig, render_perspective, render_top_down
from viz.samples import scannet_points_map, synthetic_map
from viz.video import masks_from_id_image, overlay_sequence, write_video

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_renders(name: str, instance_map: InstanceMap, repeats: int) -> None:
    config = RenderConfig(width=1024, height=768)
    top = median_seconds(lambda: render_top_down(instance_map, config), repeats)
    persp = median_seconds(lambda: render_perspective(instance_map, config=config), repeats)
    print(f"{name}: {len(instance_map)} objects, {instance_map.num_points:,} points at 1024x768: "
          f"top-down {top * 1000:.0f} ms, perspective {persp * 1000:.0f} ms (median of {repeats})")


def bench_video(scene, repeats: int) -> None:
    frames = [scene.frame(i) for i in range(min(10, len(scene)))]
    split = [masks_from_id_image(f.instance_ids.astype(np.int64), ignore=0) for f in frames]

    def run() -> None:
        with tempfile.TemporaryDirectory() as folder:
            overlays = overlay_sequence([f.color for f in frames], [m for m, _ in split], [i for _, i in split])
            write_video(overlays, Path(folder) / "run.mp4", fps=10)

    seconds = median_seconds(run, repeats)
    print(f"overlay + MP4: {seconds / len(frames) * 1000:.1f} ms a {frames[0].width}x{frames[0].height} frame "
          f"({len(frames)} frames, median of {repeats})")


def bench_live_viewer(instance_map: InstanceMap, repeats: int) -> None:
    from viz.viewer import LiveViewer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    viewer = LiveViewer(port=port)
    try:
        first = median_seconds(lambda: (viewer.update(instance_map), viewer._sent.clear()), 1)
        viewer.update(instance_map)
        unchanged = median_seconds(lambda: viewer.update(instance_map), repeats)
        obj = max(instance_map, key=lambda o: o.num_points if not o.is_structure else 0)

        def one_changed() -> None:
            instance_map.update(obj.with_points(obj.points + np.float32(0.001)))
            viewer.update(instance_map)

        changed = median_seconds(one_changed, repeats)
    finally:
        viewer.stop()
    print(f"live viewer: first update {first * 1000:.0f} ms, no change {unchanged * 1000:.1f} ms, one object "
          f"({obj.num_points:,} points) replaced {changed * 1000:.1f} ms (median of {repeats})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    scene = make_scene("room", seed=0, num_frames=20)
    room = synthetic_map(scene)
    bench_renders("synthetic room", room, args.repeats)
    scan = SHARED / "scannet_scene0448_01"
    if scan.is_dir():
        bench_renders("scannet scene0448_01 (vertices)", scannet_points_map(scan, max_points=200_000), args.repeats)
    bench_video(scene, args.repeats)
    bench_live_viewer(room, args.repeats)


if __name__ == "__main__":
    main()
