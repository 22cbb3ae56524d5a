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


def draw_depth_scale(panel: np.ndarray, top: float) -> np.ndarray:
    """The depth panel with a colour bar on its right edge (0 m at the bottom, ``top`` metres at the top,
    the colour map of ``colorize_depth``) and its values in metres."""
    h, w = panel.shape[:2]
    bar_w, margin = max(6, w // 40), max(4, h // 30)
    if h < 4 * margin or w < 8 * bar_w:
        return panel
    out = panel.copy()
    x1, x0, y0, y1 = w - margin, w - margin - bar_w, margin, h - margin
    levels = np.linspace(255, 0, y1 - y0).astype(np.uint8)[:, None].repeat(bar_w, axis=1)
    bar = cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    out[y0:y1, x0:x1] = bar
    cv2.rectangle(out, (x0 - 1, y0 - 1), (x1, y1), (255, 255, 255), 1)
    scale = max(0.4, h / 800)
    for value, y in ((top, y0), (top / 2, (y0 + y1) // 2), (0.0, y1)):
        text = f"{value:.1f} m"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        at = (x0 - tw - 4, int(np.clip(y + th // 2, th + 1, h - 2)))
        cv2.putText(out, text, at, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, at, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def colorize_ids(ids: np.ndarray, seed: int = 7) -> np.ndarray:
    """H x W integer ids -> H x W x 3 uint8 RGB with a fixed random colour per id (0 = black)."""
    palette = np.random.default_rng(seed).integers(40, 256, size=(int(ids.max()) + 1, 3)).astype(np.uint8)
    palette[0] = 0
    return palette[ids]


def render_contact_sheet(frames: list[Frame], path: str | Path, max_depth: float | None = None) -> Path:
    """Write a PNG with, per frame, RGB | depth (one colour scale for all rows, drawn as a bar with its
    metres on each depth panel) | instance ids side by side; returns the path."""
    if not frames:
        raise ValueError("render_contact_sheet: no frames given")
    top = max_depth or max((float(f.depth.max()) for f in frames), default=0.0) or 1.0  # one scale for every row
    rows = []
    for frame in frames:
        ids = frame.instance_ids if frame.instance_ids is not None else np.zeros(frame.depth.shape, np.int32)
        depth = draw_depth_scale(colorize_depth(frame.depth, top), top)
        rows.append(np.concatenate([frame.color, depth, colorize_ids(ids)], axis=1))
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write PNG")
    return path
