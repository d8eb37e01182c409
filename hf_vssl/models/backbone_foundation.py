"""The vision towers of image-text and video-text foundation models as :class:`VideoBackbone`.

transformers exposes the vision tower of CLIP, SigLIP and X-CLIP as a vision model of its own
(``CLIPVisionModel``, ``SiglipVisionModel``, ``XCLIPVisionModel``; each is the ``vision_model``
of the full ``CLIPModel`` / ``SiglipModel`` / ``XCLIPModel``). This adapter wraps one, unmodified,
so that the tower goes through everything a self-supervised backbone goes through (linear
probe, finetuning, retrieval, CKA maps):

* the clip ``(B, C, T, H, W)`` is split into its ``B*T`` frames, each seen by the tower (X-CLIP's
  tower exchanges one message token per frame across the ``T`` frames of a clip, so its clips
  must have exactly the ``num_frames`` it was built for);
* the input arrives normalised with hf_vssl's constants (``VIDEO_MEAN`` / ``VIDEO_STD`` of
  ``processing_vssl``) and is re-normalised with the tower's own ``image_mean`` / ``image_std``
  (one per-channel affine map), so hf_vssl's data pipeline feeds it unchanged;
* stages: every encoder layer's hidden state, shaped ``(B, T, tokens, hidden_size)``;
  pooled: the tower's own pooled output per frame (CLIP / X-CLIP: the normed class token;
  SigLIP: its attention-pooling head), averaged over the frames (temporal mean pooling).

Built from ``config.backbone_kwargs`` (architecture fields of the family's vision config plus
``image_mean`` / ``image_std``) with random weights: nothing is downloaded here. The pretrained
weights come from ``hf_vssl.foundation.vision.load_vision_backbone`` (which copies them from
the full model) or from an exported hf_vssl checkpoint. Without ``backbone_kwargs`` the defaults
are transformers' (ViT-B/32 for CLIP and X-CLIP, ViT-B/16 for SigLIP).

This file is part of the remote code that checkpoints carry (see ``backbone_base``).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import torch
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    SiglipVisionConfig,
    SiglipVisionModel,
    XCLIPVisionConfig,
    XCLIPVisionModel,
)
from transformers import initialization as hf_init
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
)

from .backbone_base import BackboneOutput, VideoBackbone
from .backbone_transformers import _hf_config
from .processing_vssl import VIDEO_MEAN, VIDEO_STD

#: family -> (vision config class, vision model class); the family is the full model's ``model_type``.
VISION_TOWERS: dict[str, tuple[type, type]] = {
    "clip": (CLIPVisionConfig, CLIPVisionModel),
    "siglip": (SiglipVisionConfig, SiglipVisionModel),
    "xclip": (XCLIPVisionConfig, XCLIPVisionModel),
}
#: Pixel statistics each family was trained with, used when a checkpoint ships no image processor.
DEFAULT_PIXEL_STATS: dict[str, tuple[Sequence[float], Sequence[float]]] = {
    "clip": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    "siglip": (IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD),
    "xclip": (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
}
PIXEL_KEYS = ("image_mean", "image_std")


def renormalization(
    image_mean: Sequence[float], image_std: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)``, each ``(C, 1, 1)``: ``x * scale + shift`` turns pixels normalised with
    ``VIDEO_MEAN`` / ``VIDEO_STD`` into pixels normalised with ``image_mean`` / ``image_std``."""
    # Checked on the Python values: the tensors may be built on the meta device (from_pretrained).
    if len(image_mean) != len(image_std) or not len(image_std) or min(image_std) <= 0:
        raise ValueError(
            f"image_mean / image_std must be per-channel lists with std > 0, got {image_mean}, {image_std}"
        )
    mean, std = torch.tensor(image_mean, dtype=torch.float32), torch.tensor(image_std, dtype=torch.float32)
    video_mean = torch.tensor(VIDEO_MEAN, dtype=torch.float32).expand_as(mean)
    video_std = torch.tensor(VIDEO_STD, dtype=torch.float32).expand_as(mean)
    return (video_std / std).view(-1, 1, 1), ((video_mean - mean) / std).view(-1, 1, 1)


class VisionTowerBackbone(VideoBackbone):
    """A foundation model's vision tower applied per frame, with temporal mean pooling.

    Like the other transformer adapters it reports the embedding output first and, with the
    eager attention, the per-layer attention weights (each ``(B*T, heads, tokens, tokens)``).
    """

    embedding_name = "embeddings"
    has_attentions = True

    def __init__(
        self, family: str, vision_config, image_mean: Sequence[float], image_std: Sequence[float]
    ) -> None:
        super().__init__()
        self.family = family
        self.model = VISION_TOWERS[family][1](vision_config)
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        scale, shift = renormalization(image_mean, image_std)
        # Persistent: saved with the weights, so a checkpoint restores them whatever device it is built on.
        self.register_buffer("input_scale", scale)
        self.register_buffer("input_shift", shift)
        self.num_features = vision_config.hidden_size
        self.stage_names = tuple(f"layer{i + 1}" for i in range(vision_config.num_hidden_layers))

    def init_vssl_buffers(self) -> None:
        """The re-normalisation from the config's pixel statistics (the model-init hook); buffers that
        ``from_pretrained`` loaded are left alone."""
        scale, shift = renormalization(self.image_mean, self.image_std)
        hf_init.copy_(self.input_scale, scale.to(self.input_scale.device, self.input_scale.dtype))
        hf_init.copy_(self.input_shift, shift.to(self.input_shift.device, self.input_shift.dtype))

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` in hf_vssl's normalisation -> ``(B*T, C, H, W)`` in the tower's."""
        frames = x.transpose(1, 2).flatten(0, 1)
        return frames * self.input_scale.to(frames.dtype) + self.input_shift.to(frames.dtype)

    def forward(self, x: torch.Tensor, output_attentions: bool = False) -> BackboneOutput:
        batch, time = x.shape[0], x.shape[2]
        out = self.model(
            pixel_values=self.frames(x),
            output_hidden_states=True,
            output_attentions=output_attentions,
            return_dict=True,
        )
        pooled = out.pooler_output if out.pooler_output is not None else out.last_hidden_state.mean(1)
        pooled = pooled.view(batch, time, -1).mean(1)
        hidden = tuple(h.view(batch, time, *h.shape[1:]) for h in out.hidden_states)  # [0]: the embeddings
        return BackboneOutput(
            pooled, hidden[1:], hidden[0], tuple(out.attentions) if output_attentions else None
        )

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.forward(x)
        return [out.embedding, *out.stages]


def _build(family: str, config) -> VisionTowerBackbone:
    kwargs = dict(getattr(config, "backbone_kwargs", None) or {})
    default_mean, default_std = DEFAULT_PIXEL_STATS[family]
    image_mean, image_std = kwargs.pop("image_mean", default_mean), kwargs.pop("image_std", default_std)
    fixed = {"image_size": config.image_size, "num_channels": config.num_channels}
    if family == "xclip":
        fixed["num_frames"] = config.num_frames  # the cross-frame messages span exactly this many frames
    vision_config = _hf_config(
        VISION_TOWERS[family][0], SimpleNamespace(backbone_kwargs=kwargs), f"{family}-vision", **fixed
    )
    return VisionTowerBackbone(family, vision_config, image_mean, image_std)


def build_clip_vision(config) -> VisionTowerBackbone:
    """CLIP's vision tower (``CLIPVisionModel``) per frame, random init unless loaded."""
    return _build("clip", config)


def build_siglip_vision(config) -> VisionTowerBackbone:
    """SigLIP's vision tower (``SiglipVisionModel``) per frame, random init unless loaded."""
    return _build("siglip", config)


def build_xclip_vision(config) -> VisionTowerBackbone:
    """X-CLIP's vision tower (``XCLIPVisionModel``, cross-frame messages), random init unless loaded."""
    return _build("xclip", config)


__all__ = [
    "DEFAULT_PIXEL_STATS",
    "VISION_TOWERS",
    "VisionTowerBackbone",
    "build_clip_vision",
    "build_siglip_vision",
    "build_xclip_vision",
    "renormalization",
]
