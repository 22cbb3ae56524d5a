"""2D overlays: masks drawn over a frame in colours fixed by an id, with contours and id labels."""
from __future__ import annotations

import cv2
import numpy as np


def id_color(ids: np.ndarray | int) -> np.ndarray:
    """Deterministic, well-spread RGB uint8 colour per integer id (golden-ratio hue walk); id < 0 is grey."""
    ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
    hue = ((ids * 0.6180339887) % 1.0 * 179).astype(np.uint8)
    sat = (170 + (ids * 37) % 86).astype(np.uint8)
    val = (200 + (ids * 53) % 56).astype(np.uint8)
    hsv = np.stack([hue, sat, val], axis=-1)[None]
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]
    rgb[ids < 0] = 128
    return rgb


def overlay_masks(
    image: np.ndarray,
    masks: np.ndarray,
    ids: np.ndarray | None = None,
    alpha: float = 0.5,
    draw_labels: bool = True,
    dimmed: np.ndarray | None = None,
) -> np.ndarray:
    """Blend N x H x W bool ``masks`` over an H x W x 3 uint8 RGB ``image``.

    Each mask gets the colour of its id (``ids``, default 0..N-1), so the same object has the same colour
    in every frame. Larger masks are drawn first so small ones stay visible. ``dimmed`` (N bools): masks
    drawn in a light grey tint of their colour, unlabelled (floor, walls: the room behind the objects).
    Returns a new RGB image.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"masks of shape {masks.shape} do not match image of shape {image.shape}")
    ids = np.arange(len(masks)) if ids is None else np.asarray(ids)
    colors = id_color(ids) if len(masks) else np.zeros((0, 3), np.uint8)
    dimmed = np.zeros(len(masks), bool) if dimmed is None else np.asarray(dimmed, bool)
    if dimmed.any():
        c = colors[dimmed].astype(np.float32)
        colors = colors.copy()
        colors[dimmed] = (0.35 * c + 0.65 * c.mean(axis=1, keepdims=True)).astype(np.uint8)
    out = image.astype(np.float32)
    order = np.argsort(-masks.sum(axis=(1, 2)), kind="stable")
    for i in order:
        out[masks[i]] = (1 - alpha) * out[masks[i]] + alpha * colors[i]
    out = out.astype(np.uint8)
    for i in order:
        contours, _ = cv2.findContours(masks[i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in colors[i]), 1)
    if draw_labels:
        for i in order[~dimmed[order]]:
            _draw_label(out, masks[i], str(int(ids[i])))
    return out


def _draw_label(image: np.ndarray, mask: np.ndarray, text: str) -> None:
    """Write ``text`` at the mask's most interior pixel (distance-transform peak), white on black."""
    if mask.sum() < 60:
        return
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(dist.argmax()), dist.shape)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.6  # readable at 100% on 640x480 (0.4 was not)
    (w, h), _ = cv2.getTextSize(text, font, scale, 2)
    org = (int(np.clip(x - w // 2, 0, image.shape[1] - w)), int(np.clip(y + h // 2, h, image.shape[0] - 1)))
    cv2.putText(image, text, org, font, scale, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(image, text, org, font, scale, (255, 255, 255), 2, cv2.LINE_AA)
