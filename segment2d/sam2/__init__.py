"""Our PyTorch SAM 2.1 (Hiera image encoder, prompt encoder and mask decoder with high-resolution
features, memory encoder and memory attention), its image and video predictors, and the automatic mask
generator with mask propagation between keyframes. Loads the released ``sam2.1_hiera_*.pt`` files."""
from .build import RELEASED_FILES, SAM2_CONFIGS, build_sam2, infer_sam2_type, load_sam2
from .model import Sam2Config, Sam2Model

__all__ = ["RELEASED_FILES", "SAM2_CONFIGS", "Sam2Config", "Sam2Model", "build_sam2", "infer_sam2_type", "load_sam2"]
