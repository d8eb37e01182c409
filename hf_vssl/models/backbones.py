"""The backbone registry: the one place a new backbone is added.

Each entry maps a public name to a builder ``builder(config) -> VideoBackbone`` and the facts the
rest of the library needs without building the network (its family, whether it honours
``width_multiplier``, and the smallest clip its strides accept).

This file is part of the remote code that checkpoints carry (see ``backbone_base``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .backbone_base import VideoBackbone
from .backbone_c3d import build_c3d
from .backbone_foundation import build_clip_vision, build_siglip_vision, build_xclip_vision
from .backbone_mobilenet import build_mobilenet
from .backbone_resnet3d import build_r3d, build_r3d_18, build_r21d, build_r21d_18, build_r21d_aligned
from .backbone_shufflenet import build_shufflenet
from .backbone_squeezenet import build_squeezenet
from .backbone_transformers import build_mvit, build_swin_t, build_timesformer, build_vivit
from .conv_depth import pad_depth_explicitly

if TYPE_CHECKING:  # pragma: no cover
    from .configuration_vssl import VSSLConfig


@dataclass(frozen=True)
class BackboneSpec:
    """Static facts about one registered backbone."""

    name: str
    builder: Callable[[VSSLConfig], VideoBackbone]
    family: str
    """``"small"``, ``"medium"`` or ``"large"`` capacity, as grouped by the study."""
    description: str
    min_frames: int = 1
    """Fewest input frames the network accepts (pooling kernels, patch sizes)."""
    min_size: int = 1
    """Smallest input height/width: the total spatial stride, below which the last stage sees
    nothing but padding (or, for C3D's pools, the network fails outright)."""
    honours_width_multiplier: bool = True
    """CNNs scale their channels; transformer adapters ignore the multiplier."""
    fixed_input_shape: bool = False
    """Transformers with learned position embeddings need exactly ``num_frames`` x ``image_size``."""
    attn_implementations: tuple[str, ...] = ()
    """Attention implementations besides ``"eager"`` that the wrapped model supports (``"sdpa"``)."""


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "c3d",
            build_c3d,
            "medium",
            "C3D, 8 conv layers with BatchNorm (the SSL variant)",
            min_frames=8,
            min_size=16,
        ),
        BackboneSpec(
            "r3d", build_r3d, "medium", "3D ResNet-10 (one basic block per stage)", min_frames=1, min_size=16
        ),
        BackboneSpec(
            "r21d", build_r21d, "medium", "R(2+1)D-10 (one block per stage)", min_frames=1, min_size=16
        ),
        BackboneSpec(
            "r21d-aligned",
            build_r21d_aligned,
            "medium",
            "R(2+1)D-10 with mid channels rounded to multiples of 8 (faster kernels; not the study's)",
            min_frames=1,
            min_size=16,
        ),
        BackboneSpec(
            "r3d-18",
            build_r3d_18,
            "medium",
            "3D ResNet-18 (two basic blocks per stage)",
            min_frames=1,
            min_size=16,
        ),
        BackboneSpec(
            "r21d-18", build_r21d_18, "medium", "R(2+1)D-18 (two blocks per stage)", min_frames=1, min_size=16
        ),
        BackboneSpec(
            "shufflenet",
            build_shufflenet,
            "small",
            "3D ShuffleNet V1, groups 3, width 2.0x",
            min_frames=1,
            min_size=32,
        ),
        BackboneSpec(
            "squeezenet",
            build_squeezenet,
            "small",
            "3D SqueezeNet 1.1 with bypass",
            min_frames=1,
            min_size=32,
        ),
        BackboneSpec("mobilenet", build_mobilenet, "small", "3D MobileNetV2 1.0x", min_frames=1, min_size=32),
        BackboneSpec(
            "swin-t",
            build_swin_t,
            "large",
            "Video Swin-T (torchvision swin3d_t)",
            min_frames=2,
            min_size=32,
            honours_width_multiplier=False,
        ),
        BackboneSpec(
            "mvit",
            build_mvit,
            "large",
            "MViT v2-S (torchvision mvit_v2_s)",
            min_frames=2,
            min_size=32,
            honours_width_multiplier=False,
            fixed_input_shape=True,
        ),
        BackboneSpec(
            "timesformer",
            build_timesformer,
            "large",
            "TimeSformer (transformers, from config)",
            min_frames=1,
            min_size=16,
            honours_width_multiplier=False,
            fixed_input_shape=True,
        ),
        BackboneSpec(
            "vivit",
            build_vivit,
            "large",
            "ViViT (transformers, from config)",
            min_frames=2,
            min_size=16,
            honours_width_multiplier=False,
            fixed_input_shape=True,
            attn_implementations=("sdpa",),
        ),
        # Vision towers of foundation models (hf_vssl.foundation loads their pretrained weights).
        BackboneSpec(
            "clip-vision",
            build_clip_vision,
            "large",
            "CLIP vision tower per frame, mean over time",
            min_frames=1,
            min_size=16,
            honours_width_multiplier=False,
            fixed_input_shape=True,
        ),
        BackboneSpec(
            "siglip-vision",
            build_siglip_vision,
            "large",
            "SigLIP vision tower per frame, mean over time",
            min_frames=1,
            min_size=16,
            honours_width_multiplier=False,
            fixed_input_shape=True,
        ),
        BackboneSpec(
            "xclip-vision",
            build_xclip_vision,
            "large",
            "X-CLIP vision tower (cross-frame messages)",
            min_frames=1,
            min_size=16,
            honours_width_multiplier=False,
            fixed_input_shape=True,
        ),
    )
}


def list_backbones() -> list[str]:
    """Names of every registered backbone, in registry order."""
    return list(BACKBONES)


def get_backbone_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"Unknown backbone {name!r}. Valid backbones: {', '.join(BACKBONES)}.") from None


def build_backbone(config: VSSLConfig) -> VideoBackbone:
    """Instantiate the backbone that ``config.backbone`` names."""
    # Explicit depth padding: bf16 CPU weight gradients are wrong without it (see conv_depth).
    return pad_depth_explicitly(get_backbone_spec(config.backbone).builder(config))
