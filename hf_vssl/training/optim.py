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


def lr_scales(model: nn.Module) -> dict[str, float]:
    """Parameter name -> learning-rate multiplier, from every submodule's ``lr_scales()`` hook
    (:meth:`hf_vssl.pretext.PretextTask.lr_scales`); parameters not named keep scale 1."""
    scales: dict[str, float] = {}
    for prefix, module in model.named_modules():
        hook = getattr(module, "lr_scales", None)
        if not callable(hook):
            continue
        for child, scale in hook().items():
            path = f"{prefix}.{child}" if prefix else child
            for name, _ in model.get_submodule(path).named_parameters():
                scales[f"{path}.{name}"] = float(scale)
    return scales


def build_optimizer(model: nn.Module, settings: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD (with momentum) or AdamW; no weight decay on biases and normalisation parameters.

    Parameters a module's ``lr_scales()`` hook names get their own groups at ``lr * scale``
    (schedules scale every group's rate alike, so the ratio holds).
    """
    lr = float(settings["learning_rate"])
    scales = lr_scales(model)
    grouped: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        grouped.setdefault((parameter.ndim > 1, scales.get(name, 1.0)), []).append(parameter)
    groups = [
        {
            "params": params,
            "weight_decay": float(settings["weight_decay"]) if decay else 0.0,
            "lr": lr * scale,
        }
        for (decay, scale), params in sorted(grouped.items(), key=lambda item: (not item[0][0], item[0][1]))
    ]
    name = settings["optimizer"].lower()
    # foreach: one multi-tensor kernel per update op instead of one per parameter (same update);
    # use_fused_steps switches to the single fused kernel once the model's device is known.
    if name == "sgd":
        return torch.optim.SGD(
            groups, lr=lr, momentum=float(settings.get("momentum", 0.9)), nesterov=False, foreach=True
        )
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, foreach=True)
    raise ValueError(f"unknown optimizer {settings['optimizer']!r}; expected 'sgd' or 'adamw'")


def use_fused_steps(optimizer: torch.optim.Optimizer, device: torch.device | str) -> bool:
    """Switch an SGD / AdamW optimiser to its fused kernel when its parameters live on CUDA.

    The fused step does the whole update of every parameter in one kernel (the same update up
    to floating-point reordering). Called once the model is on its device, before the first
    step; other optimisers and devices keep their foreach steps. Returns whether it switched.
    """
    inner = getattr(optimizer, "optimizer", optimizer)  # Accelerate's AcceleratedOptimizer wraps it
    if torch.device(device).type != "cuda" or not isinstance(inner, (torch.optim.SGD, torch.optim.AdamW)):
        return False
    for group in inner.param_groups:
        group["foreach"], group["fused"] = False, True
    inner.defaults.update(foreach=False, fused=True)
    return True


def build_scheduler(optimizer: torch.optim.Optimizer, kind: str, total_steps: int, warmup_ratio: float):
    """A transformers schedule (``cosine`` by default) with linear warm-up over ``warmup_ratio`` of the steps."""
    warmup = int(round(total_steps * warmup_ratio))
    return get_scheduler(kind, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
