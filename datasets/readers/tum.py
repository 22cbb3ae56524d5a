"""TUM RGB-D: ``rgb.txt``, ``depth.txt``, ``groundtruth.txt`` (``timestamp tx ty tz qx qy qz qw``).

Each depth image is one frame. Its colour image is the one nearest in time, within ``max_dt`` (0.02 s,
as TUM's ``associate.py``). Its pose is interpolated (linear position, slerp rotation) between the two
ground-truth samples around it when they are at most ``max_pose_gap`` apart, otherwise the nearest sample
within ``max_dt``; frames with neither get a NaN pose and the base class skips them with one warning.
Depth images without a colour partner are left out of the sequence. Ground truth is the colour camera's
optical centre in the world: camera-to-world with OpenCV axes, used as is. Depth is ``value / 5000``.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..base import FrameSource
from ..frame import DatasetError, Frame
from ..io import check_intrinsics, read_rgbd

# Calibrated colour intrinsics published by TUM per Kinect, and the ROS default that TUM's depth
# registration assumes (used when the camera cannot be told from the path).
TUM_INTRINSICS: dict[str, tuple[float, float, float, float]] = {
    "fr1": (517.3, 516.5, 318.6, 255.3),
    "fr2": (520.9, 521.0, 325.1, 249.7),
    "fr3": (535.4, 539.2, 320.1, 247.6),
    "default": (525.0, 525.0, 319.5, 239.5),
}


def read_tum_list(path: Path, n_values: int) -> tuple[np.ndarray, list[list[str]]]:
    """Parse a TUM text list: (timestamps float64 seconds, remaining fields per line); ``#`` lines skipped."""
    if not path.is_file():
        raise DatasetError(f"{path}: file is missing")
    stamps, rows = [], []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != n_values + 1:
            raise DatasetError(f"{path}:{line_no}: expected {n_values + 1} fields, got {len(fields)}")
        try:
            stamps.append(float(fields[0]))
        except ValueError:
            raise DatasetError(f"{path}:{line_no}: bad timestamp {fields[0]!r}") from None
        rows.append(fields[1:])
    return np.asarray(stamps, dtype=np.float64), rows


def nearest(sorted_times: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query: (index of the nearest time in ``sorted_times``, absolute difference in seconds)."""
    right = np.clip(np.searchsorted(sorted_times, queries), 1, len(sorted_times) - 1)
    left = right - 1
    use_right = np.abs(sorted_times[right] - queries) < np.abs(sorted_times[left] - queries)
    idx = np.where(use_right, right, left)
    return idx, np.abs(sorted_times[idx] - queries)


def poses_from_tum(rows: np.ndarray) -> np.ndarray:
    """N x 7 ``tx ty tz qx qy qz qw`` -> N x 4 x 4 float64 camera-to-world matrices."""
    from scipy.spatial.transform import Rotation  # here: importing scipy.spatial costs every command's start-up

    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, :3] = Rotation.from_quat(rows[:, 3:7]).as_matrix()
    poses[:, :3, 3] = rows[:, :3]
    return poses


def camera_from_path(root: Path) -> str:
    """'fr1'/'fr2'/'fr3' from a TUM sequence name such as ``rgbd_dataset_freiburg1_desk``, else 'default'."""
    match = re.search(r"freiburg(\d)", root.resolve().name)
    key = f"fr{match.group(1)}" if match else "default"
    return key if key in TUM_INTRINSICS else "default"


class TUMSource(FrameSource):
    """Reader for a TUM RGB-D sequence folder.

    Options: ``K`` (3x3 override), ``camera`` ("fr1", "fr2", "fr3" or "default"; None = from the folder
    name, falling back to 525/525/319.5/239.5), ``depth_scale`` (5000), ``max_dt`` (0.02 s),
    ``max_pose_gap`` (0.1 s). ``index`` is the frame's position in the associated list; ``timestamp``
    is the depth image's.
    """

    format_name = "tum"

    def __init__(self, root: str | Path, start: int = 0, stop: int | None = None, stride: int = 1, *,
                 K: np.ndarray | None = None, camera: str | None = None, depth_scale: float = 5000.0,
                 max_dt: float = 0.02, max_pose_gap: float = 0.1):
        if camera is not None and camera not in TUM_INTRINSICS:
            raise ValueError(f"camera must be one of {sorted(TUM_INTRINSICS)}, got {camera!r}")
        self.depth_scale, self.max_dt, self.max_pose_gap = float(depth_scale), float(max_dt), float(max_pose_gap)
        if K is not None:
            self.K = check_intrinsics(K, "K argument")
        else:
            fx, fy, cx, cy = TUM_INTRINSICS[camera or camera_from_path(Path(root))]
            self.K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        super().__init__(root, start, stop, stride)

    def _associate(self) -> None:
        depth_t, depth_rows = read_tum_list(self.root / "depth.txt", 1)
        rgb_t, rgb_rows = read_tum_list(self.root / "rgb.txt", 1)
        if len(depth_t) == 0 or len(rgb_t) == 0:
            raise DatasetError(f"{self.root}: rgb.txt or depth.txt lists no images")
        rgb_order = np.argsort(rgb_t)
        match, dt = nearest(rgb_t[rgb_order], depth_t)
        keep = np.flatnonzero(dt <= self.max_dt)
        keep = keep[np.argsort(depth_t[keep], kind="stable")]
        self._times = depth_t[keep]
        self._depth = [self.root / depth_rows[k][0] for k in keep]
        self._color = [self.root / rgb_rows[rgb_order[match[k]]][0] for k in keep]
        self._pose_table = self._interpolated_poses(self._times)

    def _interpolated_poses(self, times: np.ndarray) -> np.ndarray:
        gt_path = self.root / "groundtruth.txt"
        gt_t, gt_rows = read_tum_list(gt_path, 7)
        poses = np.full((len(times), 4, 4), np.nan)
        if len(gt_t) < 1 or len(times) == 0:
            return poses
        try:
            values = np.asarray(gt_rows, dtype=np.float64)
        except ValueError:
            raise DatasetError(f"{gt_path}: non-numeric pose values") from None
        order = np.argsort(gt_t)
        gt_t, values = gt_t[order], values[order]
        if not np.all(np.isfinite(values)) or np.any(np.linalg.norm(values[:, 3:], axis=1) < 1e-6):
            raise DatasetError(f"{gt_path}: non-finite pose or zero quaternion")
        idx, dt = nearest(gt_t, times)
        ok_nearest = dt <= self.max_dt
        poses[ok_nearest] = poses_from_tum(values[idx[ok_nearest]])
        if len(gt_t) >= 2:
            right = np.searchsorted(gt_t, times)
            inside = (right > 0) & (right < len(gt_t))
            inside[inside] &= (gt_t[right[inside]] - gt_t[right[inside] - 1]) <= self.max_pose_gap
            if np.any(inside):
                poses[inside] = self._interpolate(gt_t, values, times[inside], right[inside])
        return poses

    @staticmethod
    def _interpolate(gt_t: np.ndarray, values: np.ndarray, times: np.ndarray, right: np.ndarray) -> np.ndarray:
        from scipy.spatial.transform import Rotation

        left = right - 1
        w = (times - gt_t[left]) / np.maximum(gt_t[right] - gt_t[left], 1e-12)
        rot_l, rot_r = Rotation.from_quat(values[left, 3:]), Rotation.from_quat(values[right, 3:])
        delta = (rot_l.inv() * rot_r).as_rotvec()
        rotations = rot_l * Rotation.from_rotvec(delta * w[:, None])
        poses = np.tile(np.eye(4), (len(times), 1, 1))
        poses[:, :3, :3] = rotations.as_matrix()
        poses[:, :3, 3] = (1.0 - w)[:, None] * values[left, :3] + w[:, None] * values[right, :3]
        return poses

    def _raw_count(self) -> int:
        self._associate()
        return len(self._times)

    def _intrinsics_name(self) -> str:
        return "the TUM intrinsics given to the reader"

    def _raw_pose_name(self, i: int) -> str:
        return f"groundtruth.txt pose at {self._depth[i].name}"

    def _raw_pose(self, i: int) -> np.ndarray:
        return self._pose_table[i]

    def _raw_frame(self, i: int, pose: np.ndarray) -> Frame:
        color, depth, _ = read_rgbd(self._color[i], self._depth[i], self.depth_scale)
        return Frame(
            index=i,
            timestamp=float(self._times[i]),
            color=color,
            depth=depth,
            K=self.K.copy(),
            pose=pose,
            source=str(self._depth[i]),
            meta={"color_path": str(self._color[i]), "depth_path": str(self._depth[i])},
        )
