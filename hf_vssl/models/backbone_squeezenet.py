"""3D SqueezeNet 1.1 with bypass connections, one of the study's small backbones.

Structure follows the public 3D adaptation used by the study (Efficient-3DCNNs): a 3x3x3 stem of
64 channels with stride (1, 2, 2), then four groups of two Fire modules, each group preceded by a
3x3x3 max-pool with stride 2 (so a clip shrinks by 16 in time and 32 in space). The second Fire
module of each group adds its input (the "simple bypass"). The feature dimension is 512.

Stages: ``stem`` (conv, before pooling) and ``fire1`` to ``fire4`` (pool + two Fire modules).

This file is part of the remote code that checkpoints carry (see ``backbone_base``).
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone_base import VideoBackbone, scaled_channels

STEM_CHANNELS = 64
# (squeeze, expand) per Fire group; each Fire outputs 2 * expand channels (1x1 and 3x3 halves).
FIRE_SETTINGS = ((16, 64), (32, 128), (48, 192), (64, 256))


class Fire(nn.Module):
    """Squeeze (1x1x1) -> parallel expand 1x1x1 and 3x3x3, concatenated; optional identity bypass."""

    def __init__(self, in_channels: int, squeeze_channels: int, expand_channels: int, bypass: bool = False):
        super().__init__()
        if bypass and in_channels != 2 * expand_channels:
            raise ValueError(
                f"a bypass Fire needs in_channels == 2 * expand_channels, "
                f"got {in_channels} and {expand_channels}"
            )
        self.bypass = bypass
        self.squeeze = nn.Conv3d(in_channels, squeeze_channels, 1)
        self.squeeze_bn = nn.BatchNorm3d(squeeze_channels)
        self.expand1x1 = nn.Conv3d(squeeze_channels, expand_channels, 1)
        self.expand1x1_bn = nn.BatchNorm3d(expand_channels)
        self.expand3x3 = nn.Conv3d(squeeze_channels, expand_channels, 3, padding=1)
        self.expand3x3_bn = nn.BatchNorm3d(expand_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = self.relu(self.squeeze_bn(self.squeeze(x)))
        out = torch.cat(
            [self.expand1x1_bn(self.expand1x1(squeezed)), self.expand3x3_bn(self.expand3x3(squeezed))], dim=1
        )
        if self.bypass:
            out = out + x
        return self.relu(out)


class SqueezeNet3D(VideoBackbone):
    """3D SqueezeNet 1.1 with bypass; see the module docstring for the stage layout."""

    stage_names = ("stem", "fire1", "fire2", "fire3", "fire4")
    _no_split_modules = ["Fire"]

    def __init__(self, width_multiplier: float = 1.0, in_channels: int = 3):
        super().__init__()
        if width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be positive, got {width_multiplier}")
        channels = scaled_channels(STEM_CHANNELS, width_multiplier)
        # The reference keeps conv biases even before BatchNorm; kept for parameter parity.
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, channels, 3, stride=(1, 2, 2), padding=1),
            nn.BatchNorm3d(channels),
            nn.ReLU(inplace=True),
        )
        groups = []
        for squeeze, expand in FIRE_SETTINGS:
            squeeze = scaled_channels(squeeze, width_multiplier)
            expand = scaled_channels(expand, width_multiplier)
            groups.append(
                nn.Sequential(
                    nn.MaxPool3d(kernel_size=3, stride=2, padding=1),
                    Fire(channels, squeeze, expand),
                    Fire(2 * expand, squeeze, expand, bypass=True),
                )
            )
            channels = 2 * expand
        self.fires = nn.ModuleList(groups)
        self.num_features = channels
        self.init_weights_he()

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = [self.run_stage(self.stem, x)]
        for group in self.fires:
            outputs.append(self.run_stage(group, outputs[-1]))
        return outputs


def build_squeezenet(config) -> SqueezeNet3D:
    """Build the study's SqueezeNet 1.1 with bypass, scaled by ``config.width_multiplier``."""
    return SqueezeNet3D(width_multiplier=config.width_multiplier, in_channels=config.num_channels)
