"""VSSLConfig: one configuration for every backbone and pretext task of hf_vssl."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

from .backbones import get_backbone_spec


class VSSLConfig(PreTrainedConfig):
    r"""Configuration of an hf_vssl video model.

    One config describes the backbone, the clip shape it was built for, and (for pretraining
    checkpoints) the pretext task. Downstream classification reuses the same config with
    ``num_labels`` / ``id2label`` set.

    Args:
        backbone (`str`, defaults to `"r21d"`):
            Registered backbone name; see `hf_vssl.list_backbones()`. An unknown name raises
            `ValueError` listing the valid ones.
        num_frames (`int`, defaults to 16):
            Frames per input clip.
        image_size (`int`, defaults to 112):
            Height and width of the (square) input frames.
        num_channels (`int`, defaults to 3):
            Colour channels of the input.
        width_multiplier (`float`, defaults to 1.0):
            Scales every channel count of CNN backbones (1.0 is the study's size; 0.125-0.25
            gives the tiny networks used by tests and CPU demos). Transformer backbones ignore it.
        backbone_kwargs (`dict`, *optional*):
            Architecture overrides passed to the backbone builder (e.g. `hidden_size`,
            `num_hidden_layers` of the TimeSformer/ViViT adapters).
        classifier_dropout (`float`, defaults to 0.5):
            Dropout before the classification head of `VSSLForVideoClassification`.
        initializer_range (`float`, defaults to 0.01):
            Std of the normal initialisation of linear heads.
        pretext_task (`str`, *optional*):
            Registered pretext task of a `VSSLForPretraining` checkpoint (`"rspnet"`, ...).
        pretext_config (`dict`, *optional*):
            Task settings overriding the task's defaults (temperature, queue size, ...).

    Example:

    ```python
    >>> import hf_vssl
    >>> config = hf_vssl.VSSLConfig(backbone="r3d", width_multiplier=0.125, num_frames=8, image_size=32)
    >>> model = hf_vssl.VSSLModel(config)
    ```
    """

    model_type = "vssl"

    backbone: str = "r21d"
    num_frames: int = 16
    image_size: int = 112
    num_channels: int = 3
    width_multiplier: float = 1.0
    backbone_kwargs: dict[str, Any] | None = None
    classifier_dropout: float = 0.5
    initializer_range: float = 0.01
    pretext_task: str | None = None
    pretext_config: dict[str, Any] | None = None

    def __post_init__(self, **kwargs):
        self.validate_clip_shape()
        super().__post_init__(**kwargs)

    def validate_clip_shape(self) -> None:
        """Refuse settings the backbone cannot take, with a message that says what would work."""
        spec = get_backbone_spec(self.backbone)
        if not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {self.num_frames!r}.")
        if not isinstance(self.image_size, int) or self.image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {self.image_size!r}.")
        if self.width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be > 0, got {self.width_multiplier!r}.")
        if self.num_frames < spec.min_frames or self.image_size < spec.min_size:
            raise ValueError(
                f"A clip of {self.num_frames} frames at {self.image_size}x{self.image_size} is too small for "
                f"backbone {self.backbone!r}: its strides need at least {spec.min_frames} frames and "
                f"{spec.min_size}x{spec.min_size} pixels."
            )

    @property
    def backbone_spec(self):
        """The registry entry of :attr:`backbone`."""
        return get_backbone_spec(self.backbone)

    def backbone_only(self) -> VSSLConfig:
        """A copy of this config for a plain ``VSSLModel``: no pretext task or settings, and
        ``architectures = ["VSSLModel"]`` (what exporting a pretrained or distilled backbone writes)."""
        config = self.__class__.from_dict(self.to_dict())
        config.pretext_task, config.pretext_config = None, None
        config.architectures = ["VSSLModel"]
        return config

    def for_classification(self, id2label: dict[int, str]) -> VSSLConfig:
        """A copy of this config for ``VSSLForVideoClassification`` over ``id2label``: no pretext task,
        ``id2label``/``label2id`` set, ``architectures = ["VSSLForVideoClassification"]``, and no
        ``auto_map`` (the remote code of a source checkpoint maps the backbone, not the classifier)."""
        config = self.backbone_only()
        config.id2label = {int(index): name for index, name in id2label.items()}
        config.label2id = {name: index for index, name in config.id2label.items()}
        config.architectures = ["VSSLForVideoClassification"]
        config.__dict__.pop("auto_map", None)
        return config
