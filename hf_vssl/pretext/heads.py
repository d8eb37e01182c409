"""Heads the pretext tasks put on top of the backbone's pooled feature (or last stage)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as hf_init


class GlorotLinear(nn.Linear):
    """``nn.Linear`` whose own default initialisation is Keras' ``Dense`` default: Glorot-uniform
    weights, zero bias (for the heads of a TensorFlow original, e.g. CVRL's)."""

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


#: Initialisations of :class:`ReferenceInitProjectionHead`'s linear layers: PyTorch's own
#: ``nn.Linear`` default (kaiming-uniform weights, a=sqrt(5), uniform bias) or Keras' ``Dense``
#: default (:class:`GlorotLinear`).
HEAD_INITS: dict[str, type[nn.Linear]] = {"pytorch": nn.Linear, "glorot": GlorotLinear}


class ProjectionHead(nn.Module):
    """MLP projection to an L2-normalised embedding (SimCLR / CVRL / MoCo v2 style).

    ``num_layers`` linear layers (of class ``linear``); every layer but the last is followed by
    BatchNorm (if ``batch_norm``) and ReLU. ``num_layers=1`` is a plain linear projection. Its
    weights get the library's initialisation (``VSSLPreTrainedModel._init_weights``); see
    :class:`ReferenceInitProjectionHead` for a head that keeps its original work's init.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        batch_norm: bool = True,
        linear: type[nn.Linear] = nn.Linear,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            # No bias before BatchNorm: the mean subtraction cancels it.
            layers.append(linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(linear(dim, out_dim))
        self.mlp = nn.Sequential(*layers)

    @property
    def output_layer(self) -> nn.Linear:
        """The last linear layer (its weight and bias norms are a collapse diagnostic)."""
        return self.mlp[-1]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(features), dim=-1)


class ReferenceInitProjectionHead(ProjectionHead):
    """A :class:`ProjectionHead` that keeps the initialisation of the task's original code.

    ``keep_pytorch_init = True`` asks ``VSSLPreTrainedModel._init_weights`` to leave this head
    and its layers to their own ``reset_parameters()`` instead of the library's small-normal
    re-init. With ``init="pytorch"`` that is PyTorch's ``nn.Linear`` default: in a PyTorch
    original such as RSPNet's the heads were never re-initialised, and a 128-d linear head then
    starts with weights about 5x larger than N(0, 0.01), which matters for a head that can
    collapse. ``init="glorot"`` uses :class:`GlorotLinear` layers (a Keras original, CVRL).
    """

    keep_pytorch_init = True

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        batch_norm: bool = True,
        init: str = "pytorch",
    ):
        if init not in HEAD_INITS:
            raise ValueError(f"init must be one of {', '.join(HEAD_INITS)}, got {init!r}.")
        super().__init__(in_dim, hidden_dim, out_dim, num_layers, batch_norm, linear=HEAD_INITS[init])
        self.init = init

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-draw every layer with its own default init (BatchNorm at 1/0, running stats reset).

        Only tensors ``from_pretrained`` did not load are touched: ``torch.nn.init`` is guarded
        by transformers while it initialises a model, and the BatchNorm buffers (which
        ``BatchNorm1d.reset_parameters`` would overwrite unguarded) go through the guarded
        :mod:`transformers.initialization` functions.
        """
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                module.reset_parameters()
            elif isinstance(module, nn.BatchNorm1d):
                for tensor in (module.weight, module.running_var):
                    hf_init.ones_(tensor)
                for tensor in (module.bias, module.running_mean, module.num_batches_tracked):
                    hf_init.zeros_(tensor)


def dropout(
    x: torch.Tensor, p: float, training: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``F.dropout`` whose mask is drawn from ``generator`` (torch's global RNG when ``None``)."""
    if not training or p == 0.0:
        return x
    keep = torch.empty_like(x).bernoulli_(1.0 - p, generator=generator)
    return x * keep / (1.0 - p)


class ClassifierHead(nn.Module):
    """Linear classifier, or ``Linear -> ReLU -> Linear`` when ``hidden_dim`` is positive.

    Kept at PyTorch's default ``nn.Linear`` init (``keep_pytorch_init``): the heads of the
    classification-style originals (RotNet's ``fc1``/``fc2``, PRP's ``fc8``) are never re-initialised.
    """

    keep_pytorch_init = True

    def __init__(self, in_dim: int, num_classes: int, hidden_dim: int = 0):
        super().__init__()
        if hidden_dim > 0:
            self.layers = nn.Sequential(
                nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, num_classes)
            )
        else:
            self.layers = nn.Sequential(nn.Linear(in_dim, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class PairwiseOrderHead(nn.Module):
    """VCOP's order classifier: every clip pair ``(i < j)`` -> shared MLP on ``[f_i, f_j]``.

    ``2D -> hidden`` + ReLU per pair, the pair outputs concatenated, dropout, then a linear layer
    to the ``N!`` permutation classes (Xu et al., CVPR 2019), at PyTorch's default init like the
    original's ``fc7``/``fc8``. The pair indices are made on the features' device in ``forward``
    (``torch.triu_indices``, the order of ``itertools.combinations``), not kept as buffers, so a
    model built on the meta device by ``from_pretrained`` has nothing to restore.
    """

    keep_pytorch_init = True

    def __init__(
        self, num_features: int, num_clips: int, num_classes: int, hidden_dim: int = 512, dropout: float = 0.5
    ):
        super().__init__()
        self.num_clips = num_clips
        num_pairs = num_clips * (num_clips - 1) // 2
        self.pair_mlp = nn.Linear(2 * num_features, hidden_dim)
        self.dropout_p = dropout
        self.classifier = nn.Linear(hidden_dim * num_pairs, num_classes)

    def forward(self, features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``features`` ``(B, N, D)`` in the order the clips were shown -> logits ``(B, N!)``.

        The dropout mask is drawn from ``generator`` (torch's global RNG when ``None``).
        """
        first, second = torch.triu_indices(self.num_clips, self.num_clips, 1, device=features.device)
        pairs = torch.cat([features[:, first], features[:, second]], dim=-1)  # (B, P, 2D)
        hidden = F.relu(self.pair_mlp(pairs)).flatten(1)  # one batched matmul for all pairs
        return self.classifier(dropout(hidden, self.dropout_p, self.training, generator))


class ConvBlock(nn.Sequential):
    """``Conv3d(3x3x3, padding 1) -> BatchNorm3d -> ReLU`` (the ``conv3d`` unit of PRP's network).

    PyTorch's default init, as in the original (which initialises nothing itself).
    """

    keep_pytorch_init = True

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        )


class PRPDecoder(nn.Module):
    """PRP's reconstruction decoder (``SSCN_OneClip``): last backbone stage -> frames in [0, 1].

    Three stages of (``ConvTranspose3d(c, c, 2, stride 2)``, :class:`ConvBlock` halving ``c``),
    a fourth ``ConvTranspose3d`` at constant width, then a :class:`ConvBlock` to the colour
    channels, whose ReLU keeps the output non-negative like the [0, 1] targets. Widths follow
    the original's 512 -> 256 -> 128 -> 64 -> 64 -> 3, scaled by ``in_channels / 512``; the four
    x2 steps turn a 16x112x112 clip's 2x7x7 last stage into the 32-frame target exactly, any
    other size is resized to the target with one trilinear interpolation. PyTorch's default
    init throughout, as in the original.
    """

    keep_pytorch_init = True

    def __init__(self, in_channels: int, out_channels: int = 3, num_upsamplings: int = 4, minimum: int = 8):
        super().__init__()
        stages = []
        width = in_channels
        for _ in range(num_upsamplings - 1):
            next_width = max(width // 2, minimum)
            stages.append(
                nn.Sequential(nn.ConvTranspose3d(width, width, 2, stride=2), ConvBlock(width, next_width))
            )
            width = next_width
        stages.append(nn.ConvTranspose3d(width, width, 2, stride=2))
        self.stages = nn.Sequential(*stages)
        self.output = ConvBlock(width, out_channels)

    def forward(self, feature_map: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
        """Decode to ``size = (T, H, W)``; returns ``(B, T, C, H, W)``."""
        x = self.output(self.stages(feature_map))
        if tuple(x.shape[-3:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
        return x.transpose(1, 2)


class ReconstructionDecoder(nn.Module):
    """PRP's light decoder: last backbone stage ``(B, C, t, h, w)`` -> frames ``(B, T, 3, H, W)``.

    A 1x1x1 projection, ``num_upsamplings`` stages of (trilinear x2, 3x3x3 conv, BatchNorm,
    ReLU) halving the width each time, a 1x1x1 conv to the colour channels and one trilinear
    resize of those to the exact target size. Kept light on purpose: the widest stage is
    ``hidden_dim`` and no convolution runs at the full target resolution (a 3x3x3 conv there
    with few channels cost ~30% of an r21d training step on CPU, mostly in its backward). Inputs that are not 5-D (token outputs of
    transformer backbones) are decoded from the pooled feature as a 1x1x1 map.
    """

    def __init__(self, in_channels: int, hidden_dim: int, out_channels: int = 3, num_upsamplings: int = 3):
        super().__init__()
        self.project = nn.Conv3d(in_channels, hidden_dim, kernel_size=1)
        stages = []
        width = hidden_dim
        for _ in range(num_upsamplings):
            next_width = max(width // 2, 8)
            stages.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
                    nn.Conv3d(width, next_width, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm3d(next_width),
                    nn.ReLU(inplace=True),
                )
            )
            width = next_width
        self.stages = nn.Sequential(*stages)
        self.output = nn.Conv3d(width, out_channels, kernel_size=1)

    def forward(self, feature_map: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
        """Decode to ``size = (T, H, W)``; returns ``(B, T, C, H, W)``."""
        x = self.output(self.stages(self.project(feature_map)))
        if tuple(x.shape[-3:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
        return x.transpose(1, 2)
