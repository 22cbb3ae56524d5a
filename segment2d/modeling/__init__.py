"""Our PyTorch implementation of SAM, MobileSAM and HQ-SAM (module and parameter names match the released
checkpoints, so they load with strict=True)."""
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .mask_decoder_hq import MaskDecoderHQ
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer

__all__ = ["ImageEncoderViT", "MaskDecoder", "MaskDecoderHQ", "PromptEncoder", "Sam", "TinyViT", "TwoWayTransformer"]
