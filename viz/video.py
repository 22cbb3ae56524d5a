"""Per-frame mask overlays with persistent object ids, and writing frame sequences as MP4 or GIF.

Colours come from ``viz.overlay.id_color``: an object id has the same colour in every frame and video.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from viz.annotate import draw_title
from viz.overlay import overlay_masks


def masks_from_id_image(id_image: np.ndarray, ignore: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Split an H x W integer id image (e.g. ``InstanceMap.visible_from(...).id_image``) into
    (N x H x W bool masks, N int64 ids), ids ascending, pixels equal to ``ignore`` left out."""
    ids_image = np.asarray(id_image)
    if ids_image.ndim != 2 or not np.issubdtype(ids_image.dtype, np.integer):
        raise ValueError(f"masks_from_id_image: need an H x W integer image, got {ids_image.dtype} {ids_image.shape}")
    ids = np.unique(ids_image)
    ids = ids[ids != ignore].astype(np.int64)
    return ids_image[None] == ids[:, None, None], ids


def overlay_sequence(
    images: Iterable[np.ndarray], masks: Iterable[np.ndarray], ids: Iterable[np.ndarray],
    captions: Iterable[str] | None = None, alpha: float = 0.5,
) -> Iterator[np.ndarray]:
    """Yield one overlay per frame: ``images`` H x W x 3 uint8 RGB, ``masks`` N_t x H x W bool and ``ids``
    N_t persistent object ids per frame (colours fixed by id), optional caption per frame drawn top-left."""
    captions = iter(captions) if captions is not None else None
    for t, (image, frame_masks, frame_ids) in enumerate(zip(images, masks, ids, strict=True)):
        out = overlay_masks(np.asarray(image), frame_masks, np.asarray(frame_ids, np.int64), alpha=alpha)
        if captions is not None:
            draw_title(out, next(captions))
        yield out


def write_video(frames_rgb: Iterable[np.ndarray], path: str | Path, fps: float = 10.0) -> Path:
    """Write H x W x 3 uint8 RGB frames (all the same size) to ``path``: MP4 (cv2 'mp4v') for .mp4/.avi/.mov,
    an animated GIF (Pillow, looping) for .gif. Odd sizes are padded to even for MP4. Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".avi", ".mov", ".gif"):
        raise ValueError(f"write_video({path}): unknown extension {suffix!r}; use .mp4 or .gif")
    if not float(fps) > 0:
        raise ValueError(f"write_video({path}): fps must be > 0, got {fps}")
    if not path.parent.is_dir():
        raise OSError(f"write_video({path}): folder {path.parent} does not exist")
    frames = _checked_frames(frames_rgb, path)
    if suffix == ".gif":
        return _write_gif(frames, path, fps)
    return _write_mp4(frames, path, fps)


def _checked_frames(frames_rgb: Iterable[np.ndarray], path: Path) -> Iterator[np.ndarray]:
    shape = None
    count = 0
    for k, frame in enumerate(frames_rgb):
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(
                f"write_video({path}): frame {k} must be H x W x 3 uint8 RGB, got {frame.dtype} {frame.shape}")
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise ValueError(f"write_video({path}): frame {k} is {frame.shape}, the first was {shape}")
        count += 1
        yield frame
    if count == 0:
        raise ValueError(f"write_video({path}): no frames given")


def _write_mp4(frames: Iterator[np.ndarray], path: Path, fps: float) -> Path:
    writer = None
    try:
        for frame in frames:
            frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps),
                                         (frame.shape[1], frame.shape[0]))
                if not writer.isOpened():
                    raise OSError(f"write_video({path}): cv2.VideoWriter could not open the file with codec mp4v")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    return path


def _write_gif(frames: Iterator[np.ndarray], path: Path, fps: float) -> Path:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000.0 / fps)), loop=0,
                   optimize=False)
    return path
