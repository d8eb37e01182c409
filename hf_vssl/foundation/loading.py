"""Loading text-video (X-CLIP) and image-text (CLIP, SigLIP) foundation models by Hub id or folder.

``FAMILIES`` is the one registry of supported model types: the full transformers class, the
hf_vssl backbone that wraps its vision tower (``hf_vssl.models.backbone_foundation``), whether
the model sees a clip as a whole (X-CLIP) or frame by frame (CLIP, SigLIP), and how its
tokenizer pads. A checkpoint's family is its ``config.json`` ``model_type``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    CLIPModel,
    PreTrainedConfig,
    SiglipModel,
    XCLIPModel,
)

from hf_vssl.models.backbone_foundation import DEFAULT_PIXEL_STATS

logger = logging.getLogger(__name__)

__all__ = ["FAMILIES", "FamilySpec", "FoundationModel", "foundation_family", "load_foundation_model"]

#: Frames per clip of the frame-wise (image) models unless ``num_frames`` is given.
DEFAULT_IMAGE_MODEL_FRAMES = 8


@dataclass(frozen=True)
class FamilySpec:
    """What hf_vssl needs to know about one foundation-model family."""

    model_class: type
    backbone: str
    """Registered hf_vssl backbone wrapping the family's vision tower."""
    video_native: bool
    """True when the model takes whole clips (its frame count is fixed by its config)."""
    tokenizer_kwargs: dict[str, Any] = field(default_factory=dict)
    text_inputs: tuple[str, ...] = ("input_ids", "attention_mask")
    """Tokenizer outputs the text tower is given."""


FAMILIES: dict[str, FamilySpec] = {
    "xclip": FamilySpec(
        XCLIPModel, "xclip-vision", video_native=True, tokenizer_kwargs={"padding": True, "truncation": True}
    ),
    "clip": FamilySpec(
        CLIPModel, "clip-vision", video_native=False, tokenizer_kwargs={"padding": True, "truncation": True}
    ),
    # SigLIP was trained on text padded to its full length and attends to the padding (no mask):
    # anything else changes its embeddings.
    "siglip": FamilySpec(
        SiglipModel,
        "siglip-vision",
        video_native=False,
        tokenizer_kwargs={"padding": "max_length", "truncation": True},
        text_inputs=("input_ids",),
    ),
}


def foundation_family(path_or_id: str | Path | None) -> str | None:
    """The family (``"xclip"``, ``"clip"``, ``"siglip"``) of a checkpoint, or ``None`` for anything else.

    Reads only ``config.json``; a folder without one (e.g. an Accelerate checkpoint) or an id
    that cannot be resolved is not a foundation model.
    """
    if not path_or_id:
        return None
    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(str(path_or_id))
    except (OSError, ValueError):
        return None
    model_type = config_dict.get("model_type")
    return model_type if model_type in FAMILIES else None


@dataclass
class FoundationModel:
    """A loaded foundation model with what zero-shot evaluation needs around it."""

    model: torch.nn.Module
    tokenizer: Any
    family: str
    name_or_path: str
    image_mean: list[float]
    image_std: list[float]
    image_size: int
    num_frames: int

    @property
    def spec(self) -> FamilySpec:
        """The registry entry of :attr:`family`."""
        return FAMILIES[self.family]


def _pixel_stats(path_or_id: str, family: str) -> tuple[list[float], list[float]]:
    """``image_mean`` / ``image_std`` of the checkpoint's image processor, else the family's defaults."""
    try:
        processor = AutoImageProcessor.from_pretrained(path_or_id)
        mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    except (OSError, ValueError):
        mean = std = None
    if mean is None or std is None:
        mean, std = DEFAULT_PIXEL_STATS[family]
        logger.warning(
            "%s ships no image processor with image_mean/image_std; using the %s defaults %s / %s",
            path_or_id,
            family,
            list(mean),
            list(std),
        )
    channels = 3
    mean = [float(mean)] * channels if isinstance(mean, (int, float)) else [float(v) for v in mean]
    std = [float(std)] * channels if isinstance(std, (int, float)) else [float(v) for v in std]
    return mean, std


def load_foundation_model(path_or_id: str | Path, *, num_frames: int | None = None) -> FoundationModel:
    """Load an X-CLIP, CLIP or SigLIP checkpoint (Hub id or local folder) with its tokenizer, in eval mode.

    ``num_frames``: frames per clip. X-CLIP's is fixed by its config (another value raises
    ``ValueError``); the frame-wise image models default to ``DEFAULT_IMAGE_MODEL_FRAMES``.
    """
    path_or_id = str(path_or_id)
    family = foundation_family(path_or_id)
    if family is None:
        raise ValueError(
            f"--model_name_or_path {path_or_id}: not a foundation model hf_vssl supports (its "
            f"config.json model_type must be one of {', '.join(FAMILIES)})"
        )
    spec = FAMILIES[family]
    model = spec.model_class.from_pretrained(path_or_id).eval()
    tokenizer = AutoTokenizer.from_pretrained(path_or_id)
    vision_config = model.config.vision_config
    if spec.video_native:
        if num_frames is not None and num_frames != vision_config.num_frames:
            raise ValueError(
                f"--num_frames {num_frames}: {path_or_id} is an X-CLIP model built for clips of "
                f"{vision_config.num_frames} frames"
            )
        num_frames = vision_config.num_frames
    elif num_frames is None:
        num_frames = DEFAULT_IMAGE_MODEL_FRAMES
    if num_frames < 1:
        raise ValueError(f"--num_frames must be >= 1, got {num_frames}")
    mean, std = _pixel_stats(path_or_id, family)
    return FoundationModel(
        model=model,
        tokenizer=tokenizer,
        family=family,
        name_or_path=path_or_id,
        image_mean=mean,
        image_std=std,
        image_size=int(vision_config.image_size),
        num_frames=int(num_frames),
    )
