"""Contact sheet: one row per frame with RGB, depth (colour-mapped) and instance ids (random colours)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..frame import Frame


def colorize_depth(depth: np.ndarray, max_depth: float | None = None) -> np.ndarray:
    """H x W float32 metres -> H x W x 3 uint8 RGB (turbo colour map; invalid = black)."""
    valid = depth > 0
    top = max_depth or (float(depth[valid].max()) if valid.any() else 1.0)
    scaled = np.clip(depth / max(top, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def colorize_ids(ids: np.ndarray, seed: int = 7) -> np.ndarray:
    """H x W integer ids -> H x W x 3 uint8 RGB with a fixed random colour per id (0 = black)."""
    palette = np.random.default_rng(seed).integers(40, 256, size=(int(ids.max()) + 1, 3)).astype(np.uint8)
    palette[0] = 0
    return palette[ids]


def render_contact_sheet(frames: list[Frame], path: str | Path, max_depth: float | None = None) -> Path:
    """Write a PNG with, per frame, RGB | depth | instance ids side by side; returns the path."""
    if not frames:
        raise ValueError("render_contact_sheet: no frames given")
    rows = []
    for frame in frames:
        ids = frame.instance_ids if frame.instance_ids is not None else np.zeros(frame.depth.shape, np.int32)
        rows.append(np.concatenate([frame.color, colorize_depth(frame.depth, max_depth), colorize_ids(ids)], axis=1))
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write PNG")
    return path
