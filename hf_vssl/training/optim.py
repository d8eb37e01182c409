"""Optimiser and learning-rate schedule for the recipes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import get_scheduler

#: Used when a task declares no ``optimizer_defaults``.
GENERIC_OPTIMIZER = {"optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 5e-4}
#: Learning rate for an optimiser chosen over the task's own when no learning rate is given.
SWITCHED_OPTIMIZER_LR = {"sgd": 0.01, "adamw": 1e-3}


def resolve_optimizer_settings(
    task_defaults: dict[str, Any] | None, total_batch_size: int | None = None, **overrides: Any
) -> dict[str, Any]:
    """The task's defaults (docs/study_settings.md#optimisers) with the user's non-``None`` overrides on top.

    A default learning rate quoted at ``reference_batch_size`` is scaled linearly to
    ``total_batch_size`` (the linear scaling rule); a learning rate the user gives is used as is.
    Choosing another optimiser than the defaults' without a learning rate starts from
    :data:`SWITCHED_OPTIMIZER_LR` (an SGD rate such as 0.05 would wreck AdamW).
    """
    settings = dict(GENERIC_OPTIMIZER)
    settings.update(task_defaults or {})
    reference = settings.pop("reference_batch_size", None)
    chosen = str(overrides.get("optimizer") or settings["optimizer"]).lower()
    if chosen != settings["optimizer"].lower() and overrides.get("learning_rate") is None:
        settings["learning_rate"] = SWITCHED_OPTIMIZER_LR.get(chosen, settings["learning_rate"])
        reference = None  # that rate is not quoted at the task's reference batch size
    if reference and total_batch_size and overrides.get("learning_rate") is None:
        settings["learning_rate"] = settings["learning_rate"] * total_batch_size / reference
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def build_optimizer(model: nn.Module, settings: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD (with momentum) or AdamW; no weight decay on biases and normalisation parameters."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": float(settings["weight_decay"])},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    name = settings["optimizer"].lower()
    lr = float(settings["learning_rate"])
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(settings.get("momentum", 0.9)), nesterov=False)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {settings['optimizer']!r}; expected 'sgd' or 'adamw'")


def build_scheduler(optimizer: torch.optim.Optimizer, kind: str, total_steps: int, warmup_ratio: float):
    """A transformers schedule (``cosine`` by default) with linear warm-up over ``warmup_ratio`` of the steps."""
    warmup = int(round(total_steps * warmup_ratio))
    return get_scheduler(kind, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
