"""Per-clip random parameters: their layout in the uniforms a call draws, and applying a step to
the clips a mask selects.

Every random parameter after the crop is a batched tensor with one row per clip: the per-clip
CPU path (:class:`~hf_vssl.data.transforms.fused.FusedClipTransform`, one clip) and the device
path (:class:`hf_vssl.data.batch_augment.BatchAugment`, a whole batch on the accelerator) draw
and use them through the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

Rows = Sequence[Sequence[float]]  # a small matrix as nested floats (3x3 colour, 2x3 affine)


class ClipParams(NamedTuple):
    """Random parameters of a batch of clips (one row per clip) except the crop.

    ``flip``, ``jitter``, ``gray``, ``gamma_on``, ``blur``, ``solarize``: bool ``(B,)``;
    ``angle`` (degrees), ``hue`` (radians), ``gamma``, ``sigma``: float ``(B,)``;
    ``factors``: brightness, contrast, saturation ``(B, 3)``.
    """

    flip: torch.Tensor
    angle: torch.Tensor
    jitter: torch.Tensor
    factors: torch.Tensor
    hue: torch.Tensor
    gray: torch.Tensor
    gamma_on: torch.Tensor
    gamma: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor
    solarize: torch.Tensor

    def select(self, index: torch.Tensor | slice | int) -> ClipParams:
        """The parameters of the clips ``index`` picks (a slice or an index tensor keeps the batch dim)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return ClipParams(*(field[index] for field in self))

    @property
    def num_clips(self) -> int:
        return self.flip.shape[0]


#: Uniforms per clip that :meth:`FusedClipTransform.clip_params` consumes, by column.
NUM_CLIP_UNIFORMS = 14
(
    U_FLIP,
    U_ANGLE,
    U_JITTER_ON,
    U_B,
    U_C,
    U_S,
    U_ORDER,
    U_HUE,
    U_GRAY,
    U_GAMMA_ON,
    U_GAMMA,
    U_BLUR_ON,
    U_SIGMA,
    U_SOLARIZE,
) = range(NUM_CLIP_UNIFORMS)


def pick(u: float, n: int) -> int:
    """An int uniform in ``[0, n)`` from a uniform ``u`` in ``[0, 1)``."""
    return min(int(u * n), n - 1)


def uniform(u: float, low: float, high: float) -> float:
    """``u`` in ``[0, 1)`` mapped onto ``[low, high)`` (floats or tensors)."""
    return low + u * (high - low)


def one_clip_params(**values) -> ClipParams:
    """Neutral parameters of one clip (float64), with ``values`` set."""
    f64 = torch.float64
    false, zero = torch.zeros(1, dtype=torch.bool), torch.zeros(1, dtype=f64)
    base = {
        "flip": false,
        "angle": zero,
        "jitter": false,
        "factors": torch.ones(1, 3, dtype=f64),
        "hue": zero,
        "gray": false,
        "gamma_on": false,
        "gamma": torch.ones(1, dtype=f64),
        "blur": false,
        "sigma": torch.ones(1, dtype=f64),
        "solarize": false,
    }
    for name, value in values.items():
        base[name] = torch.as_tensor(value, dtype=base[name].dtype).reshape(base[name].shape)
    return ClipParams(**base)


def per_clip(
    clips: torch.Tensor,
    mask: torch.Tensor,
    params: ClipParams,
    step: Callable[[torch.Tensor, ClipParams], torch.Tensor],
) -> torch.Tensor:
    """``step`` on the clips ``mask`` selects, the others unchanged; ``step`` must not modify its input.

    On the CPU only the selected clips are computed (the mask is read on the host); elsewhere
    every clip is computed and the result picked with ``torch.where``: no host sync.
    """
    if clips.device.type == "cpu":
        index = mask.nonzero().flatten()
        if index.numel() == 0:
            return clips
        if index.numel() == mask.numel():
            return step(clips, params)
        clips = clips.clone() if clips.requires_grad else clips
        clips[index] = step(clips[index], params.select(index))
        return clips
    return torch.where(mask.view(-1, *([1] * (clips.ndim - 1))), step(clips, params), clips)
