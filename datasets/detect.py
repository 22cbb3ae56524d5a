"""``open_dataset``: pick the reader for a folder from the files it holds, or by name."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .base import FrameSource
from .frame import DatasetError
from .readers import (
    PosedRGBSource, ProjectSource, RedwoodSource, ReplicaSource, RosBagSource, ScanNetPosedImagesSource, ScanNetSource,
    SevenScenesSource, TUMSource,
)
from .readers.posed_rgb import find_posed_rgb_layout
from .readers.rosbag import is_rosbag
from .readers.replica import find_replica_sequence
from .readers.sevenscenes import sequence_dirs

READERS: dict[str, type[FrameSource]] = {
    "project": ProjectSource,
    "scannet-posed": ScanNetPosedImagesSource,
    "scannet": ScanNetSource,
    "tum": TUMSource,
    "replica": ReplicaSource,
    "7scenes": SevenScenesSource,
    "redwood": RedwoodSource,
    "rosbag": RosBagSource,
    "posed-rgb": PosedRGBSource,
}
ALIASES = {"colmap": "posed-rgb", "nerfstudio": "posed-rgb", "posed_rgb": "posed-rgb", "bag": "rosbag", "ros": "rosbag", "3dmatch": "7scenes", "scannet_posed": "scannet-posed", "seven-scenes": "7scenes"}


def _is_dir(root: Path, *names: str) -> bool:
    return all((root / name).is_dir() for name in names)


# Checked in this order; the first match wins (scene.json is the most specific marker).
DETECTORS: list[tuple[str, str, Callable[[Path], bool]]] = [
    ("rosbag", "a .bag/.db3/.mcap file or a folder with metadata.yaml (ROS bag)", is_rosbag),
    ("project", "scene.json", lambda r: (r / "scene.json").is_file()),
    # before the RGB-D layouts: a ScanNet / 7-Scenes folder without its depth files is posed RGB
    ("posed-rgb", "transforms.json, a COLMAP model (cameras.txt + images.txt), or posed colour without depth",
     lambda r: find_posed_rgb_layout(r) is not None),
    ("scannet-posed", "posed_images/ folder (or posed_images/intrinsic.txt here)",
     lambda r: _is_dir(r, "posed_images") or (r.name == "posed_images" and (r / "intrinsic.txt").is_file())),
    ("scannet", "color/ depth/ pose/ folders", lambda r: _is_dir(r, "color", "depth", "pose")),
    ("tum", "rgb.txt and depth.txt", lambda r: (r / "rgb.txt").is_file() and (r / "depth.txt").is_file()),
    ("replica", "results/ and traj.txt (here or in one sub-folder)", lambda r: find_replica_sequence(r) is not None),
    ("7scenes", "frame-*.pose.txt (here or under seq-*/)", lambda r: bool(sequence_dirs(r))),
    ("redwood", "color/ depth/ folders and a *.log trajectory",
     lambda r: _is_dir(r, "color", "depth") and any(r.glob("*.log"))),
]


def detect_format(path: str | Path) -> str:
    """Name of the format of the dataset folder (or bag file) ``path``; DatasetError listing what was checked."""
    root = Path(path)
    if root.is_file() and is_rosbag(root):
        return "rosbag"
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (nor a .bag, .db3 or .mcap file)")
    for name, _, matches in DETECTORS:
        if matches(root):
            return name
    checked = "; ".join(f"{name}: {marker}" for name, marker, _ in DETECTORS)
    raise DatasetError(f"{root}: cannot tell the dataset format. Checked {checked}")


def open_dataset(path: str | Path, format: str | None = None, **options) -> FrameSource:
    """Open the dataset at ``path`` with the reader for ``format`` (detected when None).

    Formats: "project", "scannet", "scannet-posed", "tum", "replica", "7scenes" ("3dmatch"), "redwood",
    "rosbag" (a ROS 1 .bag file, a ROS 2 bag folder, or a bare .db3 / .mcap file), "posed-rgb" (colour
    images with poses and no depth: transforms.json, a COLMAP text model, ScanNet / 7-Scenes without depth).
    ``options`` go to the reader (start, stop, stride, K, depth_scale, ... see each reader).
    """
    name = detect_format(path) if format is None else ALIASES.get(format, format)
    if name not in READERS:
        raise ValueError(f"unknown format {format!r}; known: {sorted(READERS) + sorted(ALIASES)}")
    return READERS[name](path, **options)
