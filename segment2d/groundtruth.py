"""The frame's ground-truth instance masks as a mask generator: the upper bound of everything after 2D.

Synthetic scenes (and the project layout with ``instances/``) carry ``Frame.instance_ids``; mapping
with these masks measures what lifting, association and refinement can reach with perfect 2D masks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scene.datasets import Frame

from .types import MaskSet


@dataclass(frozen=True)
class GroundTruthConfig:
    """``min_area``: smallest instance kept, in pixels (tiny slivers at image borders carry no shape)."""

    min_area: int = 30


class GroundTruthMaskGenerator:
    """One mask per instance id > 0 of ``frame.instance_ids`` with at least ``min_area`` pixels: one flat
    level (each pixel has one instance id), so ``one_level``."""

    name = "ground-truth"
    one_level = True
    needs_instance_ids = True  # frames without ``instance_ids`` (real captures) cannot be segmented

    def __init__(self, config: GroundTruthConfig | None = None, **options):
        self.config = config if config is not None else GroundTruthConfig(**options)

    def generate(self, frame: Frame) -> MaskSet:
        if frame.instance_ids is None:
            raise ValueError(f"ground-truth masks: frame {frame.index} has no instance ids "
                             "(only synthetic scenes and project folders with instances/ carry them)")
        ids = frame.instance_ids
        present, area = np.unique(ids[ids > 0], return_counts=True)
        present = present[area >= self.config.min_area]
        masks = ids[None] == present[:, None, None]
        return MaskSet.from_masks(masks, instance_id=present.astype(np.int64))
