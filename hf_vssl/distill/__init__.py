"""Multi-teacher knowledge distillation, the model side: frozen teachers, losses, the trained student.

The training loop that uses these is :mod:`hf_vssl.training.distillation`
(``recipes/distill.py``).
"""

from .losses import (
    FEATURE_LOSSES,
    PROJECTORS,
    build_projector,
    feature_distillation_loss,
    logit_distillation_loss,
)
from .student import DistillationStudent
from .teachers import Teacher, load_teacher, shared_labels

__all__ = [
    "FEATURE_LOSSES",
    "PROJECTORS",
    "DistillationStudent",
    "Teacher",
    "build_projector",
    "feature_distillation_loss",
    "load_teacher",
    "logit_distillation_loss",
    "shared_labels",
]
