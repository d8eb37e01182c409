"""Loading the backbone of any hf_vssl checkpoint, and fitting clips to a model's clip shape.

Pretraining, classification and distillation checkpoints all carry a :class:`VSSLModel` (as the
model itself or as ``.vssl``); :func:`load_vssl_model` gets it from a saved model folder, a Hub
id, or an Accelerate ``checkpoints/checkpoint-N`` folder of a training run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file
from torch import nn
from transformers.utils import logging as hf_logging

from .configuration_vssl import VSSLConfig
from .modeling_vssl import VSSLModel

logger = logging.getLogger(__name__)

__all__ = [
    "backbone_of",
    "config_for_checkpoint",
    "fit_to_config",
    "load_checked",
    "load_vssl_model",
    "resize_clip",
]

#: Where the backbone weights sit in the state dict of each kind of model an Accelerate checkpoint
#: can hold (VSSLModel, classifier or pretraining model, distillation student, DDP-wrapped).
_STATE_PREFIXES = ("", "vssl.", "student.", "student.vssl.", "module.vssl.")


def backbone_of(model: nn.Module) -> VSSLModel:
    """The :class:`VSSLModel` inside ``model`` (itself, or ``.vssl`` of a classifier / pretraining model)."""
    if isinstance(model, VSSLModel):
        return model
    inner = getattr(model, "vssl", None)
    if isinstance(inner, VSSLModel):
        return inner
    raise TypeError(
        f"expected an hf_vssl model (VSSLModel or a model with .vssl), got {type(model).__name__}"
    )


def resize_clip(pixel_values: torch.Tensor, num_frames: int, image_size: int) -> torch.Tensor:
    """``(B, T, C, H, W)`` clips resampled to ``num_frames`` x ``image_size`` x ``image_size`` (trilinear).

    Returns the input unchanged when it already has that shape.
    """
    if pixel_values.ndim != 5:
        raise ValueError(f"pixel_values must be (B, T, C, H, W), got shape {tuple(pixel_values.shape)}")
    _, frames, _, height, width = pixel_values.shape
    if (frames, height, width) == (num_frames, image_size, image_size):
        return pixel_values
    clip = pixel_values.permute(0, 2, 1, 3, 4).float()  # (B, C, T, H, W) for 3D interpolation
    clip = nn.functional.interpolate(
        clip, size=(num_frames, image_size, image_size), mode="trilinear", align_corners=False
    )
    return clip.permute(0, 2, 1, 3, 4).to(pixel_values.dtype)


def fit_to_config(pixel_values: torch.Tensor, config: VSSLConfig) -> torch.Tensor:
    """``pixel_values`` resized to the clip shape ``config`` was built for (see :func:`resize_clip`)."""
    return resize_clip(pixel_values, config.num_frames, config.image_size)


def config_for_checkpoint(path: Path) -> VSSLConfig:
    """The backbone config of an Accelerate checkpoint folder: its run's ``config.json``, else
    ``training_args.yaml``; without the pretext task."""
    for folder in (path, path.parent, path.parent.parent):
        if (folder / "config.json").is_file():
            return VSSLConfig.from_pretrained(folder).backbone_only()
    for folder in (path.parent, path.parent.parent):
        args_file = folder / "training_args.yaml"
        if args_file.is_file():
            values = yaml.safe_load(args_file.read_text()) or {}
            keys = ("backbone", "width_multiplier", "num_frames", "image_size")
            return VSSLConfig(**{k: values[k] for k in keys if values.get(k) is not None})
    raise FileNotFoundError(
        f"{path}: no config.json here or in the run folder above it, and no "
        "training_args.yaml to rebuild the architecture from"
    )


def load_checked(
    model_class,
    path_or_id: str | Path,
    *,
    config: VSSLConfig | None = None,
    reinit_prefix: str | None = None,
    quiet: bool = False,
):
    """``(model, loading info)`` from ``model_class.from_pretrained``, refusing a weights/config mismatch.

    A checkpoint whose ``config.json`` does not match its weights (e.g. another
    ``width_multiplier``) raises ``ValueError`` in one line instead of silently re-initialising
    the tensors of another shape; only those under ``reinit_prefix`` (a classification head
    over other labels) are re-initialised, with a warning. ``quiet`` hides transformers' load
    report (the unused pretext head of a pretraining checkpoint is expected).
    """
    verbosity = hf_logging.get_verbosity()
    if quiet:
        hf_logging.set_verbosity_error()
    try:
        kwargs = {"config": config} if config is not None else {}
        model, info = model_class.from_pretrained(
            str(path_or_id), ignore_mismatched_sizes=True, output_loading_info=True, **kwargs
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    mismatched = [
        entry[0] if isinstance(entry, (tuple, list)) else str(entry)
        for entry in info.get("mismatched_keys", [])
    ]
    wrong = [key for key in mismatched if not (reinit_prefix and key.startswith(reinit_prefix))]
    if wrong:
        raise ValueError(
            f"{path_or_id}: the weights do not match its config.json ({len(wrong)} tensors of another "
            f"shape, e.g. {wrong[0]}); was config.json edited or copied from another model?"
        )
    if mismatched:
        logger.warning(
            "%s: %d head tensors of another shape (%s) are re-initialised",
            path_or_id,
            len(mismatched),
            ", ".join(mismatched[:3]),
        )
    return model, info


def load_vssl_model(path_or_id: str | Path) -> VSSLModel:
    """The :class:`VSSLModel` of a saved model folder, a Hub id, or an Accelerate checkpoint folder (eval mode).

    - a folder (or Hub id) with ``config.json``: ``VSSLModel.from_pretrained`` (pretraining,
      classification and distillation checkpoints all carry the backbone);
      A ``config.json`` that does not match the weights is refused (:func:`load_checked`);
    - a ``checkpoints/checkpoint-N`` folder of a training run (``model.safetensors`` without a
      config): the architecture from the run's ``config.json`` (or ``training_args.yaml``), the
      backbone weights from the checkpoint.
    """
    path = Path(path_or_id)
    weights = path / "model.safetensors"
    if path.is_dir() and not (path / "config.json").is_file():
        if not weights.is_file():
            raise FileNotFoundError(f"{path}: neither config.json nor model.safetensors found")
        model = VSSLModel(config_for_checkpoint(path))
        state = load_file(str(weights))
        wanted = model.state_dict().keys()
        for prefix in _STATE_PREFIXES:
            if all(prefix + key in state for key in wanted):
                model.load_state_dict({key: state[prefix + key] for key in wanted})
                return model.eval()
        raise ValueError(
            f"{weights}: no backbone weights matching the {model.config.backbone!r} architecture of "
            f"its run (tried key prefixes {[p or '<none>' for p in _STATE_PREFIXES]})"
        )
    # The pretext head of a pretraining checkpoint is expected to stay unused: no load report.
    model, _ = load_checked(VSSLModel, path_or_id, quiet=True)
    return model.eval()
