"""hf_vssl: self-supervised video representation learning on the Hugging Face stack.

Importing the package registers every hf_vssl class with transformers' Auto classes, so
``AutoModel.from_pretrained("org/rspnet-r21d-k400-50k")`` just works.
"""

from ._registration import register_auto_classes
from ._version import __version__
from .models import (
    VSSLConfig,
    VSSLForVideoClassification,
    VSSLModel,
    VSSLPreTrainedModel,
    VSSLVideoProcessor,
    list_backbones,
)
from .pretext import VSSLForPretraining, list_pretext_tasks

register_auto_classes()

__all__ = [
    "VSSLConfig",
    "VSSLForPretraining",
    "VSSLForVideoClassification",
    "VSSLModel",
    "VSSLPreTrainedModel",
    "VSSLVideoProcessor",
    "__version__",
    "list_backbones",
    "list_pretext_tasks",
]
