"""Video foundation models under the study's protocol: zero-shot classification and transfer.

- :mod:`~hf_vssl.foundation.loading`: X-CLIP, CLIP and SigLIP checkpoints by Hub id or folder;
- :mod:`~hf_vssl.foundation.class_names` / :mod:`~hf_vssl.foundation.prompts`: class names as
  text and the prompt templates around them;
- :mod:`~hf_vssl.foundation.zero_shot`: the zero-shot classifier the evaluation code runs;
- :mod:`~hf_vssl.foundation.vision`: the vision tower as an hf_vssl backbone (CKA, linear probe);
- :mod:`~hf_vssl.foundation.arguments` / :mod:`~hf_vssl.foundation.run` /
  :mod:`~hf_vssl.foundation.card`: the ``recipes/zero_shot.py`` run and its model card
  (imported on their own: they sit above the evaluation layer).

See ``docs/foundation_models.md``.
"""

from .class_names import clean_class_name
from .loading import FAMILIES, FoundationModel, foundation_family, load_foundation_model
from .prompts import DEFAULT_TEMPLATES, ENSEMBLE_TEMPLATES, resolve_templates
from .vision import export_vision_backbone, load_vision_backbone
from .zero_shot import ZeroShotVideoClassifier

__all__ = [
    "DEFAULT_TEMPLATES",
    "ENSEMBLE_TEMPLATES",
    "FAMILIES",
    "FoundationModel",
    "ZeroShotVideoClassifier",
    "clean_class_name",
    "export_vision_backbone",
    "foundation_family",
    "load_foundation_model",
    "load_vision_backbone",
    "resolve_templates",
]
