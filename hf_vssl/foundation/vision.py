"""A foundation model's vision tower as an hf_vssl backbone (``VSSLModel``), in memory or exported.

The backbone (``clip-vision``, ``siglip-vision`` or ``xclip-vision``, see
``hf_vssl.models.backbone_foundation``) is built from the checkpoint's own vision config and
image statistics, then given the pretrained weights of the full model's ``vision_model``. The
result is a ``VSSLModel`` like any other: CKA maps compare its layers with a self-supervised
backbone's, and once exported (:func:`export_vision_backbone`) the finetuning recipe probes or
finetunes it (``--mode linear_probe`` / ``finetune`` / ``retrieval``).
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedConfig

from hf_vssl.models import VSSLConfig, VSSLModel, VSSLVideoProcessor

from .loading import FAMILIES, FoundationModel, load_foundation_model

__all__ = ["export_vision_backbone", "load_vision_backbone", "vision_backbone_config"]


def vision_backbone_config(foundation: FoundationModel) -> VSSLConfig:
    """The ``VSSLConfig`` of ``foundation``'s vision tower (architecture, clip shape, pixel statistics)."""
    vision = foundation.model.config.vision_config
    generic = set(PreTrainedConfig().to_dict())
    fixed = {"image_size", "num_channels", "num_frames"}
    kwargs = {k: v for k, v in vision.to_dict().items() if k not in generic and k not in fixed}
    kwargs.update(image_mean=list(foundation.image_mean), image_std=list(foundation.image_std))
    return VSSLConfig(
        backbone=FAMILIES[foundation.family].backbone,
        num_frames=foundation.num_frames,
        image_size=foundation.image_size,
        num_channels=vision.num_channels,
        backbone_kwargs=kwargs,
    )


def load_vision_backbone(source: str | Path | FoundationModel, *, num_frames: int | None = None) -> VSSLModel:
    """The vision tower of ``source`` (a Hub id, a folder or a loaded model) as a ``VSSLModel`` in eval mode.

    ``num_frames`` as in :func:`~hf_vssl.foundation.loading.load_foundation_model`.
    """
    foundation = (
        source
        if isinstance(source, FoundationModel)
        else load_foundation_model(source, num_frames=num_frames)
    )
    model = VSSLModel(vision_backbone_config(foundation))
    # strict: every weight of the tower must come from the checkpoint.
    model.backbone.model.load_state_dict(foundation.model.vision_model.state_dict())
    return model.eval()


def export_vision_backbone(
    source: str | Path | FoundationModel, output_dir: str | Path, *, num_frames: int | None = None
) -> Path:
    """Save the vision tower of ``source`` as an hf_vssl backbone checkpoint (+ its video processor).

    The folder is what ``recipes/finetune.py --model_name_or_path`` and ``recipes/cka.py`` take.
    """
    model = load_vision_backbone(source, num_frames=num_frames)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    VSSLVideoProcessor.for_clip(model.config.num_frames, model.config.image_size).save_pretrained(output_dir)
    return output_dir
