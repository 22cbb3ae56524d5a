"""Small file helpers shared by every reader: images, depth, text matrices, intrinsics scaling.

Every helper raises :class:`DatasetError` naming the file and the problem instead of returning ``None``
(cv2's habit) or letting a numpy traceback escape.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import cv2
import numpy as np

from .frame import DatasetError

# Saturated uint16 value: 7-Scenes writes it for "no reading"; no sensor here measures that far.
DEPTH_INVALID_VALUES: tuple[int, ...] = (65535,)

# Colour and depth may differ in size (ScanNet 1296x968 vs 640x480) but not in shape: an aspect ratio
# off by more than this means the wrong image was paired.
MAX_ASPECT_MISMATCH = 0.05


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"


def _read_image(path: Path, flags: int) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file is missing")
    data = np.fromfile(str(path), dtype=np.uint8)
    _check_complete(path, data)
    with _quiet_stderr():  # libpng / libjpeg print their own line on bad data; ours names the file
        image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: cannot decode the image (corrupt or not an image)")
    return image


def _check_complete(path: Path, data: np.ndarray) -> None:
    """DatasetError for a PNG without its closing IEND chunk or a JPEG without its end-of-image marker:
    a truncated file, which OpenCV decodes partly (JPEG: a grey lower part) or with a libpng message."""
    head, tail = data[:8].tobytes(), data[-64:].tobytes()
    if head == PNG_SIGNATURE and b"IEND" not in tail:
        raise DatasetError(f"{path}: truncated PNG (no IEND chunk at its end)")
    if head[:2] == JPEG_START and JPEG_END not in tail:
        raise DatasetError(f"{path}: truncated JPEG (no end-of-image marker at its end)")


class _quiet_stderr:
    """Send file descriptor 2 to /dev/null for the duration (C libraries write there directly)."""

    def __enter__(self) -> None:
        sys.stderr.flush()
        self._saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)

    def __exit__(self, *exc_info) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)


def read_color(path: str | Path) -> np.ndarray:
    """Read a colour image as H x W x 3 uint8 RGB (grey images are expanded, alpha is dropped)."""
    image = _read_image(Path(path), cv2.IMREAD_COLOR)
    if image.dtype != np.uint8:
        raise DatasetError(f"{path}: colour image must be 8-bit, got {image.dtype}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_depth(
    path: str | Path, scale: float, invalid_values: tuple[int, ...] = DEPTH_INVALID_VALUES
) -> np.ndarray:
    """Read a single-channel uint16 depth PNG as H x W float32 metres (``value / scale``), 0 = invalid.

    ``scale`` is the number of stored units per metre (ScanNet 1000, TUM 5000, Replica 6553.5).
    """
    if not scale > 0:
        raise DatasetError(f"{path}: depth scale must be positive, got {scale}")
    raw = _read_image(Path(path), cv2.IMREAD_UNCHANGED)
    if raw.ndim != 2:
        raise DatasetError(f"{path}: depth must be a single-channel image, got shape {raw.shape}")
    if raw.dtype != np.uint16:
        raise DatasetError(f"{path}: depth must be 16-bit, got {raw.dtype}")
    return depth_to_metres(raw, scale, invalid_values)


def depth_to_metres(
    raw: np.ndarray, scale: float, invalid_values: tuple[int, ...] = DEPTH_INVALID_VALUES
) -> np.ndarray:
    """Convert stored depth to float32 metres; NaN, inf, negatives and ``invalid_values`` become 0."""
    invalid = np.isin(raw, np.asarray(invalid_values, dtype=raw.dtype)) if invalid_values else False
    metres = (raw.astype(np.float64) / float(scale)).astype(np.float32)
    metres[invalid | ~np.isfinite(metres) | (metres < 0)] = 0.0
    return metres


def read_matrix(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a whitespace-separated text matrix of exactly ``shape`` as float64 (``inf`` is kept)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: matrix file is missing")
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as err:
        raise DatasetError(f"{path}: not a numeric matrix ({err})") from None
    if values.size != shape[0] * shape[1]:
        raise DatasetError(f"{path}: expected a {shape[0]}x{shape[1]} matrix, found {values.size} numbers")
    return values.reshape(shape)


def read_intrinsics(path: str | Path) -> np.ndarray:
    """Read a 3x3 (or ScanNet-style 4x4) pinhole matrix file and return the 3x3 K, float64 pixels."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: intrinsics file is missing")
    n = len(path.read_text().split())
    K = read_matrix(path, (4, 4) if n == 16 else (3, 3))[:3, :3]
    return check_intrinsics(K, str(path))


def check_intrinsics(K: np.ndarray, where: str) -> np.ndarray:
    """Return ``K`` as float64 3x3 after checking it is a finite pinhole matrix with positive focals."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise DatasetError(f"{where}: intrinsics must be a finite 3x3 matrix with positive focals, got {K.tolist()}")
    return K


def check_intrinsics_fit(K: np.ndarray, hw: tuple[int, int], where: str, intrinsics: str) -> None:
    """DatasetError unless ``K``'s principal point lies in the middle half of an H x W = ``hw`` image.

    Real cameras put it within a few per cent of the centre; intrinsics for another resolution (640x480
    values on a 320x240 depth image) put it at the edge or beyond, and would misplace every point.
    ``where``: the image file; ``intrinsics``: where K came from.
    """
    h, w = hw
    cx, cy = float(K[0, 2]), float(K[1, 2])
    if abs(cx - (w - 1) / 2) > w / 4 or abs(cy - (h - 1) / 2) > h / 4:
        raise DatasetError(
            f"{where}: the intrinsics ({intrinsics}: cx {cx:g}, cy {cy:g}) do not fit this {w}x{h} image "
            f"(principal point outside its middle half): they are for another resolution"
        )


def scale_intrinsics(K: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """Intrinsics of an image resized from ``src_hw`` to ``dst_hw`` (H, W), pixel-centre convention.

    Matches cv2.resize's mapping ``x_dst = (x_src + 0.5) * s - 0.5``, so the principal point moves by the
    half-pixel term as well as by the ratio.
    """
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    K2 = np.array(K, dtype=np.float64)
    K2[0, 0], K2[0, 2] = K2[0, 0] * sx, (K2[0, 2] + 0.5) * sx - 0.5
    K2[1, 1], K2[1, 2] = K2[1, 1] * sy, (K2[1, 2] + 0.5) * sy - 0.5
    K2[0, 1] *= sx
    return K2


def resize_color_to(color: np.ndarray, hw: tuple[int, int], where: str = "colour") -> np.ndarray:
    """Resize RGB ``color`` to (H, W) = ``hw``: INTER_AREA when shrinking, INTER_LINEAR when enlarging.

    Raises DatasetError when the aspect ratios differ by more than MAX_ASPECT_MISMATCH (wrong pairing).
    """
    h, w = color.shape[:2]
    if (h, w) == tuple(hw):
        return color
    aspect_src, aspect_dst = w / h, hw[1] / hw[0]
    if abs(aspect_src / aspect_dst - 1.0) > MAX_ASPECT_MISMATCH:
        raise DatasetError(
            f"{where}: colour is {w}x{h} but depth is {hw[1]}x{hw[0]}; aspect ratios differ too much to resize"
        )
    interp = cv2.INTER_AREA if h * w > hw[0] * hw[1] else cv2.INTER_LINEAR
    return cv2.resize(color, (int(hw[1]), int(hw[0])), interpolation=interp)


def numbered_files(folder: Path, pattern: str) -> dict[int, Path]:
    """Map frame number -> file for names in ``folder`` fully matching regex ``pattern`` (one int group)."""
    regex = re.compile(pattern)
    found: dict[int, Path] = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = regex.fullmatch(path.name)
            if match:
                found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def paired_numbers(
    kind_a: str, files_a: dict[int, Path], kind_b: str, files_b: dict[int, Path], where: Path
) -> list[int]:
    """Sorted frame numbers present in both maps; DatasetError naming a missing file if they differ."""
    only_a = sorted(set(files_a) - set(files_b))
    only_b = sorted(set(files_b) - set(files_a))
    if only_a or only_b:
        lonely, kind, other = (files_a[only_a[0]], kind_a, kind_b) if only_a else (files_b[only_b[0]], kind_b, kind_a)
        raise DatasetError(
            f"{where}: {len(files_a)} {kind_a} files but {len(files_b)} {kind_b} files; "
            f"{lonely.name} ({kind}) has no {other} partner"
        )
    return sorted(files_a)


def read_rgbd(
    color_path: Path, depth_path: Path, depth_scale: float, invalid_values: tuple[int, ...] = DEPTH_INVALID_VALUES
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Read a colour/depth pair: (colour resized to depth's size, depth metres, original colour (H, W))."""
    depth = read_depth(depth_path, depth_scale, invalid_values)
    color = read_color(color_path)
    return resize_color_to(color, depth.shape, str(color_path)), depth, color.shape[:2]
