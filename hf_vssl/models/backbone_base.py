"""The interface every video backbone implements.

A backbone takes a clip as ``(B, C, T, H, W)`` (the layout of PyTorch's 3D convolutions; the
public models take ``(B, T, C, H, W)`` and permute once) and returns the pooled feature
``(B, num_features)``, one tensor per stage (which the CKA analysis compares layer by layer, by
name) and, where the network has one apart from its stages, the embedding (stem) output that
``output_hidden_states`` reports first, as transformers models do.

Gradient checkpointing: ``gradient_checkpointing_enable()`` on the model sets
:attr:`VideoBackbone.gradient_checkpointing`; each stage then runs under
``torch.utils.checkpoint`` (:meth:`VideoBackbone.run_stage`) with the BatchNorm running statistics
restored around the recomputation, so a checkpointed step updates them exactly once.

This file is part of the remote code that checkpoints carry: it may import only installed
libraries (torch, torchvision, transformers) and sibling modules of this folder, relatively.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class BackboneOutput(NamedTuple):
    """What :meth:`VideoBackbone.forward` returns."""

    pooled: torch.Tensor
    """``(B, num_features)`` global feature."""
    stages: tuple[torch.Tensor, ...]
    """One activation per stage, in depth order (CNNs: ``(B, C, T, H, W)``; transformers: tokens)."""
    embedding: torch.Tensor | None = None
    """The embedding (stem) output before the first stage; ``None`` where the first stage is the stem."""
    attentions: tuple[torch.Tensor, ...] | None = None
    """Per-layer attention weights, when asked for and the backbone has them."""


@contextmanager
def _batchnorm_stats_kept(module: nn.Module) -> Iterator[None]:
    """Restore the BatchNorm running statistics under ``module`` on exit (the recomputation of a
    checkpointed stage must not count its batch a second time)."""
    norms = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, count) in zip(norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


class VideoBackbone(nn.Module):
    """Base class of the registered backbones.

    Subclasses set :attr:`num_features` and :attr:`stage_names` (and :attr:`embedding_name` when
    the network has an embedding/stem outside its stages) and implement :meth:`forward_stages`;
    pooling defaults to a global average over every axis but batch and channel, which suits all
    CNNs.
    """

    num_features: int
    stage_names: tuple[str, ...]
    embedding_name: str | None = None
    """Name of the embedding (stem) output reported before the stages, or ``None``."""
    has_attentions: bool = False
    """Whether ``forward(..., output_attentions=True)`` can return attention weights."""
    gradient_checkpointing: bool = False
    """Set by ``PreTrainedModel.gradient_checkpointing_enable()``: run each stage under checkpointing."""
    _gradient_checkpointing_func = staticmethod(partial(checkpoint, use_reentrant=False))
    """Replaced by ``gradient_checkpointing_enable()`` with the function its kwargs configure."""
    _no_split_modules: list[str] = []
    """Classes of blocks a device map must not cut (their forward adds a residual across devices)."""

    @property
    def hidden_state_names(self) -> tuple[str, ...]:
        """Names of the ``hidden_states`` a model reports: the embedding (if any), then the stages."""
        return ((self.embedding_name,) if self.embedding_name else ()) + tuple(self.stage_names)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One tensor per entry of :attr:`hidden_state_names` (embedding first, when there is one)."""
        raise NotImplementedError

    def run_stage(self, stage: Callable[..., Any], *args: Any) -> Any:
        """``stage(*args)``, under gradient checkpointing when it is enabled and gradients are recorded."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            module = stage if isinstance(stage, nn.Module) else self
            return self._gradient_checkpointing_func(
                stage, *args, context_fn=lambda: (nullcontext(), _batchnorm_stats_kept(module))
            )
        return stage(*args)

    def init_weights_he(self) -> None:
        """The CNN initialisation of torchvision's VideoResNet and the study's reference code:
        He-normal (fan-out) convolutions with zero bias, BatchNorm at weight 1 / bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def pool(self, last_stage: torch.Tensor) -> torch.Tensor:
        return last_stage.flatten(2).mean(dim=2)

    def forward(self, x: torch.Tensor, output_attentions: bool = False) -> BackboneOutput:
        if output_attentions:
            raise ValueError(
                f"{type(self).__name__} has no attention weights to return; output_attentions applies to the "
                "timesformer and vivit backbones."
            )
        hidden = self.forward_stages(x)
        embedding, stages = (hidden[0], hidden[1:]) if self.embedding_name else (None, hidden)
        return BackboneOutput(self.pool(stages[-1]), tuple(stages), embedding)


def scaled_channels(channels: int, width_multiplier: float, divisor: int = 1, minimum: int = 1) -> int:
    """Channel count scaled by ``width_multiplier``, rounded to a multiple of ``divisor``.

    Tests and the default CPU demo build tiny networks with a multiplier of 1/8 or 1/4; the
    study's sizes use 1.0.
    """
    value = max(minimum, int(round(channels * width_multiplier / divisor)) * divisor)
    return max(value, divisor)
