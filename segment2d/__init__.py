"""Per-frame masks: SAM-family models, the automatic mask generator, the weight-free geometric generator.

``make_generator("geometric")`` (the default, no weights) or ``make_generator("sam", checkpoint=PATH)``.
The SAM model code (``segment2d.build``, ``segment2d.predictor``) imports torch; it is loaded on demand.
"""
from .types import MaskGenerator, MaskSet, boxes_from_masks, one_level_masks
from .factory import available_generators, make_generator

__all__ = ["MaskGenerator", "MaskSet", "available_generators", "boxes_from_masks", "make_generator", "one_level_masks"]
