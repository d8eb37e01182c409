"""hf_vssl's transformers model classes: the backbone alone, and the backbone plus a classifier."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput

from .backbones import build_backbone
from .configuration_vssl import VSSLConfig


class VSSLPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the checkpoint conventions shared by every hf_vssl model."""

    config_class = VSSLConfig
    base_model_prefix = "vssl"
    main_input_name = "pixel_values"
    input_modalities = ("video",)
    supports_gradient_checkpointing = False

    def initialize_weights(self) -> None:
        # transformers visits only modules holding tensors of their own, so the keep_pytorch_init
        # flag of a container (a head) is collected here for all its submodules.
        keep = {id(sub) for top in self.modules() if getattr(top, "keep_pytorch_init", False) for sub in top.modules()}
        for module in self.modules():
            if isinstance(module, VSSLPreTrainedModel):
                module._pytorch_init_ids = keep
        super().initialize_weights()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Interface 2 (pretext modules): init_vssl_buffers() (re)initialises a module's buffers;
        # a module under a class with keep_pytorch_init = True keeps its own reset_parameters().
        if callable(getattr(module, "init_vssl_buffers", None)):
            module.init_vssl_buffers()
        if id(module) in getattr(self, "_pytorch_init_ids", ()):
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
            return
        # The initialisation of the study's reference code: He-normal convolutions, unit BN,
        # small normal linear layers. Transformer adapters keep LayerNorm at 1/0 too.
        if isinstance(module, (nn.Conv3d, nn.Conv2d, nn.Conv1d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm3d, nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm)):
            if module.weight is not None:
                nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
                module.num_batches_tracked.zero_()
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Validate ``(B, T, C, H, W)`` input and return it as ``(B, C, T, H, W)`` for the backbone."""
        if pixel_values.ndim != 5:
            raise ValueError(
                f"pixel_values must be (batch, frames, channels, height, width), got shape {tuple(pixel_values.shape)}."
            )
        _, frames, channels, height, width = pixel_values.shape
        config = self.config
        if channels != config.num_channels:
            raise ValueError(
                f"pixel_values has {channels} channels but the model expects {config.num_channels}; the layout is "
                f"(batch, frames, channels, height, width), got shape {tuple(pixel_values.shape)}."
            )
        spec = config.backbone_spec
        if frames < spec.min_frames or min(height, width) < spec.min_size:
            raise ValueError(
                f"A clip of {frames} frames at {height}x{width} is too small for backbone {config.backbone!r}: "
                f"it needs at least {spec.min_frames} frames and {spec.min_size}x{spec.min_size} pixels."
            )
        if spec.fixed_input_shape and (frames, height, width) != (
            config.num_frames, config.image_size, config.image_size
        ):
            raise ValueError(
                f"Backbone {config.backbone!r} was built for clips of {config.num_frames} frames at "
                f"{config.image_size}x{config.image_size}; got {frames} frames at {height}x{width}."
            )
        # One permute; keeps a channels_last_3d layout intact when the caller prepared one.
        return pixel_values.permute(0, 2, 1, 3, 4)


class VSSLModel(VSSLPreTrainedModel):
    """A video backbone: ``pixel_values (B, T, C, H, W)`` -> ``pooler_output (B, D)``.

    ``output_hidden_states=True`` returns one activation per backbone stage (what the CKA
    analysis compares); ``last_hidden_state`` is the last stage's activation.
    """

    # Loading the backbone out of a pretraining or classification checkpoint drops the pretext
    # heads / classifier on purpose: no "unexpected keys" report for them.
    _keys_to_ignore_on_load_unexpected = [r"^pretext\.", r"^classifier\.", r"^projectors?\."]

    def __init__(self, config: VSSLConfig):
        super().__init__(config)
        self.backbone = build_backbone(config)
        self.post_init()

    @property
    def num_features(self) -> int:
        return self.backbone.num_features

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        pooled, stages = self.backbone(self._check_pixel_values(pixel_values))
        hidden_states = stages if output_hidden_states else None
        if not return_dict:
            return tuple(v for v in (stages[-1], pooled, hidden_states) if v is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=stages[-1], pooler_output=pooled, hidden_states=hidden_states
        )


class VSSLForVideoClassification(VSSLPreTrainedModel):
    """Backbone + dropout + linear classifier; ``labels`` give a cross-entropy ``loss``."""

    def __init__(self, config: VSSLConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.vssl = VSSLModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(self.vssl.num_features, config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.vssl(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels.to(logits.device))
        if not return_dict:
            output = (logits,) + ((outputs.hidden_states,) if outputs.hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return ImageClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
