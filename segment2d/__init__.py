"""Per-frame masks: SAM-family models, the automatic mask generator, the weight-free geometric generator."""
from .types import MaskGenerator, MaskSet, boxes_from_masks

__all__ = ["MaskGenerator", "MaskSet", "boxes_from_masks"]
