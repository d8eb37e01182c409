"""3D ShuffleNet V1 (groups 3, width 2.0x), the study's strongest small backbone.

Structure follows the public 3D adaptation used by the study (Efficient-3DCNNs): a 3x3x3 stem
with stride (1, 2, 2), a 3x3x3 max-pool with stride 2, then three stages of [4, 8, 4] bottleneck
units (480 / 960 / 1920 channels at ``width_multiplier=1.0``). The first unit of each stage
strides by 2 in time and space and concatenates an average-pooled shortcut; the others add an
identity shortcut. The feature dimension is the last stage's channel count (1920).

This file is part of the remote code that checkpoints carry (see ``backbone_base``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone_base import VideoBackbone, scaled_channels

GROUPS = 3
STEM_CHANNELS = 48  # 24 x 2.0
STAGE_CHANNELS = (480, 960, 1920)
STAGE_BLOCKS = (4, 8, 4)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups: ``[a0 a1 b0 b1] -> [a0 b0 a1 b1]``.

    The result keeps the input's memory format. A channels-last-3d input is shuffled along its
    innermost (channel) axis so that only one copy is made and the following convolutions stay
    channels-last.
    """
    batch, channels, frames, height, width = x.shape
    if channels % groups:
        raise ValueError(f"channel_shuffle: {channels} channels are not divisible by {groups} groups")
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        y = x.permute(0, 2, 3, 4, 1)  # (B, T, H, W, C), contiguous
        y = y.reshape(batch, frames, height, width, groups, channels // groups).transpose(4, 5)
        return y.reshape(batch, frames, height, width, channels).permute(0, 4, 1, 2, 3)
    y = x.reshape(batch, groups, channels // groups, frames, height, width).transpose(1, 2)
    return y.reshape(batch, channels, frames, height, width)


def pooled_shortcut(x: torch.Tensor) -> torch.Tensor:
    """The stride-2 shortcut: a (2, 3, 3) average pool with stride 2 and spatial padding 1.

    Equal to the reference's ``AvgPool3d((2, 3, 3), 2, padding=(0, 1, 1))`` (whose padding
    counts as zeros) on even clip lengths such as the study's 16 frames, but the padding is
    applied explicitly so that it also accepts inputs smaller than the kernel (``avg_pool3d``
    rejects those), e.g. 2x2 maps at 32x32 input. An odd clip length repeats its last frame so
    the pooled length matches the strided conv's ``ceil(T / 2)``.
    """
    if x.shape[2] % 2:
        x = F.pad(x, (0, 0, 0, 0, 0, 1), mode="replicate")
    x = F.pad(x, (1, 1, 1, 1))  # zeros, as count_include_pad=True pooling would use
    return F.avg_pool3d(x, kernel_size=(2, 3, 3), stride=2)


class ShuffleUnit(nn.Module):
    """ShuffleNet V1 bottleneck: grouped 1x1 -> shuffle -> depthwise 3x3x3 -> grouped 1x1.

    With ``stride == 2`` the unit halves T, H and W and concatenates an average-pooled copy of
    its input, so its residual branch only produces ``out_channels - in_channels`` channels.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleUnit stride must be 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError("a stride-1 ShuffleUnit adds its input, so in_channels must equal out_channels")
        self.stride = stride
        self.groups = groups
        mid_channels = out_channels // 4
        branch_channels = out_channels - in_channels if stride == 2 else out_channels
        # The reference groups the first 1x1 conv whenever the stem is wider than 24 channels
        # (always true at 2.0x width), so it is grouped here too.
        self.conv1 = nn.Conv3d(in_channels, mid_channels, 1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm3d(mid_channels)
        self.conv2 = nn.Conv3d(
            mid_channels, mid_channels, 3, stride=stride, padding=1, groups=mid_channels, bias=False
        )
        self.bn2 = nn.BatchNorm3d(mid_channels)
        self.conv3 = nn.Conv3d(mid_channels, branch_channels, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm3d(branch_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.groups)
        out = self.bn2(self.conv2(out))
        out = self.bn3(self.conv3(out))
        if self.stride == 1:
            return self.relu(out + x)
        return self.relu(torch.cat([out, pooled_shortcut(x)], dim=1))


class ShuffleNet3D(VideoBackbone):
    """3D ShuffleNet V1; stages: ``stem``, ``stage1``, ``stage2``, ``stage3`` (each a 2x downsampling)."""

    stage_names = ("stem", "stage1", "stage2", "stage3")
    _no_split_modules = ["ShuffleUnit"]

    def __init__(self, width_multiplier: float = 1.0, in_channels: int = 3, groups: int = GROUPS):
        super().__init__()
        if width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be positive, got {width_multiplier}")
        # Multiples of 4 * groups keep every grouped conv (and the bottleneck width, a quarter of
        # the stage width) divisible by the group count at any multiplier.
        divisor = 4 * groups
        stem_channels = scaled_channels(STEM_CHANNELS, width_multiplier, divisor)
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, stem_channels, 3, stride=(1, 2, 2), padding=1, bias=False),
            nn.BatchNorm3d(stem_channels),
            nn.ReLU(inplace=True),
        )
        stages = []
        channels = stem_channels
        for index, (width, blocks) in enumerate(zip(STAGE_CHANNELS, STAGE_BLOCKS)):
            width = scaled_channels(width, width_multiplier, divisor)
            units = [nn.MaxPool3d(kernel_size=3, stride=2, padding=1)] if index == 0 else []
            for block in range(blocks):
                units.append(ShuffleUnit(channels, width, stride=2 if block == 0 else 1, groups=groups))
                channels = width
            stages.append(nn.Sequential(*units))
        self.stages = nn.ModuleList(stages)
        self.num_features = channels
        self.init_weights_he()

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = [self.run_stage(self.stem, x)]
        for stage in self.stages:
            outputs.append(self.run_stage(stage, outputs[-1]))
        return outputs


def build_shufflenet(config) -> ShuffleNet3D:
    """Build the study's ShuffleNet V1 (groups 3, 2.0x) scaled by ``config.width_multiplier``."""
    return ShuffleNet3D(width_multiplier=config.width_multiplier, in_channels=config.num_channels)
