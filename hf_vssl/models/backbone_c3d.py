"""C3D with BatchNorm: the self-supervised-learning variant of the VCOP / PRP / IIC reference code.

Eight 3x3x3 convolutions (64, 128, 256, 256, 512, 512, 512, 512 channels), each followed by
BatchNorm and ReLU, in five groups. Groups 1-4 end in a max-pool ((1,2,2) after the first so
early temporal information survives, (2,2,2) after the others); the fifth pool is the global
average pool, which replaces the original C3D's pool5/fc6/fc7 so the feature is 512-d. All
27.7M parameters are in the eight convs (fc6/fc7 would add another 60M).

This file is part of the remote code that checkpoints carry (see ``backbone_base``).
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone_base import VideoBackbone, scaled_channels

# (output channels of each conv in the group, pooling kernel/stride after the group or None)
C3D_GROUPS: tuple[tuple[tuple[int, ...], tuple[int, int, int] | None], ...] = (
    ((64,), (1, 2, 2)),
    ((128,), (2, 2, 2)),
    ((256, 256), (2, 2, 2)),
    ((512, 512), (2, 2, 2)),
    ((512, 512), None),
)


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    # The reference keeps the conv bias in front of BN; kept so its parameter count (and its
    # checkpoints' layout) is matched exactly.
    return [
        nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=True),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    ]


class C3D(VideoBackbone):
    """C3D-BN feature extractor; ``forward_stages`` returns the output of each of the five groups.

    Args:
        width_multiplier: scales every channel count (1.0 = the study's 27.7M-parameter net).
        in_channels: channels of the input clip.

    The three (2,2,2) pools need at least 8 frames and the four pools at least 16x16 pixels.
    """

    stage_names = ("conv1", "conv2", "conv3", "conv4", "conv5")

    def __init__(self, width_multiplier: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        groups = []
        channels = in_channels
        for widths, pool in C3D_GROUPS:
            layers: list[nn.Module] = []
            for width in widths:
                width = scaled_channels(width, width_multiplier)
                layers += _conv_bn_relu(channels, width)
                channels = width
            if pool is not None:
                layers.append(nn.MaxPool3d(kernel_size=pool, stride=pool))
            groups.append(nn.Sequential(*layers))
        self.groups = nn.ModuleList(groups)
        self.num_features = channels
        self.init_weights_he()

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[2] < 8 or min(x.shape[3:]) < 16:
            raise ValueError(
                f"C3D needs at least 8 frames of 16x16 pixels, got input of shape {tuple(x.shape)}"
            )
        stages = []
        for group in self.groups:
            x = self.run_stage(group, x)
            stages.append(x)
        return stages


def build_c3d(config) -> C3D:
    """The study's "c3d": 27.7M parameters, 77.2 GFLOPs at 16x112x112, 512-d feature."""
    return C3D(width_multiplier=config.width_multiplier, in_channels=config.num_channels)
