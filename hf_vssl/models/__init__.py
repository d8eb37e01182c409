"""hf_vssl's transformers classes.

Everything a checkpoint's remote code needs sits flat in this folder (docs/design.md#remote-code): config,
backbones, model classes and the video processor, importing only installed libraries and each
other relatively.
"""

from .backbones import BACKBONES, BackboneSpec, build_backbone, get_backbone_spec, list_backbones
from .configuration_vssl import VSSLConfig
from .modeling_vssl import VSSLForVideoClassification, VSSLModel, VSSLPreTrainedModel
from .processing_vssl import VIDEO_MEAN, VIDEO_STD, VSSLVideoProcessor

__all__ = [
    "BACKBONES",
    "VIDEO_MEAN",
    "VIDEO_STD",
    "BackboneSpec",
    "VSSLConfig",
    "VSSLForVideoClassification",
    "VSSLModel",
    "VSSLPreTrainedModel",
    "VSSLVideoProcessor",
    "build_backbone",
    "get_backbone_spec",
    "list_backbones",
]
