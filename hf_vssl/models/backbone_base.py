"""The interface every video backbone implements.

A backbone takes a clip as ``(B, C, T, H, W)`` (the layout of PyTorch's 3D convolutions; the
public models take ``(B, T, C, H, W)`` and permute once) and returns the pooled feature
``(B, num_features)`` plus one tensor per stage, which the CKA analysis compares layer by layer.

This file is part of the remote code that checkpoints carry: it may import only installed
libraries (torch, torchvision, transformers) and sibling modules of this folder, relatively.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class BackboneOutput(NamedTuple):
    """What :meth:`VideoBackbone.forward` returns."""

    pooled: torch.Tensor
    """``(B, num_features)`` global feature."""
    stages: tuple[torch.Tensor, ...]
    """One activation per stage, in depth order (CNNs: ``(B, C, T, H, W)``; transformers: tokens)."""


class VideoBackbone(nn.Module):
    """Base class of the registered backbones.

    Subclasses set :attr:`num_features` and :attr:`stage_names` and implement
    :meth:`forward_stages`; pooling defaults to a global average over every axis but batch and
    channel, which suits all CNNs.
    """

    num_features: int
    stage_names: tuple[str, ...]

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

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

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        stages = self.forward_stages(x)
        return BackboneOutput(self.pool(stages[-1]), tuple(stages))


def scaled_channels(channels: int, width_multiplier: float, divisor: int = 1, minimum: int = 1) -> int:
    """Channel count scaled by ``width_multiplier``, rounded to a multiple of ``divisor``.

    Tests and the default CPU demo build tiny networks with a multiplier of 1/8 or 1/4; the
    study's sizes use 1.0.
    """
    value = max(minimum, int(round(channels * width_multiplier / divisor)) * divisor)
    return max(value, divisor)
