"""The trained part of distillation: the student network plus one feature projector per teacher."""

from __future__ import annotations

import torch
from torch import nn

from hf_vssl.models import VSSLForVideoClassification, VSSLModel

from .losses import FEATURE_LOSSES, build_projector, feature_distillation_loss, logit_distillation_loss

__all__ = ["DistillationStudent"]


class DistillationStudent(nn.Module):
    """The trained part: the student (``VSSLModel`` or ``VSSLForVideoClassification``) + one projector per teacher.

    ``forward(pixel_values, teacher_features, teacher_logits)`` returns ``(loss, metrics)``;
    ``teacher_logits[k]`` is ``None`` for teachers without a head (the student must have a head
    if any is not None).
    """

    def __init__(
        self,
        student: VSSLModel | VSSLForVideoClassification,
        teacher_dims: list[int],
        projector: str = "mlp",
        feature_loss: str = "cosine",
        temperature: float = 4.0,
        feature_weight: float = 1.0,
        logit_weight: float = 1.0,
    ):
        super().__init__()
        if feature_loss not in FEATURE_LOSSES:
            raise ValueError(f"feature_loss must be one of {FEATURE_LOSSES}, got {feature_loss!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.student = student
        backbone = student.vssl if isinstance(student, VSSLForVideoClassification) else student
        self.projectors = nn.ModuleList(
            build_projector(projector, backbone.num_features, d) for d in teacher_dims
        )
        self.feature_loss, self.temperature = feature_loss, temperature
        self.feature_weight, self.logit_weight = feature_weight, logit_weight

    def forward(
        self,
        pixel_values: torch.Tensor,
        teacher_features: list[torch.Tensor],
        teacher_logits: list[torch.Tensor | None],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        student = self.student
        classifier = isinstance(student, VSSLForVideoClassification)
        pooled = (student.vssl if classifier else student)(pixel_values, return_dict=True).pooler_output
        metrics: dict[str, torch.Tensor] = {}
        feature_terms = []
        for k, (projector, target) in enumerate(zip(self.projectors, teacher_features)):
            term = feature_distillation_loss(projector(pooled), target, self.feature_loss)
            feature_terms.append(term)
            metrics[f"feature_loss_t{k}"] = term.detach()
        loss = self.feature_weight * torch.stack(feature_terms).mean()
        metrics["feature_loss"] = loss.detach() / max(self.feature_weight, 1e-12)
        logit_targets = [(k, t) for k, t in enumerate(teacher_logits) if t is not None]
        if logit_targets:
            if not classifier:
                raise ValueError("teacher logits were given but the student has no classification head")
            logits = student.classifier(student.dropout(pooled))
            logit_terms = []
            for k, target in logit_targets:
                term = logit_distillation_loss(logits, target, self.temperature)
                logit_terms.append(term)
                metrics[f"logit_loss_t{k}"] = term.detach()
            logit_loss = torch.stack(logit_terms).mean()
            metrics["logit_loss"] = logit_loss.detach()
            loss = loss + self.logit_weight * logit_loss
        return loss, metrics
