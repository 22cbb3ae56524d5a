"""Posed colour images without depth: a phone or drone video with poses from SLAM or COLMAP.

Layouts (detected in this order):

- ``transforms.json`` (nerfstudio / instant-ngp / Blender): ``frames[].file_path`` and
  ``frames[].transform_matrix`` (camera-to-world, OpenGL axes: x right, y up, z backwards), intrinsics
  ``fl_x fl_y cx cy w h`` (+ ``k1 k2 p1 p2``) at the top or per frame, or ``camera_angle_x``
  (instant-ngp; principal point at the image centre).
- A COLMAP text model: ``cameras.txt`` + ``images.txt`` in the root, ``sparse/0/`` or ``sparse/``; images
  in ``images/`` (else the root). ``images.txt`` holds world-to-camera quaternions (w x y z) and
  translations, OpenCV axes. Camera models PINHOLE, SIMPLE_PINHOLE, SIMPLE_RADIAL, RADIAL and OPENCV
  (the last three are undistorted to their pinhole K).
- ScanNet's ``posed_images`` layout without the depth PNGs (``NNNNN.jpg`` + ``NNNNN.txt`` camera-to-world,
  ``intrinsic.txt``) and the 7-Scenes layout without ``frame-*.depth.png`` (``frame-N.color.{png,jpg}`` +
  ``frame-N.pose.txt``, ``camera-intrinsics.txt``).

Frames come out in the order of their file names (the video's order, which stereo partners rely on),
scaled to at most ``max_width`` pixels wide (``K`` scaled with them), with an all-zero depth (no
measurement) and ``meta["depth"] = "none"``; ``has_depth`` is False, so ``scene run`` makes depth by
stereo (``lift3d.stereo``) or renders it from a ``--scan`` mesh. ``scale`` converts the poses' unit to
metres: COLMAP and most NeRF captures are up to scale, and the mapping assumes metres.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..base import FrameSource
from ..frame import DatasetError, Frame
from ..io import check_intrinsics, numbered_files, read_color, read_intrinsics, read_matrix, scale_intrinsics

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
# COLMAP camera models whose parameters map onto (fx, fy, cx, cy, OpenCV distortion k1 k2 p1 p2)
COLMAP_MODELS = {
    "SIMPLE_PINHOLE": lambda p: (p[0], p[0], p[1], p[2], ()),
    "PINHOLE": lambda p: (p[0], p[1], p[2], p[3], ()),
    "SIMPLE_RADIAL": lambda p: (p[0], p[0], p[1], p[2], (p[3], 0.0, 0.0, 0.0)),
    "RADIAL": lambda p: (p[0], p[0], p[1], p[2], (p[3], p[4], 0.0, 0.0)),
    "OPENCV": lambda p: (p[0], p[1], p[2], p[3], (p[4], p[5], p[6], p[7])),
}
COLMAP_PARAM_COUNT = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8}


@dataclass(frozen=True)
class Camera:
    """A pinhole camera at its native ``width`` x ``height`` (pixels; 0 x 0: whatever size the images
    have) with OpenCV distortion k1 k2 p1 p2 (may be empty)."""

    K: np.ndarray
    width: int
    height: int
    distortion: tuple = ()


@dataclass(frozen=True)
class PosedImage:
    """One image: its file, camera-to-world pose (OpenCV axes, the layout's unit), camera, and where the
    pose was read (for messages)."""

    path: Path
    pose: np.ndarray
    camera: Camera | None
    pose_source: str


def find_posed_rgb_layout(root: Path) -> str | None:
    """"transforms", "colmap", "scannet-posed" or "7scenes" when ``root`` holds posed colour images
    without depth in that layout, else None."""
    root = Path(root)
    if not root.is_dir():
        return None
    if (root / "transforms.json").is_file():
        return "transforms"
    if colmap_model_dir(root) is not None:
        return "colmap"
    folder = root / "posed_images" if (root / "posed_images").is_dir() else root
    if (folder / "intrinsic.txt").is_file() and numbered_files(folder, r"(\d+)\.(?:jpg|jpeg)") \
            and not numbered_files(folder, r"(\d+)\.png"):
        return "scannet-posed"
    if any(root.glob("frame-*.pose.txt")) and any(root.glob("frame-*.color.*")) and not any(root.glob("frame-*.depth.png")):
        return "7scenes"
    return None


def colmap_model_dir(root: Path) -> Path | None:
    """The folder holding ``cameras.txt`` and ``images.txt``: the root, ``sparse/0`` or ``sparse``."""
    for folder in (root, root / "sparse" / "0", root / "sparse"):
        if (folder / "cameras.txt").is_file() and (folder / "images.txt").is_file():
            return folder
    return None


class PosedRGBSource(FrameSource):
    """Posed colour images without depth (layouts in the module docstring).

    Options: ``layout`` ("auto" or one of the layouts), ``max_width`` (pixels; larger images are scaled
    down, 0 keeps them), ``scale`` (metres per unit of the poses), ``K`` (3x3 override at the images'
    native size), ``fps`` (nominal, for timestamps).
    """

    format_name = "posed-rgb"
    has_depth = False

    def __init__(self, root: str | Path, start: int = 0, stop: int | None = None, stride: int = 1, *,
                 layout: str = "auto", max_width: int = 640, scale: float = 1.0, K: np.ndarray | None = None,
                 fps: float = 30.0):
        if not scale > 0 or not np.isfinite(scale):
            raise ValueError(f"scale must be a positive number of metres per unit, got {scale}")
        if max_width < 0:
            raise ValueError(f"max_width must be >= 0 (0 keeps the images' size), got {max_width}")
        self.layout_choice, self.max_width, self.scale, self.fps = layout, int(max_width), float(scale), float(fps)
        self._K_override = None if K is None else check_intrinsics(K, "K argument")
        super().__init__(root, start, stop, stride)

    # -- listing ------------------------------------------------------------------------------------
    def _raw_count(self) -> int:
        layout = find_posed_rgb_layout(self.root) if self.layout_choice == "auto" else self.layout_choice
        readers = {"transforms": _read_transforms, "colmap": _read_colmap, "scannet-posed": _read_scannet_posed,
                   "7scenes": _read_seven_scenes}
        if layout not in readers:
            if self.layout_choice != "auto":
                raise ValueError(f"layout must be auto or one of {sorted(readers)}, got {self.layout_choice!r}")
            raise DatasetError(f"{self.root}: no posed-RGB layout found (transforms.json; COLMAP cameras.txt + "
                               f"images.txt here, in sparse/0 or sparse; posed_images/ with intrinsic.txt; "
                               f"frame-*.color.* with frame-*.pose.txt)")
        self.layout = layout
        self._images = readers[layout](self.root)
        return len(self._images)

    def _raw_pose(self, i: int) -> np.ndarray:
        pose = self._images[i].pose.copy()
        pose[:3, 3] *= self.scale
        return pose

    def _raw_pose_name(self, i: int) -> str:
        return self._images[i].pose_source

    def _intrinsics_name(self) -> str:
        return "K argument" if self._K_override is not None else f"the {self.layout} camera of {self.root}"

    # -- reading ------------------------------------------------------------------------------------
    def _raw_frame(self, i: int, pose: np.ndarray) -> Frame:
        image = self._images[i]
        if not image.path.is_file():
            raise DatasetError(f"{image.path}: image file is missing (listed by {image.pose_source})")
        color = read_color(image.path)
        h, w = color.shape[:2]
        camera = self._camera_for(image, (h, w))
        if camera.distortion and any(camera.distortion):
            color = cv2.undistort(color, camera.K, np.asarray(camera.distortion, np.float64))
        K = camera.K
        if self.max_width and w > self.max_width:
            size = (int(round(h * self.max_width / w)), self.max_width)
            color = cv2.resize(color, size[::-1], interpolation=cv2.INTER_AREA)
            K = scale_intrinsics(K, (h, w), size)
        depth = np.zeros(color.shape[:2], np.float32)
        return Frame(index=i, timestamp=i / self.fps, color=np.ascontiguousarray(color), depth=depth, K=K,
                     pose=pose, source=str(image.path), meta={"depth": "none", "layout": self.layout})

    def _camera_for(self, image: PosedImage, hw: tuple[int, int]) -> Camera:
        """The image's camera at the image's actual size (a model for full-size images also serves
        images downscaled by a whole factor, as COLMAP's ``images_2`` folders are)."""
        h, w = hw
        if self._K_override is not None:
            return Camera(self._K_override, w, h)
        camera = image.camera
        if camera is None:
            raise DatasetError(f"{image.path}: no intrinsics for this image ({image.pose_source})")
        if (camera.height, camera.width) == (h, w) or camera.width == 0:  # 0: the layout's K is for its images' size
            return camera
        if abs(camera.width / camera.height - w / h) > 0.01 * w / h:
            raise DatasetError(f"{image.path}: the image is {w}x{h} but its camera ({image.pose_source}) is "
                               f"{camera.width}x{camera.height}; the intrinsics do not fit it")
        return Camera(scale_intrinsics(camera.K, (camera.height, camera.width), (h, w)), w, h, camera.distortion)


# ---- transforms.json -----------------------------------------------------------------------------------


def _read_transforms(root: Path) -> list[PosedImage]:
    path = root / "transforms.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: not readable JSON ({err})") from None
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not frames:
        raise DatasetError(f"{path}: no 'frames' list (expected nerfstudio / instant-ngp transforms.json)")
    images = []
    for n, entry in enumerate(frames):
        where = f"{path} frames[{n}]"
        if not isinstance(entry, dict) or "file_path" not in entry or "transform_matrix" not in entry:
            raise DatasetError(f"{where}: needs 'file_path' and 'transform_matrix'")
        try:
            matrix = np.asarray(entry["transform_matrix"], np.float64)
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: transform_matrix is not numeric") from None
        if matrix.shape == (3, 4):
            matrix = np.vstack([matrix, [0.0, 0.0, 0.0, 1.0]])
        if matrix.shape != (4, 4):
            raise DatasetError(f"{where}: transform_matrix must be 4x4, got shape {matrix.shape}")
        image = _resolve_image(root, str(entry["file_path"]))
        images.append(PosedImage(image, matrix @ OPENGL_TO_OPENCV, _transforms_camera({**data, **entry}, image, where),
                                 where))
    return sorted(images, key=lambda im: _natural_key(im.path.name))


def _transforms_camera(fields: dict, image: Path, where: str) -> Camera | None:
    """The camera of a transforms.json frame (its own keys over the file's), sized from the image when
    ``w`` / ``h`` are absent; None when the file has no intrinsics (then ``K`` must be given)."""
    try:
        w, h = fields.get("w"), fields.get("h")
        if (w is None or h is None) and image.is_file():
            w, h = _image_size(image)
        if w is None or h is None:
            return None
        w, h = int(w), int(h)
        if "fl_x" in fields:
            fx = float(fields["fl_x"])
            fy = float(fields.get("fl_y", fx))
        elif "camera_angle_x" in fields:
            fx = 0.5 * w / np.tan(0.5 * float(fields["camera_angle_x"]))
            fy = 0.5 * h / np.tan(0.5 * float(fields["camera_angle_y"])) if "camera_angle_y" in fields else fx
        else:
            return None
        # nerfstudio and instant-ngp put pixel centres at +0.5; this project (OpenCV) at integers
        cx, cy = float(fields.get("cx", w / 2)) - 0.5, float(fields.get("cy", h / 2)) - 0.5
        distortion = tuple(float(fields.get(k, 0.0)) for k in ("k1", "k2", "p1", "p2"))
    except (TypeError, ValueError, AttributeError) as err:
        raise DatasetError(f"{where}: bad camera fields ({err})") from None
    K = check_intrinsics(np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), where)
    return Camera(K, w, h, distortion if any(distortion) else ())


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header alone."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as err:
        raise DatasetError(f"{path}: not a readable image ({err})") from None


def _resolve_image(root: Path, file_path: str) -> Path:
    """The image a transforms.json ``file_path`` names; Blender-style paths omit the extension."""
    path = (root / file_path).resolve() if not Path(file_path).is_absolute() else Path(file_path)
    if path.is_file() or path.suffix in IMAGE_SUFFIXES:
        return path
    for suffix in IMAGE_SUFFIXES:
        if path.with_name(path.name + suffix).is_file():
            return path.with_name(path.name + suffix)
    return path


# ---- COLMAP text model ---------------------------------------------------------------------------------


def _read_colmap(root: Path) -> list[PosedImage]:
    model = colmap_model_dir(root)
    cameras = _read_colmap_cameras(model / "cameras.txt")
    image_dir = root / "images" if (root / "images").is_dir() else root
    images = []
    lines = (model / "images.txt").read_text(errors="replace").splitlines()
    expect_points = False
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            if not text and expect_points:  # an image with no 2D points has an empty second line
                expect_points = False
            continue
        if expect_points:  # the POINTS2D line after each image line
            expect_points = False
            continue
        where = f"{model / 'images.txt'} line {number}"
        parts = text.split()
        if len(parts) < 10:
            raise DatasetError(f"{where}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, got {text[:80]!r}")
        try:
            q, t, camera_id = np.array(parts[1:5], np.float64), np.array(parts[5:8], np.float64), int(parts[8])
        except ValueError:
            raise DatasetError(f"{where}: non-numeric pose or camera id in {text[:80]!r}") from None
        if camera_id not in cameras:
            raise DatasetError(f"{where}: camera {camera_id} is not in {model / 'cameras.txt'}")
        name = " ".join(parts[9:])
        images.append(PosedImage(image_dir / name, _colmap_pose(q, t), cameras[camera_id], where))
        expect_points = True
    return sorted(images, key=lambda im: _natural_key(im.path.name))


def _read_colmap_cameras(path: Path) -> dict[int, Camera]:
    cameras = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{path} line {number}"
        parts = text.split()
        model = parts[1] if len(parts) > 1 else ""
        if model not in COLMAP_MODELS:
            raise DatasetError(f"{where}: camera model {model!r} is not supported (supported: "
                               f"{', '.join(COLMAP_MODELS)}; undistort the images with COLMAP's image_undistorter)")
        try:
            camera_id, width, height = int(parts[0]), int(parts[2]), int(parts[3])
            params = [float(p) for p in parts[4:]]
        except (ValueError, IndexError):
            raise DatasetError(f"{where}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[], got {text[:80]!r}") from None
        if len(params) != COLMAP_PARAM_COUNT[model]:
            raise DatasetError(f"{where}: {model} has {COLMAP_PARAM_COUNT[model]} parameters, found {len(params)}")
        fx, fy, cx, cy, distortion = COLMAP_MODELS[model](params)
        # COLMAP puts pixel centres at +0.5; this project (OpenCV) at integers
        K = check_intrinsics(np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]]), where)
        cameras[camera_id] = Camera(K, width, height, tuple(distortion) if any(distortion) else ())
    if not cameras:
        raise DatasetError(f"{path}: no camera in the file")
    return cameras


def _colmap_pose(q: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Camera-to-world from COLMAP's world-to-camera quaternion (w x y z) and translation; a zero or
    non-finite quaternion gives a NaN pose, which the reader skips with a warning."""
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-9 or not np.all(np.isfinite(t)):
        return np.full((4, 4), np.nan)
    w, x, y, z = q / norm
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                  [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                  [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = R.T, -R.T @ t
    return pose


# ---- ScanNet posed_images / 7-Scenes without depth -----------------------------------------------------


def _read_scannet_posed(root: Path) -> list[PosedImage]:
    folder = root / "posed_images" if (root / "posed_images").is_dir() else root
    camera = Camera(read_intrinsics(folder / "intrinsic.txt"), 0, 0)
    color = numbered_files(folder, r"(\d+)\.(?:jpg|jpeg)")
    return [PosedImage(path, _pose_file(path.with_suffix(".txt"), path), camera, str(path.with_suffix(".txt")))
            for path in color.values()]


def _read_seven_scenes(root: Path) -> list[PosedImage]:
    from .sevenscenes import SEVEN_SCENES_K

    intrinsics = root / "camera-intrinsics.txt"
    camera = Camera(read_intrinsics(intrinsics) if intrinsics.is_file() else SEVEN_SCENES_K.copy(), 0, 0)
    color = numbered_files(root, r"frame-(\d+)\.color\.(?:png|jpg)")
    images = []
    for number, path in color.items():
        pose_path = root / f"frame-{number:06d}.pose.txt"
        images.append(PosedImage(path, _pose_file(pose_path, path), camera, str(pose_path)))
    return images


def _pose_file(pose_path: Path, image: Path) -> np.ndarray:
    if not pose_path.is_file():
        raise DatasetError(f"{pose_path}: pose file is missing for {image.name}")
    return read_matrix(pose_path, (4, 4))


def _natural_key(name: str) -> list:
    """Sort key putting frame_2 before frame_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
