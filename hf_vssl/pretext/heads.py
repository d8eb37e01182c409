"""Heads the pretext tasks put on top of the backbone's pooled feature (or last stage)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


def dropout(x: torch.Tensor, p: float, training: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """``F.dropout`` whose mask is drawn from ``generator`` (torch's global RNG when ``None``)."""
    if not training or p == 0.0:
        return x
    keep = torch.empty_like(x).bernoulli_(1.0 - p, generator=generator)
    return x * keep / (1.0 - p)


class ClassifierHead(nn.Module):
    """Linear classifier, or ``Linear -> ReLU -> Linear`` when ``hidden_dim`` is positive.

    Kept at PyTorch's default ``nn.Linear`` init (``keep_pytorch_init``): the heads of the
    classification-style originals (RotNet's ``fc1``/``fc2``, PRP's ``fc8``) are never re-initialised.
    """

    keep_pytorch_init = True

    def __init__(self, in_dim: int, num_classes: int, hidden_dim: int = 0):
        super().__init__()
        if hidden_dim > 0:
            self.layers = nn.Sequential(
                nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, num_classes)
            )
        else:
            self.layers = nn.Sequential(nn.Linear(in_dim, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class PairwiseOrderHead(nn.Module):
    """VCOP's order classifier: every clip pair ``(i < j)`` -> shared MLP on ``[f_i, f_j]``.

    ``2D -> hidden`` + ReLU per pair, the pair outputs concatenated, dropout, then a linear layer
    to the ``N!`` permutation classes (Xu et al., CVPR 2019), at PyTorch's default init like the
    original's ``fc7``/``fc8``. The pair indices are made on the features' device in ``forward``
    (``torch.triu_indices``, the order of ``itertools.combinations``), not kept as buffers, so a
    model built on the meta device by ``from_pretrained`` has nothing to restore.
    """

    keep_pytorch_init = True

    def __init__(
        self, num_features: int, num_clips: int, num_classes: int, hidden_dim: int = 512, dropout: float = 0.5
    ):
        super().__init__()
        self.num_clips = num_clips
        num_pairs = num_clips * (num_clips - 1) // 2
        self.pair_mlp = nn.Linear(2 * num_features, hidden_dim)
        self.dropout_p = dropout
        self.classifier = nn.Linear(hidden_dim * num_pairs, num_classes)

    def forward(self, features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``features`` ``(B, N, D)`` in the order the clips were shown -> logits ``(B, N!)``.

        The dropout mask is drawn from ``generator`` (torch's global RNG when ``None``).
        """
        first, second = torch.triu_indices(self.num_clips, self.num_clips, 1, device=features.device)
        pairs = torch.cat([features[:, first], features[:, second]], dim=-1)  # (B, P, 2D)
        hidden = F.relu(self.pair_mlp(pairs)).flatten(1)  # one batched matmul for all pairs
        return self.classifier(dropout(hidden, self.dropout_p, self.training, generator))


class ConvBlock(nn.Sequential):
    """``Conv3d(3x3x3, padding 1) -> BatchNorm3d -> ReLU`` (the ``conv3d`` unit of PRP's network).

    PyTorch's default init, as in the original (which initialises nothing itself).
    """

    keep_pytorch_init = True

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        )


class PRPDecoder(nn.Module):
    """PRP's reconstruction decoder (``SSCN_OneClip``): last backbone stage -> frames in [0, 1].

    Three stages of (``ConvTranspose3d(c, c, 2, stride 2)``, :class:`ConvBlock` halving ``c``),
    a fourth ``ConvTranspose3d`` at constant width, then a :class:`ConvBlock` to the colour
    channels, whose ReLU keeps the output non-negative like the [0, 1] targets. Widths follow
    the original's 512 -> 256 -> 128 -> 64 -> 64 -> 3, scaled by ``in_channels / 512``; the four
    x2 steps turn a 16x112x112 clip's 2x7x7 last stage into the 32-frame target exactly, any
    other size is resized to the target with one trilinear interpolation. PyTorch's default
    init throughout, as in the original.
    """

    keep_pytorch_init = True

    def __init__(self, in_channels: int, out_channels: int = 3, num_upsamplings: int = 4, minimum: int = 8):
        super().__init__()
        stages = []
        width = in_channels
        for _ in range(num_upsamplings - 1):
            next_width = max(width // 2, minimum)
            stages.append(
                nn.Sequential(nn.ConvTranspose3d(width, width, 2, stride=2), ConvBlock(width, next_width))
            )
            width = next_width
        stages.append(nn.ConvTranspose3d(width, width, 2, stride=2))
        self.stages = nn.Sequential(*stages)
        self.output = ConvBlock(width, out_channels)

    def forward(self, feature_map: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
        """Decode to ``size = (T, H, W)``; returns ``(B, T, C, H, W)``."""
        x = self.output(self.stages(feature_map))
        if tuple(x.shape[-3:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
        return x.transpose(1, 2)


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
        self.stages = nn.Sequential(*stages)
        self.output = nn.Conv3d(width, out_channels, kernel_size=1)

    def forward(self, feature_map: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
        """Decode to ``size = (T, H, W)``; returns ``(B, T, C, H, W)``."""
        x = self.output(self.stages(self.project(feature_map)))
        if tuple(x.shape[-3:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
        return x.transpose(1, 2)
