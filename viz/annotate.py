"""Drawing on rendered images with cv2: id labels, the camera trajectory, a legend, a title, a scale bar.

All positions are pixels (x = column, y = row) of an H x W x 3 uint8 RGB image, drawn in place.
"""
from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
INK = (25, 25, 25)
PAPER = (255, 255, 255)
LABEL_SCALE = 0.6  # id labels: readable at 100% on a 640x480 frame (0.45 was too small to read)


def text_box(image: np.ndarray, text: str, centre: tuple[float, float], scale: float = LABEL_SCALE) -> tuple[int, ...]:
    """(x0, y0, x1, y1) pixels that ``outlined_text`` covers, kept inside the image."""
    (w, h), _ = cv2.getTextSize(text, FONT, scale, 2)
    x = int(np.clip(centre[0] - w / 2, 1, image.shape[1] - w - 1))
    y = int(np.clip(centre[1] + h / 2, h + 1, image.shape[0] - 2))
    return x - 1, y - h - 1, x + w + 1, y + 2


def outlined_text(image: np.ndarray, text: str, centre: tuple[float, float], scale: float = LABEL_SCALE,
                  color: tuple[int, int, int] = PAPER, border: tuple[int, int, int] = INK) -> None:
    """``text`` centred on ``centre`` with a dark border so it reads on any colour."""
    x0, _, _, y1 = text_box(image, text, centre, scale)
    cv2.putText(image, text, (x0 + 1, y1 - 2), FONT, scale, border, 4, cv2.LINE_AA)
    cv2.putText(image, text, (x0 + 1, y1 - 2), FONT, scale, color, 2, cv2.LINE_AA)


def draw_labels(image: np.ndarray, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Id labels at ``positions`` (K x 2 pixels), in the given order of priority: a label that would
    overlap one already drawn is skipped, so crowded maps stay readable. Returns the ids drawn."""
    placed: list[tuple[int, ...]] = []
    drawn = []
    for object_id, (x, y) in zip(np.asarray(ids).tolist(), np.asarray(positions, np.float64).tolist()):
        box = text_box(image, str(object_id), (x, y))
        if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
            continue
        outlined_text(image, str(object_id), (x, y))
        placed.append(box)
        drawn.append(object_id)
    return np.array(drawn, np.int64)


def draw_trajectory(image: np.ndarray, pixels: np.ndarray, valid: np.ndarray | None = None,
                    color: tuple[int, int, int] = (40, 40, 40)) -> None:
    """Camera path as a polyline through ``pixels`` (F x 2, in time order), broken where ``valid`` is
    False (e.g. behind the camera); a green dot marks the first pose and a red one the last."""
    pixels = np.asarray(pixels, np.float64)
    valid = np.ones(len(pixels), bool) if valid is None else np.asarray(valid, bool)
    if len(pixels) == 0 or not valid.any():
        return
    far = np.abs(pixels).max(axis=1) > 1e5  # cv2 coordinates must stay in int range
    valid = valid & ~far
    points = np.round(pixels).astype(np.int32)
    both = valid[1:] & valid[:-1]
    for a, b in zip(points[:-1][both], points[1:][both]):
        cv2.line(image, tuple(int(v) for v in a), tuple(int(v) for v in b), color, 2, cv2.LINE_AA)
    shown = np.flatnonzero(valid)
    cv2.circle(image, tuple(int(v) for v in points[shown[0]]), 6, (30, 170, 60), -1, cv2.LINE_AA)
    cv2.circle(image, tuple(int(v) for v in points[shown[-1]]), 6, (210, 40, 40), -1, cv2.LINE_AA)


def draw_title(image: np.ndarray, text: str) -> None:
    """A title on a white band across the top-left."""
    (w, h), _ = cv2.getTextSize(text, FONT, 0.6, 1)
    _panel(image, 0, 0, w + 16, h + 14)
    cv2.putText(image, text, (8, h + 7), FONT, 0.6, INK, 1, cv2.LINE_AA)


LEGEND_SCALE = 0.42


def legend_width(texts: list[str]) -> int:
    """Width in pixels of the legend panel holding these row texts (0 for none)."""
    return max((cv2.getTextSize(t, FONT, LEGEND_SCALE, 1)[0][0] for t in texts), default=-36) + 36


def draw_legend(image: np.ndarray, rows: list[tuple[tuple[int, int, int] | None, str]]) -> None:
    """A legend panel in the top-right corner: one row per (colour or None, text); a colour draws a
    filled swatch, None a line sample in the trajectory style."""
    if not rows:
        return
    scale, pitch = LEGEND_SCALE, 17
    width = legend_width([text for _, text in rows])
    height = pitch * len(rows) + 8
    x0 = image.shape[1] - width - 6
    _panel(image, x0, 6, width, height)
    for k, (color, text) in enumerate(rows):
        y = 6 + 4 + pitch * k
        if color is None:
            cv2.line(image, (x0 + 6, y + 8), (x0 + 20, y + 8), (40, 40, 40), 2, cv2.LINE_AA)
        else:
            cv2.rectangle(image, (x0 + 6, y + 2), (x0 + 20, y + 14), tuple(int(c) for c in color), -1)
            cv2.rectangle(image, (x0 + 6, y + 2), (x0 + 20, y + 14), INK, 1)
        cv2.putText(image, text, (x0 + 27, y + 13), FONT, scale, INK, 1, cv2.LINE_AA)


def draw_scale_bar(image: np.ndarray, pixels_per_metre: float) -> None:
    """A bar of a round length (0.5, 1, 2 or 5 m ...) in the bottom-left corner."""
    target = image.shape[1] / 6.0 / pixels_per_metre
    lengths = np.array([0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0])
    length = float(lengths[np.argmin(np.abs(np.log(lengths / target)))])
    bar = int(round(length * pixels_per_metre))
    x0, y0 = 14, image.shape[0] - 16
    _panel(image, x0 - 8, y0 - 26, bar + 16, 36)
    cv2.rectangle(image, (x0, y0 - 4), (x0 + bar, y0), INK, -1)
    label = f"{length:g} m"
    (w, _), _ = cv2.getTextSize(label, FONT, 0.45, 1)
    cv2.putText(image, label, (x0 + (bar - w) // 2, y0 - 9), FONT, 0.45, INK, 1, cv2.LINE_AA)


def _panel(image: np.ndarray, x: int, y: int, w: int, h: int, opacity: float = 0.85) -> None:
    """Blend a white rectangle over the image (clipped to it), so text stays readable."""
    x0, y0 = max(int(x), 0), max(int(y), 0)
    x1, y1 = min(int(x + w), image.shape[1]), min(int(y + h), image.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    region = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = (region * (1 - opacity) + 255.0 * opacity).astype(np.uint8)
    cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), (170, 170, 170), 1)
