"""A workaround for a oneDNN defect in bf16 3D-convolution weight gradients on the CPU.

With bf16 (autocast or bf16 tensors) on the CPU, oneDNN's weight gradient of a ``Conv3d`` whose
input depth ``T`` lies strictly between its temporal padding ``p`` and its (dilated) temporal
kernel ``k`` (``p < T < k``: ``T = 2`` for ``k = 3, p = 1``) reads memory it never wrote: the
gradient changes from call to call on identical inputs, now and then to inf/NaN. The forward
pass and the input gradient are correct. Every 3D CNN here reaches ``T = 2`` in its last stage
(16-frame clips: R(2+1)D and R3D layer4, C3D conv5), so bf16 training on the CPU was neither
reproducible nor correct there. Padding the depth explicitly (``F.pad``, then a convolution
with no temporal padding) computes the same function through a kernel without the defect; it
is done only for inputs of such a depth, on the CPU, so other shapes and devices are
untouched.

This file is part of the remote code that checkpoints carry (see ``backbone_base``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DepthPaddedConv3d(nn.Conv3d):
    """``nn.Conv3d`` (same parameters and state dict) that pads the depth itself when ``p < T < k``
    on the CPU (see the module docstring)."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if x.device.type == "cpu" and needs_explicit_depth_padding(self, x.shape[-3]):
            pad = self.padding[0]
            padded = F.pad(x, (0, 0, 0, 0, pad, pad))
            return F.conv3d(
                padded, weight, bias, self.stride, (0, *self.padding[1:]), self.dilation, self.groups
            )
        return super()._conv_forward(x, weight, bias)


def needs_explicit_depth_padding(conv: nn.Conv3d, depth: int) -> bool:
    """Whether an input of ``depth`` frames hits the defect in ``conv`` (zero padding given as numbers)."""
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return False
    pad, kernel = conv.padding[0], conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
    return pad < depth < kernel


def pad_depth_explicitly(module: nn.Module) -> nn.Module:
    """Make every ``nn.Conv3d`` inside ``module`` a :class:`DepthPaddedConv3d` (in place; returns ``module``).

    Only the class changes (it adds no state), so parameters, state dicts, hooks and
    initialisation stay as they were. Subclasses count too: torchvision's ``Conv3DSimple`` (R3D's
    blocks) only adds construction-time helpers.
    """
    for child in module.modules():
        if isinstance(child, nn.Conv3d) and not isinstance(child, DepthPaddedConv3d):
            child.__class__ = DepthPaddedConv3d
    return module
