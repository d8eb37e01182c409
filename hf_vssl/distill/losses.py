"""The distillation losses and the student -> teacher feature projectors.

- feature distillation: ``1 - cos`` (``cosine``) or ``||s - t||^2`` (``mse``, which on unit
  vectors equals ``2 - 2 cos``) between L2-normalised features;
- logit distillation: ``KL(softmax(t / T) || softmax(s / T)) * T^2`` (Hinton et al.).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "FEATURE_LOSSES",
    "PROJECTORS",
    "build_projector",
    "feature_distillation_loss",
    "logit_distillation_loss",
]

FEATURE_LOSSES = ("cosine", "mse")
PROJECTORS = ("mlp", "linear")


def feature_distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, kind: str = "cosine"
) -> torch.Tensor:
    """Distance between L2-normalised ``(B, D)`` features: mean ``1 - cos`` or mean ``||s - t||^2``."""
    s = F.normalize(student.float(), dim=-1)
    t = F.normalize(teacher.float(), dim=-1)
    if kind == "cosine":
        return (1 - (s * t).sum(dim=-1)).mean()
    if kind == "mse":
        return (s - t).square().sum(dim=-1).mean()
    raise ValueError(f"feature loss must be one of {FEATURE_LOSSES}, got {kind!r}")


def logit_distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """``KL(softmax(t / T) || softmax(s / T)) * T^2``, averaged over the batch."""
    t = temperature
    return (
        F.kl_div(
            F.log_softmax(student_logits.float() / t, dim=-1),
            F.log_softmax(teacher_logits.float() / t, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
        * t
        * t
    )


def build_projector(kind: str, in_features: int, out_features: int) -> nn.Module:
    """Student feature -> teacher feature space: ``linear``, or ``mlp`` (Linear-ReLU-Linear)."""
    if kind == "linear":
        return nn.Linear(in_features, out_features)
    if kind == "mlp":
        hidden = max(in_features, out_features)
        return nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_features)
        )
    raise ValueError(f"projector must be one of {PROJECTORS}, got {kind!r}")
