"""Counting parameters and FLOPs the way the study reports them."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_gflops(module: nn.Module, input_shape: tuple[int, ...] = (1, 3, 16, 112, 112)) -> float:
    """Forward GFLOPs of ``module`` on one input of ``input_shape``, 2 FLOPs per multiply-add.

    ``FlopCounterMode`` counts convolutions and matrix products (the study's convention);
    element-wise work (BatchNorm, activations, pooling) is not counted.
    """
    was_training = module.training
    module.eval()
    try:
        device = next(module.parameters()).device
        x = torch.zeros(input_shape, device=device)
        with FlopCounterMode(display=False) as counter:
            module(x)
        return counter.get_total_flops() / 1e9
    finally:
        module.train(was_training)
