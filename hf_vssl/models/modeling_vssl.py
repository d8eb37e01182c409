"""hf_vssl's transformers model classes: the backbone alone, and the backbone plus a classifier."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.video.mvit import MultiscaleAttention, PositionalEncoding
from torchvision.models.video.swin_transformer import ShiftedWindowAttention3d
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.models.timesformer.modeling_timesformer import TimesformerEmbeddings

from .backbones import build_backbone
from .configuration_vssl import VSSLConfig


def _reset_keeping_loaded(module: nn.Module) -> None:
    """``module.reset_parameters()`` (PyTorch's default init), leaving tensors loaded from a checkpoint as loaded."""
    loaded = {
        name: tensor.detach().clone()
        for name, tensor in module.named_parameters(recurse=False)
        if getattr(tensor, "_is_hf_initialized", False)
    }
    if len(loaded) == len(list(module.parameters(recurse=False))):
        return
    module.reset_parameters()
    for name, value in loaded.items():
        getattr(module, name).copy_(value)


class VSSLPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the checkpoint conventions shared by every hf_vssl model.

    ``_init_weights`` (run by ``post_init`` on construction and by ``from_pretrained`` on every
    tensor the checkpoint does not hold, non-persistent buffers included) gives every parameter
    and buffer its value. Two hooks let modules outside this folder (pretext heads, queues) take
    part:

    * a module that defines ``init_vssl_buffers()`` has it called: it (re)computes the buffers
      that module registers (constants such as rotation tables or pair indices, queues and their
      pointers). It must write through ``transformers.initialization`` (``init.copy_``,
      ``init.zeros_``, ...), which leave a tensor loaded from a checkpoint untouched;
    * a module whose class sets ``keep_pytorch_init = True`` keeps PyTorch's own default init
      (``reset_parameters()`` of it and of every submodule) instead of the scheme below.

    Everything else: He-normal (fan-out) convolutions with zero bias, BatchNorm/LayerNorm/GroupNorm
    at 1/0 with fresh running statistics, linear layers N(0, ``config.initializer_range``), and
    torchvision's truncated-normal (std 0.02) tables of the Swin and MViT adapters; the wrapped
    transformers models (TimeSformer, ViViT) initialise themselves with their own ``_init_weights``.
    """

    config_class = VSSLConfig
    base_model_prefix = "vssl"
    main_input_name = "pixel_values"
    input_modalities = ("video",)
    supports_gradient_checkpointing = True
    # The default ("sdpa" when the backbone has it) is settled per backbone in get_correct_attn_implementation.
    _supports_sdpa = True

    def get_correct_attn_implementation(
        self, requested_attention: str | None, is_init_check: bool = False
    ) -> str:
        """``"eager"`` for every backbone; ``"sdpa"`` only where the wrapped model supports it (and its default there)."""
        spec = self.config.backbone_spec
        if requested_attention is None:
            return "sdpa" if "sdpa" in spec.attn_implementations else "eager"
        if requested_attention != "eager" and requested_attention not in spec.attn_implementations:
            raise ValueError(
                f"attn_implementation={requested_attention!r} is not available for backbone {spec.name!r}; it supports "
                f"{', '.join(repr(name) for name in ('eager', *spec.attn_implementations))}."
            )
        return super().get_correct_attn_implementation(requested_attention, is_init_check)

    @torch.no_grad()
    def initialize_weights(self) -> None:
        # Which modules keep PyTorch's init is a property of their ancestors, which _init_weights
        # (called leaf first, module by module) cannot see: collect them once for the whole tree.
        keep = {
            id(sub)
            for top in self.modules()
            if getattr(top, "keep_pytorch_init", False)
            for sub in top.modules()
        }
        for module in self.modules():
            if isinstance(module, VSSLPreTrainedModel):
                module._pytorch_init_ids = keep
        # TimesformerModel's own _init_weights leaves its time embeddings out (zeros in its __init__).
        time_embeddings = [
            m.time_embeddings
            for m in self.modules()
            if isinstance(m, TimesformerEmbeddings) and not getattr(m, "_is_hf_initialized", False)
        ]
        super().initialize_weights()
        for parameter in time_embeddings:
            init.zeros_(parameter)

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False) -> None:
        # For custom code, transformers skips a module whose own tensors were all loaded, which
        # includes a module with no tensors of its own; a module with an init_vssl_buffers hook
        # (which may set its submodules' buffers) always gets its call.
        if callable(getattr(module, "init_vssl_buffers", None)) and not getattr(
            module, "_is_hf_initialized", False
        ):
            self._init_weights(module)
            module._is_hf_initialized = True
            return
        super()._initialize_weights(module, is_custom_code)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if callable(getattr(module, "init_vssl_buffers", None)):
            module.init_vssl_buffers()
        if id(module) in getattr(self, "_pytorch_init_ids", ()):
            if callable(getattr(module, "reset_parameters", None)):
                _reset_keeping_loaded(module)
            return
        # The initialisation of the study's reference code: He-normal convolutions, unit BN,
        # small normal linear layers. Transformer adapters keep LayerNorm at 1/0 too.
        if isinstance(module, (nn.Conv3d, nn.Conv2d, nn.Conv1d)):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm3d, nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm)):
            if module.weight is not None:
                init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, ShiftedWindowAttention3d):
            init.trunc_normal_(module.relative_position_bias_table, std=0.02)
            buffer = module.relative_position_index
            module.define_relative_position_index()  # registers a freshly computed index table
            computed = module.relative_position_index
            module.relative_position_index = buffer
            init.copy_(buffer, computed.to(buffer.device))
        elif isinstance(module, (PositionalEncoding, MultiscaleAttention)):
            for parameter in module.parameters(recurse=False):  # class token, relative position tables
                init.trunc_normal_(parameter, std=0.02)

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
            config.num_frames,
            config.image_size,
            config.image_size,
        ):
            raise ValueError(
                f"Backbone {config.backbone!r} was built for clips of {config.num_frames} frames at "
                f"{config.image_size}x{config.image_size}; got {frames} frames at {height}x{width}."
            )
        # One permute; keeps a channels_last_3d layout intact when the caller prepared one.
        return pixel_values.permute(0, 2, 1, 3, 4)


class VSSLModel(VSSLPreTrainedModel):
    """A video backbone: ``pixel_values (B, T, C, H, W)`` -> ``pooler_output (B, D)``.

    ``output_hidden_states=True`` returns the embedding (stem) output, where the backbone has one
    apart from its stages, then one activation per stage, named by :attr:`hidden_state_names`
    (the CKA analysis picks its stages by these names); ``last_hidden_state`` is the last
    stage's activation. ``output_attentions=True`` returns the attention weights of the
    TimeSformer/ViViT adapters (with ``attn_implementation="eager"``) and is refused by backbones
    without them.
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

    @property
    def hidden_state_names(self) -> tuple[str, ...]:
        """Names of the entries of ``hidden_states``, in order (e.g. ``stem, layer1, ..., layer4``)."""
        return self.backbone.hidden_state_names

    def hidden_states_by_name(self, hidden_states: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """``{name: tensor}`` of this model's ``hidden_states`` (select stages by name, never by position)."""
        return dict(zip(self.hidden_state_names, hidden_states, strict=True))

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        config = self.config
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        )
        output_attentions = output_attentions if output_attentions is not None else config.output_attentions
        return_dict = return_dict if return_dict is not None else config.return_dict
        out = self.backbone(self._check_pixel_values(pixel_values), output_attentions=bool(output_attentions))
        hidden_states = None
        if output_hidden_states:
            hidden_states = ((out.embedding,) if out.embedding is not None else ()) + out.stages
        if not return_dict:
            return tuple(
                v for v in (out.stages[-1], out.pooled, hidden_states, out.attentions) if v is not None
            )
        return BaseModelOutputWithPooling(
            last_hidden_state=out.stages[-1],
            pooler_output=out.pooled,
            hidden_states=hidden_states,
            attentions=out.attentions,
        )


class VSSLForVideoClassification(VSSLPreTrainedModel):
    """Backbone + dropout + linear classifier; ``labels`` give a ``loss`` as transformers' classifiers do.

    ``config.problem_type`` chooses the loss: ``"single_label_classification"`` (cross-entropy,
    class indices), ``"multi_label_classification"`` (binary cross-entropy with logits, multi-hot
    float targets) or ``"regression"`` (mean squared error). Unset, it is inferred from the labels:
    regression when ``num_labels == 1``, single-label for integer labels, multi-label otherwise.
    """

    def __init__(self, config: VSSLConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.vssl = VSSLModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(self.vssl.num_features, config.num_labels)
        self.post_init()

    def problem_type_for(self, labels: torch.Tensor) -> str:
        """``config.problem_type``, or the one transformers infers from ``labels`` when it is unset."""
        if self.config.problem_type is not None:
            return self.config.problem_type
        if self.num_labels == 1:
            return "regression"
        if labels.dtype in (torch.long, torch.int):
            return "single_label_classification"
        return "multi_label_classification"

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of ``logits`` against ``labels`` for :meth:`problem_type_for` (computed in float32)."""
        labels = labels.to(logits.device)
        logits = logits.float()
        problem_type = self.problem_type_for(labels)
        if problem_type == "regression":
            if self.num_labels == 1:
                return nn.functional.mse_loss(logits.squeeze(), labels.float().squeeze())
            return nn.functional.mse_loss(logits, labels.float())
        if problem_type == "multi_label_classification":
            return nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
        return nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.vssl(
            pixel_values,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = self.classification_loss(logits, labels) if labels is not None else None
        if not return_dict:
            output = (logits, *tuple(v for v in (outputs.hidden_states, outputs.attentions) if v is not None))
            return ((loss, *output)) if loss is not None else output
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
