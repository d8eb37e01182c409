"""Heads the pretext tasks put on top of the backbone's pooled feature (or last stage)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from hf_vssl.models.conv_depth import pad_depth_explicitly


class ProjectionHead(nn.Module):
    """MLP projection to an L2-normalised embedding (SimCLR / CVRL / MoCo v2 style).

    ``num_layers`` linear layers; every layer but the last is followed by BatchNorm (if
    ``batch_norm``) and ReLU. ``num_layers=1`` is a plain linear projection.
    """

    def __init__(
        self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, batch_norm: bool = True
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(features), dim=-1)


class PairwiseOrderHead(nn.Module):
    """VCOP's order classifier: every clip pair ``(i < j)`` -> shared MLP on ``[f_i, f_j]``.

    ``2D -> hidden`` + ReLU per pair, the pair outputs concatenated, dropout, then a linear layer
    to the ``N!`` permutation classes (Xu et al., CVPR 2019).
    """

    def __init__(
        self, num_features: int, num_clips: int, num_classes: int, hidden_dim: int = 512, dropout: float = 0.5
    ):
        super().__init__()
        pairs = list(itertools.combinations(range(num_clips), 2))
        self.register_buffer("first", torch.tensor([i for i, _ in pairs]), persistent=False)
        self.register_buffer("second", torch.tensor([j for _, j in pairs]), persistent=False)
        self.pair_mlp = nn.Linear(2 * num_features, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_dim * len(pairs), num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` ``(B, N, D)`` in the order the clips were shown -> logits ``(B, N!)``."""
        pairs = torch.cat([features[:, self.first], features[:, self.second]], dim=-1)  # (B, P, 2D)
        hidden = F.relu(self.pair_mlp(pairs)).flatten(1)  # one batched matmul for all pairs
        return self.classifier(self.dropout(hidden))


class ReconstructionDecoder(nn.Module):
    """PRP's light decoder: last backbone stage ``(B, C, t, h, w)`` -> frames ``(B, T, 3, H, W)``.

    A 1x1x1 projection, ``num_upsamplings`` stages of (trilinear x2, 3x3x3 conv, BatchNorm,
    ReLU) halving the width each time, a 1x1x1 conv to the colour channels and one trilinear
    resize of those to the exact target size. Kept light on purpose: the widest stage is
    ``hidden_dim`` and no convolution runs at the full target resolution (a 3x3x3 conv there
    with few channels cost ~30% of an r21d training step on CPU, mostly in its backward). Inputs that are not 5-D (token outputs of
    transformer backbones) are decoded from the pooled feature as a 1x1x1 map.
    """

    def __init__(self, in_channels: int, hidden_dim: int, out_channels: int = 3, num_upsamplings: int = 3):
        super().__init__()
        self.project = nn.Conv3d(in_channels, hidden_dim, kernel_size=1)
        stages = []
        width = hidden_dim
        for _ in range(num_upsamplings):
            next_width = max(width // 2, 8)
            stages.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
                    nn.Conv3d(width, next_width, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm3d(next_width),
                    nn.ReLU(inplace=True),
                )
            )
            width = next_width
        # Explicit depth padding: the first stage runs at depth 2, where bf16 CPU weight gradients are wrong.
        self.stages = pad_depth_explicitly(nn.Sequential(*stages))
        self.output = nn.Conv3d(width, out_channels, kernel_size=1)

    def forward(self, feature_map: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
        """Decode to ``size = (T, H, W)``; returns ``(B, T, C, H, W)``."""
        x = self.output(self.stages(self.project(feature_map)))
        if tuple(x.shape[-3:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
        return x.transpose(1, 2)
