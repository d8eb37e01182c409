"""3D MobileNetV2 (1.0x width), one of the study's small backbones.

Structure follows the public 3D adaptation used by the study (Efficient-3DCNNs): a 3x3x3 stem of
32 channels with stride (1, 2, 2), seventeen inverted-residual blocks and a final 1x1x1 conv to
1280 channels, all with ReLU6. Every stride-2 block halves T, H and W, so a clip shrinks by 16 in
time and 32 in space.

The blocks are reported as six stages, cut where the resolution changes: ``stem`` (stem conv and
the 16-channel block), ``stage1`` to ``stage4`` (24, 32, 64+96 and 160+320 channels) and
``head`` (the 1280-channel conv), whose output is the pooled feature.

This file is part of the remote code that checkpoints carry (see ``backbone_base``).
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone_base import VideoBackbone, scaled_channels

STEM_CHANNELS = 32
LAST_CHANNELS = 1280
# (expansion t, output channels c, repeats n, first stride s), grouped into stages at the strides.
STAGE_SETTINGS = (
    ((1, 16, 1, 1),),
    ((6, 24, 2, 2),),
    ((6, 32, 3, 2),),
    ((6, 64, 4, 2), (6, 96, 3, 1)),
    ((6, 160, 3, 2), (6, 320, 1, 1)),
)
# Multiples of 8 keep the study's widths exact and give tensor-core friendly sizes when scaled.
CHANNEL_DIVISOR = 8


def conv_bn_relu6(
    in_channels: int, out_channels: int, kernel_size: int, stride=1, groups: int = 1
) -> nn.Sequential:
    """Conv3d (no bias, "same" padding) -> BatchNorm3d -> ReLU6."""
    return nn.Sequential(
        nn.Conv3d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm3d(out_channels),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1x1) -> depthwise 3x3x3 -> linear project (1x1x1), with an identity shortcut
    when the block keeps both the resolution and the channel count."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        layers = [] if expand_ratio == 1 else [conv_bn_relu6(in_channels, hidden, 1)]
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride=stride, groups=hidden),
            nn.Conv3d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm3d(out_channels),  # linear bottleneck: no activation
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNet3D(VideoBackbone):
    """3D MobileNetV2; see the module docstring for the stage layout."""

    stage_names = ("stem", "stage1", "stage2", "stage3", "stage4", "head")
    _no_split_modules = ["InvertedResidual"]

    def __init__(self, width_multiplier: float = 1.0, in_channels: int = 3):
        super().__init__()
        if width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be positive, got {width_multiplier}")

        def width(channels: int) -> int:
            return scaled_channels(channels, width_multiplier, CHANNEL_DIVISOR)

        channels = width(STEM_CHANNELS)
        stages = []
        for index, settings in enumerate(STAGE_SETTINGS):
            blocks = [conv_bn_relu6(in_channels, channels, 3, stride=(1, 2, 2))] if index == 0 else []
            for expand_ratio, out_channels, repeats, stride in settings:
                out_channels = width(out_channels)
                for repeat in range(repeats):
                    block_stride = stride if repeat == 0 else 1
                    blocks.append(InvertedResidual(channels, out_channels, block_stride, expand_ratio))
                    channels = out_channels
            stages.append(nn.Sequential(*blocks))
        last_channels = width(LAST_CHANNELS)
        stages.append(conv_bn_relu6(channels, last_channels, 1))
        self.stages = nn.ModuleList(stages)
        self.num_features = last_channels
        self.init_weights_he()

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for stage in self.stages:
            x = self.run_stage(stage, x)
            outputs.append(x)
        return outputs


def build_mobilenet(config) -> MobileNet3D:
    """Build the study's MobileNetV2 (1.0x) scaled by ``config.width_multiplier``."""
    return MobileNet3D(width_multiplier=config.width_multiplier, in_channels=config.num_channels)
