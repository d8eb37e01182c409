"""Frozen teachers of multi-teacher distillation: any hf_vssl checkpoint, its features and (if any) logits.

Each teacher gets the student's clip resized (trilinear) to the clip shape of its own config, so
teachers trained on other ``num_frames`` / ``image_size`` need no extra data pass.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig

from hf_vssl.models import VSSLForVideoClassification, VSSLModel
from hf_vssl.models.loading import fit_to_config, load_checked, load_vssl_model

__all__ = ["Teacher", "load_teacher", "shared_labels"]


@dataclass
class Teacher:
    """A frozen teacher: its backbone, its classifier (classification checkpoints only) and labels."""

    name: str
    model: VSSLModel
    classifier: nn.Module | None = None
    id2label: dict[int, str] | None = None

    @property
    def num_features(self) -> int:
        return self.model.num_features

    def to(self, *args, **kwargs) -> Teacher:
        self.model.to(*args, **kwargs)
        if self.classifier is not None:
            self.classifier.to(*args, **kwargs)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every weight and buffer (the classifier's under ``classifier.``), for checks that nothing moved."""
        state = dict(self.model.state_dict())
        if self.classifier is not None:
            state.update({f"classifier.{k}": v for k, v in self.classifier.state_dict().items()})
        return state

    @torch.no_grad()
    def __call__(self, pixel_values: torch.Tensor, autocast_dtype: torch.dtype | None = None):
        """``(features (B, D), logits (B, C) or None)`` for the clip resized to this teacher's clip shape."""
        config = self.model.config
        pixel_values = fit_to_config(pixel_values, config)
        autocast = (
            torch.autocast(pixel_values.device.type, dtype=autocast_dtype)
            if autocast_dtype is not None
            else nullcontext()
        )
        with autocast:
            features = self.model(pixel_values, return_dict=True).pooler_output
            logits = self.classifier(features) if self.classifier is not None else None
        return features.float(), (logits.float() if logits is not None else None)


def load_teacher(path_or_id: str) -> Teacher:
    """Load a teacher checkpoint, frozen and in eval mode.

    A ``VSSLForVideoClassification`` checkpoint contributes features and logits; any other hf_vssl
    checkpoint (pretraining, exported backbone, distilled student) contributes features.
    """
    try:
        config = AutoConfig.from_pretrained(path_or_id)
    except (OSError, ValueError) as error:
        raise ValueError(f"teacher {path_or_id!r}: cannot read its config.json ({error})") from None
    if getattr(config, "model_type", None) != "vssl":
        raise ValueError(
            f"teacher {path_or_id!r} is a {getattr(config, 'model_type', '?')!r} model; "
            "expected an hf_vssl (model_type 'vssl') checkpoint"
        )
    name = Path(path_or_id).name if Path(path_or_id).exists() else str(path_or_id)
    if VSSLForVideoClassification.__name__ in (config.architectures or []):
        full = load_checked(VSSLForVideoClassification, path_or_id)[0]  # a weights/config mismatch refused
        teacher = Teacher(
            name, full.vssl, full.classifier, {int(k): v for k, v in full.config.id2label.items()}
        )
    else:
        teacher = Teacher(name, load_vssl_model(path_or_id))
    for module in (teacher.model, teacher.classifier):
        if module is not None:
            module.eval().requires_grad_(False)
    return teacher


def shared_labels(teachers: list[Teacher]) -> dict[int, str] | None:
    """The label set of the teachers with a head (all must agree), or None if none has one."""
    labelled = [t for t in teachers if t.classifier is not None]
    if not labelled:
        return None
    first = labelled[0]
    for other in labelled[1:]:
        if other.id2label != first.id2label:
            raise ValueError(
                f"teachers {first.name!r} and {other.name!r} classify different label sets "
                f"({len(first.id2label)} vs {len(other.id2label)} labels); logit distillation needs one label set "
                "(pass --distill_logits false to distil features only)"
            )
    return first.id2label
