"""The ``scene`` command line: one sub-command per job; errors are one clear line and a non-zero exit."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


class CLIError(Exception):
    """An error to show the user as one line."""


def _cmd_inspect(args: argparse.Namespace) -> int:
    from scene.datasets import open_dataset

    source = open_dataset(args.data, format=args.format, stride=args.stride)
    print(f"{args.data}: format {source.format_name}, {len(source)} frames", end="")
    if getattr(source, "skipped_invalid_pose", 0):
        print(f" ({source.skipped_invalid_pose} skipped for invalid poses)", end="")
    print()
    if len(source):
        frame = source[0]
        valid = frame.depth > 0
        print(f"  image {frame.width}x{frame.height}, fx {frame.K[0, 0]:.2f} fy {frame.K[1, 1]:.2f} "
              f"cx {frame.K[0, 2]:.2f} cy {frame.K[1, 2]:.2f}")
        print(f"  first frame: valid depth {valid.mean():.1%}, depth {frame.depth[valid].min():.2f}-"
              f"{frame.depth[valid].max():.2f} m" if valid.any() else "  first frame: no valid depth")
        centres = source.poses[:, :3, 3]
        print(f"  trajectory length {float(((centres[1:] - centres[:-1]) ** 2).sum(1).__pow__(0.5).sum()):.2f} m")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from scene.demo import run_demo

    run_demo(Path(args.out), preset=args.preset, seed=args.seed, num_frames=args.frames)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scene", description="3D scene segmentation and instance mapping")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate a synthetic scene, process it and write pictures (no data needed)")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--preset", default="room-noisy", help="synthetic preset (default: room-noisy)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--frames", type=int, default=60, help="number of frames to generate")
    demo.set_defaults(func=_cmd_demo)

    inspect = sub.add_parser("inspect", help="detect a dataset's format and summarise it")
    inspect.add_argument("data", help="dataset folder")
    inspect.add_argument("--format", default=None, help="force a format instead of detecting it")
    inspect.add_argument("--stride", type=int, default=1)
    inspect.set_defaults(func=_cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from scene.datasets import DatasetError

    try:
        return int(args.func(args) or 0)
    except (CLIError, DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"scene {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scene {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
