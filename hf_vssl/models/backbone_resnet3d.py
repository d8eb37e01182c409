"""3D ResNets: R3D and R(2+1)D at 10 and 18 layers, all from one :class:`ResNet3D` class.

As in torchvision's ``models/video/resnet.py``, the four networks differ only by the *conv
builder* passed in (which also supplies the matching stem and shortcut) and by the number of
basic blocks per stage:

========  ===========================  ================  ================================
name      conv builder                 blocks per stage  reference
========  ===========================  ================  ================================
r3d       :class:`Conv3x3x3`           1, 1, 1, 1        VCOP / PRP / RSPNet ``R3DNet``
r21d      :class:`Conv2Plus1DPerConv`  1, 1, 1, 1        VCOP / PRP / RSPNet ``R2Plus1DNet``
r3d-18    :class:`Conv3x3x3`           2, 2, 2, 2        torchvision ``r3d_18``
r21d-18   :class:`Conv2Plus1DBlock`    2, 2, 2, 2        torchvision ``r2plus1d_18``
========  ===========================  ================  ================================

``r21d-aligned`` (opt-in, not a study network) is ``r21d`` with every mid channel count rounded
to a multiple of 8 (:class:`Conv2Plus1DPerConvAligned`), for faster tensor-core kernels.

The blocks, the 3D convs and the (2+1)D convs are torchvision's own modules and the attribute
names match ``VideoResNet`` (``stem``, ``layer1`` .. ``layer4``), so r3d-18 / r21d-18 run the
same kernels as torchvision and load its state dicts (without ``fc``) as they are.

The two (2+1)D builders implement the R(2+1)D paper's parameter-matching rule
``M = floor(t*d*d*N_in*N_out / (d*d*N_in + t*N_out))`` differently, and the difference is what
makes the study's r21d weigh 14.4M parameters rather than 12.5M:

* torchvision computes ``M`` once per block from (block input, block output) and gives it to both
  convs; its stem uses a fixed 45 mid channels; shortcuts are plain strided 1x1x1 convs.
* the VCOP reference computes ``M`` for every conv from that conv's own channels, factorises the
  stem the same way (3x7x7 -> 83 mid channels) and even the 1x1x1 shortcut (spatial 1x1 with
  stride (1,2,2), BN, ReLU, temporal 1x1 with stride (2,1,1)).

This file is part of the remote code that checkpoints carry (see ``backbone_base``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, Conv3DSimple

from .backbone_base import VideoBackbone, scaled_channels

STAGE_WIDTHS = (64, 128, 256, 512)


def matched_midplanes(in_planes: int, out_planes: int, kernel: tuple[int, int, int] = (3, 3, 3)) -> int:
    """Mid channels of a (2+1)D conv with as many parameters as the full ``kernel`` 3D conv.

    The R(2+1)D paper's formula (section 3.5), rounded down as both reference codes do.
    """
    t, h, w = kernel
    return (t * h * w * in_planes * out_planes) // (h * w * in_planes + t * out_planes)


def _stem_3d(in_channels: int, out_channels: int) -> nn.Sequential:
    # torchvision BasicStem / VCOP R3DNet conv1: one 3x7x7 conv, spatial stride 2.
    return nn.Sequential(
        nn.Conv3d(
            in_channels, out_channels, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False
        ),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


def _stem_2plus1d(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    # torchvision R2Plus1dStem layout (1x7x7 spatial, BN, ReLU, 3x1x1 temporal, BN, ReLU).
    return nn.Sequential(
        nn.Conv3d(
            in_channels, mid_channels, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False
        ),
        nn.BatchNorm3d(mid_channels),
        nn.ReLU(inplace=True),
        nn.Conv3d(
            mid_channels, out_channels, kernel_size=(3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False
        ),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


def _strided_shortcut(in_planes: int, out_planes: int, stride: tuple[int, int, int]) -> nn.Sequential:
    # torchvision VideoResNet._make_layer's downsample.
    return nn.Sequential(
        nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm3d(out_planes),
    )


def _factorised_shortcut(in_planes: int, mid: int, out_planes: int, stride: int) -> nn.Sequential:
    # The VCOP reference's (2+1)D shortcut: (1x1, stride (1,2,2)) -> BN -> ReLU -> (1x1, stride (2,1,1)) -> BN.
    return nn.Sequential(
        nn.Conv3d(in_planes, mid, kernel_size=1, stride=(1, stride, stride), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, out_planes, kernel_size=1, stride=(stride, 1, 1), bias=False),
        nn.BatchNorm3d(out_planes),
    )


class Conv3x3x3(Conv3DSimple):
    """Full 3x3x3 convolution (torchvision ``Conv3DSimple``): the R3D conv builder."""

    @staticmethod
    def make_stem(in_channels: int, out_channels: int, width_multiplier: float) -> nn.Sequential:
        return _stem_3d(in_channels, out_channels)

    @classmethod
    def make_shortcut(cls, in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
        return _strided_shortcut(in_planes, out_planes, cls.get_downsample_stride(stride))


class Conv2Plus1DBlock(Conv2Plus1D):
    """torchvision's (2+1)D conv: mid channels matched once per block, 45-channel stem (R(2+1)D-18)."""

    @staticmethod
    def make_stem(in_channels: int, out_channels: int, width_multiplier: float) -> nn.Sequential:
        return _stem_2plus1d(in_channels, scaled_channels(45, width_multiplier), out_channels)

    @classmethod
    def make_shortcut(cls, in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
        return _strided_shortcut(in_planes, out_planes, cls.get_downsample_stride(stride))


class Conv2Plus1DPerConv(Conv2Plus1D):
    """The VCOP reference's (2+1)D conv: mid channels matched for every conv on its own channels.

    ``BasicBlock`` passes one block-level ``midplanes`` to both of its convs; this builder
    ignores it and applies :func:`matched_midplanes` to its own ``(in_planes, out_planes)``,
    which is what the study's 14.4M-parameter R21D does.
    """

    def __init__(
        self, in_planes: int, out_planes: int, midplanes: int | None = None, stride: int = 1, padding: int = 1
    ) -> None:
        super().__init__(in_planes, out_planes, matched_midplanes(in_planes, out_planes), stride, padding)

    @staticmethod
    def make_stem(in_channels: int, out_channels: int, width_multiplier: float) -> nn.Sequential:
        return _stem_2plus1d(
            in_channels, matched_midplanes(in_channels, out_channels, (3, 7, 7)), out_channels
        )

    @staticmethod
    def make_shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
        # The reference factorises even the 1x1x1 projection: (1x1, stride (1,2,2)) -> BN -> ReLU
        # -> (1x1, stride (2,1,1)), then the shortcut BN.
        return _factorised_shortcut(
            in_planes, matched_midplanes(in_planes, out_planes, (1, 1, 1)), out_planes, stride
        )


def aligned(channels: int, multiple: int = 8) -> int:
    """``channels`` rounded to the nearest multiple of ``multiple`` (at least one multiple)."""
    return max(multiple, (channels + multiple // 2) // multiple * multiple)


class Conv2Plus1DPerConvAligned(Conv2Plus1DPerConv):
    """:class:`Conv2Plus1DPerConv` with every mid channel count rounded to a multiple of 8.

    The parameter-matching rule gives mid channels such as 230 or 921, which keep the
    convolutions off the tensor-core kernels that want channel counts divisible by 8; rounding
    to the nearest multiple changes the size by well under 1% (``hf-vssl-zoo`` prints it).
    """

    def __init__(
        self, in_planes: int, out_planes: int, midplanes: int | None = None, stride: int = 1, padding: int = 1
    ) -> None:
        Conv2Plus1D.__init__(
            self, in_planes, out_planes, aligned(matched_midplanes(in_planes, out_planes)), stride, padding
        )

    @staticmethod
    def make_stem(in_channels: int, out_channels: int, width_multiplier: float) -> nn.Sequential:
        return _stem_2plus1d(
            in_channels, aligned(matched_midplanes(in_channels, out_channels, (3, 7, 7))), out_channels
        )

    @staticmethod
    def make_shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
        return _factorised_shortcut(
            in_planes, aligned(matched_midplanes(in_planes, out_planes, (1, 1, 1))), out_planes, stride
        )


class ResNet3D(VideoBackbone):
    """A 3D ResNet of basic blocks: stem, then four stages of widths 64/128/256/512 (scaled).

    Args:
        conv_builder: one of :class:`Conv3x3x3`, :class:`Conv2Plus1DBlock`,
            :class:`Conv2Plus1DPerConv` (a torchvision-style conv class that also provides
            ``make_stem`` and ``make_shortcut``).
        blocks_per_stage: number of basic blocks in each of the four stages.
        width_multiplier: scales every channel count (1.0 = the published sizes).
        in_channels: channels of the input clip.

    Stages 2-4 halve time, height and width in their first block; the stem halves only
    height and width. ``forward_stages`` returns the stem output and the four stage outputs
    ``(B, C, T, H, W)``.
    """

    stage_names = ("layer1", "layer2", "layer3", "layer4")
    embedding_name = "stem"
    _no_split_modules = ["BasicBlock"]

    def __init__(
        self,
        conv_builder: type,
        blocks_per_stage: Sequence[int],
        width_multiplier: float = 1.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(blocks_per_stage) != 4 or min(blocks_per_stage) < 1:
            raise ValueError(f"blocks_per_stage must be four positive ints, got {tuple(blocks_per_stage)}")
        widths = [scaled_channels(c, width_multiplier) for c in STAGE_WIDTHS]
        self.conv_builder = conv_builder
        self.blocks_per_stage = tuple(blocks_per_stage)
        self.stem = conv_builder.make_stem(in_channels, widths[0], width_multiplier)
        self.inplanes = widths[0]
        self.layer1 = self._make_layer(widths[0], blocks_per_stage[0], stride=1)
        self.layer2 = self._make_layer(widths[1], blocks_per_stage[1], stride=2)
        self.layer3 = self._make_layer(widths[2], blocks_per_stage[2], stride=2)
        self.layer4 = self._make_layer(widths[3], blocks_per_stage[3], stride=2)
        self.num_features = widths[3]
        self.init_weights_he()

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        shortcut = None
        if stride != 1 or self.inplanes != planes:
            shortcut = self.conv_builder.make_shortcut(self.inplanes, planes, stride)
        layers = [BasicBlock(self.inplanes, planes, self.conv_builder, stride, shortcut)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes, self.conv_builder) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.run_stage(self.stem, x)
        hidden = [x]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = self.run_stage(layer, x)
            hidden.append(x)
        return hidden


def _build(config, conv_builder: type, blocks_per_stage: Sequence[int]) -> ResNet3D:
    return ResNet3D(
        conv_builder,
        blocks_per_stage,
        width_multiplier=config.width_multiplier,
        in_channels=config.num_channels,
    )


def build_r3d(config) -> ResNet3D:
    """R3D-10, the study's "r3d": 14.4M parameters, 39.8 GFLOPs at 16x112x112."""
    return _build(config, Conv3x3x3, (1, 1, 1, 1))


def build_r21d(config) -> ResNet3D:
    """R(2+1)D-10, the study's "r21d" (VCOP reference): 14.4M parameters, 42.9 GFLOPs at 16x112x112."""
    return _build(config, Conv2Plus1DPerConv, (1, 1, 1, 1))


def build_r21d_aligned(config) -> ResNet3D:
    """R(2+1)D-10 with mid channels rounded to multiples of 8 (opt-in; ``r21d`` stays the study's network)."""
    return _build(config, Conv2Plus1DPerConvAligned, (1, 1, 1, 1))


def build_r3d_18(config) -> ResNet3D:
    """R3D-18, torchvision ``r3d_18`` without its classifier (33.2M parameters)."""
    return _build(config, Conv3x3x3, (2, 2, 2, 2))


def build_r21d_18(config) -> ResNet3D:
    """R(2+1)D-18, torchvision ``r2plus1d_18`` without its classifier (31.3M parameters)."""
    return _build(config, Conv2Plus1DBlock, (2, 2, 2, 2))
