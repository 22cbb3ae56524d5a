"""Small real copies of the shared sets (a few frames each, real files in a temporary folder, never the
shared originals) and the ways the fault tests break them."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np


def copy_7scenes(src: Path, dst: Path, frames: int = 3) -> Path:
    """The first ``frames`` frames (colour, depth, pose) of a 7-Scenes / 3DMatch folder and its intrinsics."""
    folder = src if any(src.glob("frame-*.pose.txt")) else sorted(src.glob("seq-*"))[0]
    dst.mkdir(parents=True)
    shutil.copy(src / "camera-intrinsics.txt", dst)
    for pose in sorted(folder.glob("frame-*.pose.txt"))[:frames]:
        stem = pose.name.replace(".pose.txt", "")
        for path in folder.glob(f"{stem}.*"):
            shutil.copy(path, dst)
    return dst


def copy_scannet(src: Path, dst: Path, frames: int = 3) -> Path:
    """``posed_images`` with the first ``frames`` frames, ``intrinsic.txt`` and the root's depth intrinsics."""
    images = dst / "posed_images"
    images.mkdir(parents=True)
    shutil.copy(src / "posed_images" / "intrinsic.txt", images)
    if (src / "intrinsic_depth.txt").is_file():
        shutil.copy(src / "intrinsic_depth.txt", dst)
    for pose in sorted(p for p in (src / "posed_images").glob("*.txt") if p.stem.isdigit())[:frames]:
        for suffix in (".jpg", ".png", ".txt"):
            shutil.copy(pose.with_suffix(suffix), images)
    return dst


def copy_replica(src: Path, dst: Path, frames: int = 2) -> Path:
    """``cam_params.json``, ``office0/traj.txt`` and the first ``frames`` frames."""
    results = dst / "office0" / "results"
    results.mkdir(parents=True)
    shutil.copy(src / "cam_params.json", dst)
    shutil.copy(src / "office0" / "traj.txt", dst / "office0")
    for k in range(frames):
        shutil.copy(src / "office0" / "results" / f"frame{k:06d}.jpg", results)
        shutil.copy(src / "office0" / "results" / f"depth{k:06d}.png", results)
    return dst


def copy_redwood(src: Path, dst: Path) -> Path:
    """The whole (5-frame) ICL-NUIM folder."""
    shutil.copytree(src, dst)
    return dst


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def resize_depth(path: Path, factor: float = 0.5) -> None:
    """Rewrite a depth PNG at ``factor`` times its size (nearest neighbour keeps the values)."""
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    size = (int(depth.shape[1] * factor), int(depth.shape[0] * factor))
    assert cv2.imwrite(str(path), cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST))


def zero_depth(path: Path) -> None:
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert cv2.imwrite(str(path), np.zeros_like(depth))


def write_pose(path: Path, value: float) -> None:
    """A 4x4 pose file filled with ``value`` (nan, inf)."""
    np.savetxt(path, np.full((4, 4), value))
