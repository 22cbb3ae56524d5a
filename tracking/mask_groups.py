"""Which of a frame's kept masks a coarser mask of the same frame holds together (``mask_groups``).

A multi-level generator (the weight-free hierarchy: geometry, colour, depth-connected objects, unions of
parts; SAM's three outputs per prompt) offers an object whole at a coarse level and in parts at finer ones.
The partition the tracker sees keeps the finest masks (``exclusive_partition``: smaller masks win), so an
object whose parts are separate masks at the finest level looks, to the tracker, as if the frame had
separated them. A coarser mask holding both parts says the frame did not: the generator drew one region
around them at some level. ``grow_by_vote`` counts such a frame as holding the pair together, never as
separating it: a frame separates two surfaces only when a boundary of every level lies between them.
"""
from __future__ import annotations

import numpy as np

from segment2d.types import MaskCrops, MaskSet

from .config import AssociationConfig


def mask_groups(masks: MaskSet | MaskCrops, selected: np.ndarray, owner: np.ndarray, hold_share: float) -> tuple[np.ndarray, np.ndarray]:
    """(kept row, holder) pairs: for each row of the partition (``selected``: its rows' indices in
    ``masks``; ``owner``: H x W row of each pixel, -1 none), the other masks of ``masks`` holding at least
    ``hold_share`` of the row's pixels, by their index in ``masks``. Structure masks (``is_structure``:
    floor, walls) hold nothing: a plane around an object is its background, not a coarser view of it.
    Rows sorted, holders increasing within a row."""
    selected = np.asarray(selected, np.int64)
    owner = np.asarray(owner)
    if selected.size == 0 or len(masks) <= 1:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows = selected.size
    area = np.bincount(owner[owner >= 0].ravel(), minlength=rows)
    structure = np.asarray(masks.extra.get("is_structure", np.zeros(len(masks), bool)), bool)
    found_rows, found_holders = [], []
    placed = masks.placed_crops()
    for m in np.flatnonzero(~structure).tolist():
        x0, y0, window = placed[m]
        under = owner[y0:y0 + window.shape[0], x0:x0 + window.shape[1]][window]
        counts = np.bincount(under[under >= 0], minlength=rows)
        held = np.flatnonzero((counts >= hold_share * np.maximum(area, 1)) & (area > 0) & (selected != m))
        found_rows.append(held)
        found_holders.append(np.full(held.size, m, np.int64))
    row = np.concatenate(found_rows) if found_rows else np.zeros(0, np.int64)
    holder = np.concatenate(found_holders) if found_holders else np.zeros(0, np.int64)
    order = np.lexsort((holder, row))
    return row[order], holder[order]


def held_together(segment_rows: np.ndarray, groups: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """S x S bool: segments (``segment_rows``: each one's row of the partition) that one coarser mask holds
    both of (``mask_groups``' pairs); the diagonal is True (one segment holds itself)."""
    segment_rows = np.asarray(segment_rows, np.int64)
    row, holder = groups
    together = np.eye(segment_rows.size, dtype=bool)
    if row.size == 0:
        return together
    holders, column = np.unique(holder, return_inverse=True)
    by_row = np.zeros((int(max(row.max(), segment_rows.max(initial=0))) + 1, holders.size), bool)
    by_row[row, column] = True
    member = by_row[segment_rows].astype(np.int32)
    return together | ((member @ member.T) > 0)


def coarse_together(config: AssociationConfig, masks: MaskSet | MaskCrops, selected: np.ndarray, owner: np.ndarray,
                    segments: list) -> np.ndarray | None:
    """``held_together`` for a frame's lifted ``segments`` (each one's ``mask_index`` is its partition row)
    when ``config.grow_by_vote`` and ``config.coarse_masks_hold`` ask for it; None otherwise. A mask
    holds a row when it holds ``config.cover_share`` of its pixels (the share by which a segment covers
    an object)."""
    if not (config.grow_by_vote and config.coarse_masks_hold) or not segments:
        return None
    rows = np.array([s.mask_index for s in segments], np.int64)
    return held_together(rows, mask_groups(masks, selected, owner, config.cover_share))
