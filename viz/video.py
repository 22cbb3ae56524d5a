"""Per-frame mask overlays with persistent object ids, and writing frame sequences as video (H.264 MP4,
VP9 WebM) or GIF.

Colours come from ``viz.overlay.id_color``: an object id has the same colour in every frame and video.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

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
    captions: Iterable[str] | None = None, alpha: float = 0.5, dimmed: Iterable[np.ndarray] | None = None,
) -> Iterator[np.ndarray]:
    """Yield one overlay per frame: ``images`` H x W x 3 uint8 RGB, ``masks`` N_t x H x W bool and ``ids``
    N_t persistent object ids per frame (colours fixed by id), optional caption per frame drawn top-left
    and optional N_t bools per frame of masks to dim (``overlay_masks``)."""
    captions = iter(captions) if captions is not None else None
    dimmed = iter(dimmed) if dimmed is not None else None
    for t, (image, frame_masks, frame_ids) in enumerate(zip(images, masks, ids, strict=True)):
        out = overlay_masks(np.asarray(image), frame_masks, np.asarray(frame_ids, np.int64), alpha=alpha,
                            dimmed=next(dimmed) if dimmed is not None else None)
        if captions is not None:
            draw_title(out, next(captions))
        yield out


VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".gif")


def write_video(frames_rgb: Iterable[np.ndarray], path: str | Path, fps: float = 10.0) -> Path:
    """Write H x W x 3 uint8 RGB frames (all the same size) to ``path`` in a format browsers and players
    play: H.264 (yuv420p, ``+faststart``) for .mp4/.mov, VP9 for .webm (both via PyAV's FFmpeg), an
    animated GIF (Pillow, looping) for .gif. Odd sizes are padded to even for the video codecs (4:2:0
    needs even sides). Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"write_video({path}): unknown extension {suffix!r}; use one of {', '.join(VIDEO_SUFFIXES)}")
    if not float(fps) > 0:
        raise ValueError(f"write_video({path}): fps must be > 0, got {fps}")
    if not path.parent.is_dir():
        raise OSError(f"write_video({path}): folder {path.parent} does not exist")
    frames = _checked_frames(frames_rgb, path)
    if suffix == ".gif":
        return _write_gif(frames, path, fps)
    try:
        return _write_encoded(frames, path, fps, "libvpx-vp9" if suffix == ".webm" else "libx264")
    except BaseException:
        path.unlink(missing_ok=True)  # never leave a half-written video behind
        raise


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


def _write_encoded(frames: Iterator[np.ndarray], path: Path, fps: float, codec: str) -> Path:
    import av

    options = {"movflags": "+faststart"} if codec == "libx264" else {}  # index first: plays while loading
    with av.open(str(path), mode="w", options=options) as container:
        stream = None
        for frame in frames:
            frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
                stream.options = {"crf": "23"} if codec == "libx264" else {"crf": "32", "b": "0"}
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode(None))  # flush the encoder's delayed frames
    return path


def _write_gif(frames: Iterator[np.ndarray], path: Path, fps: float) -> Path:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000.0 / fps)), loop=0,
                   optimize=False)
    return path
