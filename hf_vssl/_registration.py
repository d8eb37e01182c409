"""Registers hf_vssl with transformers' Auto classes (run once on ``import hf_vssl``).

Two registrations, for two audiences: ``AutoConfig.register``/``AutoModel*.register`` make
``AutoModel.from_pretrained`` resolve model type ``vssl`` in any process that imported
hf_vssl; ``register_for_auto_class`` makes ``save_pretrained`` write ``auto_map`` and copy the
model code next to the weights, so ``trust_remote_code=True`` loads a checkpoint where hf_vssl
is not installed.
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForVideoClassification,
    AutoVideoProcessor,
)

from .models import VSSLConfig, VSSLForVideoClassification, VSSLModel, VSSLVideoProcessor
from .pretext.modeling import VSSLForPretraining


def register_auto_classes() -> None:
    AutoConfig.register(VSSLConfig.model_type, VSSLConfig, exist_ok=True)
    AutoModel.register(VSSLConfig, VSSLModel, exist_ok=True)
    AutoModelForVideoClassification.register(VSSLConfig, VSSLForVideoClassification, exist_ok=True)
    AutoVideoProcessor.register(VSSLConfig, video_processor_class=VSSLVideoProcessor, exist_ok=True)
    # Pretraining checkpoints need hf_vssl installed (their heads live outside the flat folder).
    AutoModelForPreTraining.register(VSSLConfig, VSSLForPretraining, exist_ok=True)

    VSSLConfig.register_for_auto_class()
    VSSLModel.register_for_auto_class("AutoModel")
    VSSLForVideoClassification.register_for_auto_class("AutoModelForVideoClassification")
    VSSLVideoProcessor.register_for_auto_class("AutoVideoProcessor")
