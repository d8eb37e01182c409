"""Thin adapters that expose video transformers as :class:`VideoBackbone`.

Each adapter wraps an unmodified model class (torchvision's ``SwinTransformer3d`` and ``MViT``,
transformers' ``TimesformerModel`` and ``VivitModel``), built from scratch with random weights
(nothing is downloaded), without its classifier. It takes ``(B, C, T, H, W)``, converts it to
what the wrapped model expects, and returns:

* swin-t: the patch embedding and the four stage outputs as ``(B, C, T, H, W)``; pooled = final
  LayerNorm + mean.
* mvit: the token sequence ``(B, 1 + T*H*W, C)`` after the patch embedding and at the end of
  each of the four stages; pooled = final LayerNorm of the class token.
* timesformer / vivit: the embedding output and every layer's hidden state
  ``(B, tokens, hidden_size)``, and on request each layer's attention weights; pooled = final
  LayerNorm of the CLS token (what their ``ForVideoClassification`` heads read). The wrapped
  model's own gradient checkpointing and attention implementation (``attn_implementation``,
  SDPA for ViViT) are used as they are.

``config.backbone_kwargs`` (a dict or None) overrides architecture fields, e.g.
``{"embed_dim": 24, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}`` for a tiny swin or
``{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}``
for a tiny TimeSformer / ViViT. ``width_multiplier`` does not apply to these models.

This file is part of the remote code that checkpoints carry (see ``backbone_base``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch import nn
from torchvision.models.video.mvit import MSBlockConfig, MViT
from torchvision.models.video.swin_transformer import PatchEmbed3d, SwinTransformer3d
from transformers import PreTrainedConfig, TimesformerConfig, TimesformerModel, VivitConfig, VivitModel

from .backbone_base import BackboneOutput, VideoBackbone


def _overrides(config, defaults: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``defaults`` updated with ``config.backbone_kwargs``; unknown keys raise ``ValueError``."""
    overrides = dict(getattr(config, "backbone_kwargs", None) or {})
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(
            f"backbone_kwargs {unknown} are not architecture fields of {name}; valid keys: {', '.join(defaults)}"
        )
    return {**defaults, **overrides}


# ----------------------------------------------------------------------------------------------
# Video Swin-T (torchvision swin3d_t)

SWIN_T_DEFAULTS: dict[str, Any] = {
    # torchvision.models.video.swin3d_t
    "patch_size": [2, 4, 4],
    "embed_dim": 96,
    "depths": [2, 2, 6, 2],
    "num_heads": [3, 6, 12, 24],
    "window_size": [8, 7, 7],
    "mlp_ratio": 4.0,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "stochastic_depth_prob": 0.1,
}


class SwinBackbone(VideoBackbone):
    """torchvision ``SwinTransformer3d`` without its head; one output per stage, ``(B, C, T, H, W)``."""

    def __init__(self, in_channels: int = 3, **swin_kwargs: Any) -> None:
        super().__init__()
        self.model = SwinTransformer3d(
            **swin_kwargs, num_classes=1, patch_embed=partial(PatchEmbed3d, in_channels=in_channels)
        )
        self.model.head = nn.Identity()
        self.num_features = self.model.num_features
        self.stage_names = tuple(f"stage{i + 1}" for i in range(len(swin_kwargs["depths"])))

    embedding_name = "patch_embed"
    _no_split_modules = ["SwinTransformerBlock", "PatchMerging"]

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.model.pos_drop(self.model.patch_embed(x))  # (B, T, H, W, C)
        hidden = [x.permute(0, 4, 1, 2, 3)]
        for module in self.model.features:  # [stage, merge, stage, merge, ..., stage]
            x = self.run_stage(module, x)
            if isinstance(module, nn.Sequential):
                hidden.append(x.permute(0, 4, 1, 2, 3))
        return hidden

    def pool(self, last_stage: torch.Tensor) -> torch.Tensor:
        return self.model.norm(last_stage.permute(0, 2, 3, 4, 1)).flatten(1, 3).mean(dim=1)


def build_swin_t(config) -> SwinBackbone:
    """Video Swin-T (torchvision ``swin3d_t`` architecture, random init): 28M parameters, 768-d."""
    return SwinBackbone(in_channels=config.num_channels, **_overrides(config, SWIN_T_DEFAULTS, "swin-t"))


# ----------------------------------------------------------------------------------------------
# MViT v2-S (torchvision mvit_v2_s)

MVIT_V2_S_DEFAULTS: dict[str, Any] = {
    # torchvision.models.video.mvit_v2_s, written as the MViTv2 paper's Table 1 (per stage).
    "embed_dim": 96,
    "depths": [1, 2, 11, 2],
    "num_heads": [1, 2, 4, 8],
    "kv_stride": 8,
    "attention_dropout": 0.0,
    "stochastic_depth_prob": 0.2,
}


def mvit_v2_block_setting(
    embed_dim: int, depths: list[int], num_heads: list[int], kv_stride: int
) -> list[MSBlockConfig]:
    """The per-block ``MSBlockConfig`` list of an MViTv2 with the given per-stage settings.

    With the defaults this is exactly torchvision's ``mvit_v2_s`` table: the first block of each
    stage after the first pools queries by (1, 2, 2) and doubles the channels (inside the
    attention, the v2 layout); keys/values are pooled by ``kv_stride`` in the first stage and by
    half as much in each later stage (at least 1); all pooling kernels are 3x3x3.
    """
    if len(depths) != len(num_heads) or min(depths) < 1:
        raise ValueError(f"depths and num_heads need one positive entry per stage, got {depths}, {num_heads}")
    setting = []
    channels = embed_dim
    for stage, (depth, heads) in enumerate(zip(depths, num_heads)):
        kv = max(1, kv_stride // 2**stage)
        for block in range(depth):
            first = block == 0 and stage > 0
            out_channels = channels * 2 if first else channels
            setting.append(
                MSBlockConfig(
                    num_heads=heads,
                    input_channels=channels,
                    output_channels=out_channels,
                    kernel_q=[3, 3, 3],
                    kernel_kv=[3, 3, 3],
                    stride_q=[1, 2, 2] if first else [1, 1, 1],
                    stride_kv=[1, kv, kv],
                )
            )
            channels = out_channels
    return setting


class MViTBackbone(VideoBackbone):
    """torchvision ``MViT`` (v2 layout) without its head; the token sequence at each stage end.

    The relative position tables are sized for one input shape, so the clip must be exactly
    ``num_frames x image_size x image_size`` (frames even, size a multiple of 32).
    """

    def __init__(
        self,
        num_frames: int,
        image_size: int,
        embed_dim: int,
        depths: list[int],
        num_heads: list[int],
        kv_stride: int,
        **mvit_kwargs: Any,
    ) -> None:
        super().__init__()
        # Patch embedding strides time by 2 and space by 4, then each later stage halves space;
        # the token grid is computed by floor division, so odd sizes would desynchronise it.
        spatial_stride = 4 * 2 ** (len(depths) - 1)
        if num_frames % 2 or image_size % spatial_stride:
            raise ValueError(
                f"mvit needs an even number of frames and an image size divisible by {spatial_stride}, "
                f"got num_frames={num_frames}, image_size={image_size}"
            )
        setting = mvit_v2_block_setting(embed_dim, depths, num_heads, kv_stride)
        self.model = MViT(
            spatial_size=(image_size, image_size),
            temporal_size=num_frames,
            block_setting=setting,
            residual_pool=True,
            residual_with_cls_embed=False,
            rel_pos_embed=True,
            proj_after_attn=True,
            num_classes=1,
            **mvit_kwargs,
        )
        self.model.head = nn.Identity()
        self.input_shape = (num_frames, image_size, image_size)
        # Plain Python: from_pretrained builds the model on the meta device, where a tensor has no values.
        self._stage_ends = frozenset(end - 1 for end in itertools.accumulate(depths))
        self.num_features = setting[-1].output_channels
        self.stage_names = tuple(f"stage{i + 1}" for i in range(len(depths)))

    embedding_name = "patch_embed"
    _no_split_modules = ["MultiscaleBlock"]

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        if tuple(x.shape[2:]) != self.input_shape or x.shape[1] != 3:
            raise ValueError(
                f"mvit was built for clips (B, 3, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        m = self.model
        x = m.conv_proj(x).flatten(2).transpose(1, 2)
        x = m.pos_encoding(x)
        thw = (m.pos_encoding.temporal_size, *m.pos_encoding.spatial_size)
        hidden = [x]
        for index, block in enumerate(m.blocks):
            x, thw = self.run_stage(block, x, thw)
            if index in self._stage_ends:
                hidden.append(x)
        return hidden

    def pool(self, last_stage: torch.Tensor) -> torch.Tensor:
        return self.model.norm(last_stage[:, 0])


def build_mvit(config) -> MViTBackbone:
    """MViT v2-S (torchvision ``mvit_v2_s`` architecture, random init) for ``config``'s clip shape."""
    if config.num_channels != 3:
        raise ValueError(f"mvit takes 3-channel clips, got num_channels={config.num_channels}")
    kwargs = _overrides(config, MVIT_V2_S_DEFAULTS, "mvit")
    return MViTBackbone(config.num_frames, config.image_size, **kwargs)


# ----------------------------------------------------------------------------------------------
# TimeSformer and ViViT (transformers)


class HFViTBackbone(VideoBackbone):
    """A transformers video ViT (``TimesformerModel`` / ``VivitModel``); the embedding and every layer's hidden state.

    Gradient checkpointing is the wrapped model's own (its layers carry the flag), so this
    adapter never checkpoints by itself.
    """

    embedding_name = "embeddings"
    has_attentions = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_features = model.config.hidden_size
        self.stage_names = tuple(f"layer{i + 1}" for i in range(model.config.num_hidden_layers))
        self._no_split_modules = sorted(model._no_split_modules)

    def forward(self, x: torch.Tensor, output_attentions: bool = False) -> BackboneOutput:
        if output_attentions and self.model.config._attn_implementation != "eager":
            raise ValueError(
                f"output_attentions=True needs the eager attention, but this {type(self.model).__name__} uses "
                f"{self.model.config._attn_implementation!r}; load the model with attn_implementation='eager' "
                "(or call model.set_attn_implementation('eager'))."
            )
        # transformers video models take (B, T, C, H, W); hidden_states[0] is the embedding output.
        out = self.model(
            pixel_values=x.transpose(1, 2),
            output_hidden_states=True,
            output_attentions=output_attentions,
            return_dict=True,
        )
        stages = tuple(out.hidden_states[1:])
        return BackboneOutput(
            self.pool(stages[-1]),
            stages,
            out.hidden_states[0],
            tuple(out.attentions) if output_attentions else None,
        )

    def pool(self, last_stage: torch.Tensor) -> torch.Tensor:
        # hidden_states hold the pre-LayerNorm layer outputs; LayerNorm is per token, so norming
        # the CLS token alone equals last_hidden_state[:, 0].
        return self.model.layernorm(last_stage[:, 0])


def _hf_config(config_class, config, name: str, **fixed: Any):
    """``config_class`` built with the model's own fields overridable by ``backbone_kwargs``.

    The attention implementation the outer model settled on (``config._attn_implementation``,
    set by ``from_pretrained(..., attn_implementation=...)``) is handed to the wrapped model.
    """
    generic = set(PreTrainedConfig().to_dict())  # output_hidden_states, id2label, ... are not architecture
    architecture = {k: v for k, v in config_class().to_dict().items() if k not in generic and k not in fixed}
    hf_config = config_class(**_overrides(config, architecture, name), **fixed)
    hf_config._attn_implementation = getattr(config, "_attn_implementation", None)
    return hf_config


def build_timesformer(config) -> HFViTBackbone:
    """TimeSformer (divided space-time attention), transformers ``TimesformerModel``, random init."""
    hf_config = _hf_config(
        TimesformerConfig,
        config,
        "timesformer",
        image_size=config.image_size,
        num_frames=config.num_frames,
        num_channels=config.num_channels,
    )
    return HFViTBackbone(TimesformerModel(hf_config))


def build_vivit(config) -> HFViTBackbone:
    """ViViT (joint space-time attention over tubelets), transformers ``VivitModel`` without pooler, random init."""
    hf_config = _hf_config(
        VivitConfig,
        config,
        "vivit",
        image_size=config.image_size,
        num_frames=config.num_frames,
        num_channels=config.num_channels,
    )
    return HFViTBackbone(VivitModel(hf_config, add_pooling_layer=False))
