"""RSPNet (Chen et al., AAAI 2021): relative speed perception + appearance-focused video instance discrimination.

Sampling (as the reference's data loader + ``_diff_speed``): for each video a speed ``a`` is
drawn from ``speeds`` (default 1x and 2x) and ``b != a`` is the other one. The sampler returns
two *windows* of the video, the query's and the key's, at random starts. A window holds the
frames every speed reads from its start (``start + s * i * stride`` for ``i < num_frames``, the
union over the speeds: 24 frames for 16-frame clips at 1x and 2x), so each window is augmented
once, with one crop, flip and colour, by the data layer. The task then cuts, on the device:

- ``query``: speed ``a`` from the query window;
- ``key``: speed ``a`` from the key window;
- ``other_speed_key``: speed ``b`` from *the same* key window: same start, same augmentation
  as ``key`` (the reference cuts both from one augmented key tensor, so appearance cannot tell
  the two keys apart and the speed head must look at motion).

``info = {"query_speed": index of a, "other_speed": index of b}``.

Loss, as the reference's ``MoCoDiffLossTwoFc`` + ``Loss`` (margin 2.0): two L2-normalised
128-d heads on the query backbone (linear, the reference's default ``fc_type``, with PyTorch's
default ``nn.Linear`` initialisation as in the reference), *A* (appearance) and *M* (speed),
and their momentum copies (EMA 0.999) on the keys.

- ``CE_1``: InfoNCE of ``q_A`` with ``k_A`` (same video, same speed) as positive against the
  queue (16384 keys of other videos), temperature 0.07;
- ``CE_2``: the same with ``k'_A`` (same video, other speed) as positive: appearance must not
  depend on speed;
- ranking: ``MarginRankingLoss(margin=2)`` asking ``q_M . k_M / T`` (same speed) to exceed
  ``q_M . k'_M / T`` (different speed) by 2.

loss = CE_1 + CE_2 + ranking; the other-speed appearance keys enter the queue (as in the
reference). ``accuracy`` is the instance top-1 of CE_1 (against the queue);
``batch_accuracy`` the same against the batch's keys only (chance 1/B, unaffected by the queue
filling); ``speed_accuracy`` the fraction of queries ranking the same-speed key higher.

Collapse diagnostics (detached, no host sync): ``speed_logit_gap`` (mean of the two ranking
logits' difference), ``speed_key_cosine`` (cosine between the same-speed and other-speed speed
keys: 1 when the speed head maps both speeds to one point and the ranking loss loses its
signal), ``speed_head_weight_norm`` / ``speed_head_bias_norm`` (the speed head's output layer)
and ``logit_gap`` (appearance positive vs mean queue logit). :meth:`RSPNetTask.check_collapse`
turns the logged values into a warning.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .base import PretextSettings, PretextTask
from .contrastive import (
    FeatureQueue,
    MoCoTask,
    batch_instance_accuracy,
    info_nce_logits,
    logit_gap,
    positive_first_cross_entropy,
)
from .heads import ReferenceInitProjectionHead
from .sampling import ClipPlan, check_length, clip_span


@dataclass
class RSPNetSettings(PretextSettings):
    speeds: tuple[int, ...] = (1, 2)
    """Playback speeds (frame steps) the clips are drawn at; the reference uses 1x and 2x."""
    queue_size: int = 16384
    temperature: float = 0.07
    momentum: float = 0.999
    projection_dim: int = 128
    margin: float = 2.0
    appearance_weight: float = 1.0
    """Weight A of CE_1 + CE_2 (the reference's loss_lambda.A)."""
    speed_weight: float = 1.0
    """Weight M of the margin ranking term (the reference's loss_lambda.M)."""
    head_layers: int = 1
    """Layers of each head: 1 is the reference's default ``fc_type: 'linear'``, 2 its ``'mlp'``."""

    def check(self) -> None:
        speeds = tuple(self.speeds)
        if len(speeds) < 2 or len(set(speeds)) != len(speeds) or min(speeds) < 1:
            raise ValueError(f"speeds must be >= 2 distinct positive integers, got {speeds}.")
        if self.temperature <= 0 or not 0 <= self.momentum <= 1 or self.queue_size < 1:
            raise ValueError(
                f"need temperature > 0, 0 <= momentum <= 1, queue_size >= 1; got {self.temperature}, "
                f"{self.momentum}, {self.queue_size}."
            )
        if self.head_layers not in (1, 2):
            raise ValueError(f"head_layers must be 1 (linear) or 2 (MLP), got {self.head_layers}.")


@functools.cache
def speed_window(num_frames: int, speeds: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, positions)`` of a window serving ``num_frames``-frame clips at every speed.

    ``offsets``: the sorted distinct frame offsets ``s * i`` (``s`` in ``speeds``, ``i <
    num_frames``) in units of the base stride; ``positions[k]``: where the clip at
    ``speeds[k]`` sits in the window, so ``window[positions[k]]`` is that clip.
    """
    steps = np.arange(num_frames, dtype=np.int64)
    offsets = np.unique(np.concatenate([s * steps for s in speeds]))
    positions = np.stack([np.searchsorted(offsets, s * steps) for s in speeds])
    return offsets, positions


@functools.cache
def window_clip_length(window_length: int, speeds: tuple[int, ...]) -> int:
    """The clip length whose :func:`speed_window` has ``window_length`` frames (ValueError if none)."""
    for num_frames in range(1, window_length + 1):
        size = len(speed_window(num_frames, speeds)[0])
        if size == window_length:
            return num_frames
        if size > window_length:
            break
    raise ValueError(
        f"RSPNet expects windows from its sampler (speeds {list(speeds)}); {window_length} frames is not "
        "the window length of any clip length."
    )


@dataclass
class RelativeSpeedSampler:
    """The query's and the key's speed windows and the two speeds (see the module docstring)."""

    num_frames: int
    speeds: tuple[int, ...]
    stride: int = 1

    def window_offsets(self) -> np.ndarray:
        """Frame offsets of a window from its start, base stride included."""
        return speed_window(self.num_frames, tuple(self.speeds))[0] * self.stride

    def min_frames_needed(self) -> int:
        return clip_span(self.num_frames, max(self.speeds) * self.stride)

    def plan(self, num_video_frames: int, rng: np.random.Generator) -> ClipPlan:
        check_length(num_video_frames, self.min_frames_needed(), f"RSPNet with speeds {list(self.speeds)}")
        same = int(rng.integers(len(self.speeds)))
        other = int(rng.choice([i for i in range(len(self.speeds)) if i != same]))
        offsets = self.window_offsets()
        room = num_video_frames - self.min_frames_needed() + 1
        # Both windows fit the fastest speed (the reference reads 2 x 16 frames for each clip).
        query_start, key_start = (int(x) for x in rng.integers(0, room, size=2))
        return ClipPlan(
            [query_start + offsets, key_start + offsets], {"query_speed": same, "other_speed": other}
        )


class RSPNetTask(MoCoTask, PretextTask):
    name = "rspnet"
    settings_class = RSPNetSettings
    transform_preset = "rspnet"
    optimizer_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "sgd",
        "learning_rate": 0.05,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        # The reference scales its configured rate (0.05 for R(2+1)D) linearly per 64 samples.
        "reference_batch_size": 64,
    }

    #: check_collapse: the speed head has collapsed when its two keys (nearly) coincide and the
    #: ranking logits no longer separate them.
    collapse_key_cosine: ClassVar[float] = 0.999
    collapse_logit_gap: ClassVar[float] = 0.05

    def __init__(self, settings: RSPNetSettings, num_features: int):
        super().__init__(settings, num_features)
        # heads[0]: appearance (A), heads[1]: speed (M); linear by default, as the reference's
        # R(2+1)D config (fc_type "linear"), with PyTorch's default Linear init as in the reference.
        dims = (num_features, num_features, settings.projection_dim, settings.head_layers)
        self.heads = nn.ModuleList(
            [ReferenceInitProjectionHead(*dims, batch_norm=False, init="pytorch") for _ in range(2)]
        )
        self.queue = FeatureQueue(settings.queue_size, settings.projection_dim)
        self.ranking = nn.MarginRankingLoss(margin=settings.margin)
        self._positions: dict[tuple[int, torch.device], torch.Tensor] = {}

    @property
    def num_clips(self) -> int:
        return 2

    def sampler(self, num_frames: int, stride: int = 1) -> RelativeSpeedSampler:
        return RelativeSpeedSampler(num_frames, tuple(self.settings.speeds), stride)

    def suggest(self, num_frames: int, video_num_frames: int, stride: int) -> str:
        fastest = max(self.settings.speeds)
        frames = (video_num_frames - 1) // (fastest * stride) + 1
        return f"num_frames<={frames} keeps speed {fastest}x at stride {stride}, or drop videos this short"

    def _speed_positions(self, window_length: int, device: torch.device) -> torch.Tensor:
        """``(num_speeds, T)`` window positions of each speed's clip, cached per shape and device."""
        key = (window_length, device)
        if key not in self._positions:
            speeds = tuple(self.settings.speeds)
            positions = speed_window(window_clip_length(window_length, speeds), speeds)[1]
            self._positions[key] = torch.as_tensor(positions, device=device)
        return self._positions[key]

    def cut_clips(
        self, windows: torch.Tensor, query_speed: torch.Tensor, other_speed: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, 2, W, C, H, W')`` windows -> ``(query, key, other_speed_key)``, each ``(B, T, C, H, W')``.

        The query and the key are read at ``query_speed``, the other-speed key at ``other_speed``
        from the key's window (one gather per clip, on the device).
        """
        positions = self._speed_positions(windows.shape[2], windows.device)
        rows = torch.arange(windows.shape[0], device=windows.device)[:, None]
        same, other = positions[query_speed.to(windows.device)], positions[other_speed.to(windows.device)]
        return windows[:, 0][rows, same], windows[:, 1][rows, same], windows[:, 1][rows, other]

    def forward(self, backbone, pixel_values, generator=None, query_speed=None, other_speed=None, **info):
        windows = self._expect_clips(pixel_values)
        if query_speed is None or other_speed is None:
            raise ValueError(
                "RSPNet needs the sampler's query_speed and other_speed labels with pixel_values."
            )
        query, key, other_key = self.cut_clips(windows, query_speed, other_speed)
        batch = query.shape[0]
        if self.training:
            self.momentum_step(backbone)
        key_a, key_m = self.encode_keys(torch.cat([key, other_key]), generator)
        features = self._features(backbone, query)
        q_a, q_m = self.heads[0](features), self.heads[1](features)
        queue = self.queue()
        temperature = self.settings.temperature
        logits_same = info_nce_logits(q_a, key_a[:batch], queue, temperature)
        ce_same, top1 = positive_first_cross_entropy(logits_same)
        ce_other, _ = positive_first_cross_entropy(info_nce_logits(q_a, key_a[batch:], queue, temperature))
        same_speed = (q_m.float() * key_m[:batch].float()).sum(dim=1) / temperature
        other_speed_logit = (q_m.float() * key_m[batch:].float()).sum(dim=1) / temperature
        ranking = self.ranking(same_speed, other_speed_logit, torch.ones_like(same_speed))
        loss = self.settings.appearance_weight * (ce_same + ce_other) + self.settings.speed_weight * ranking
        if self.training:
            self.queue.enqueue(key_a[batch:])
        output = self.heads[1].output_layer
        with torch.no_grad():
            metrics = {
                "accuracy": top1,
                "batch_accuracy": batch_instance_accuracy(q_a, key_a[:batch]),
                "speed_accuracy": (same_speed > other_speed_logit).float().mean(),
                "appearance_loss": (ce_same + ce_other).detach(),
                "speed_loss": ranking.detach(),
                "logit_gap": logit_gap(logits_same),
                "speed_logit_gap": (same_speed - other_speed_logit).mean(),
                "speed_key_cosine": (key_m[:batch].float() * key_m[batch:].float()).sum(dim=1).mean(),
                "speed_head_weight_norm": output.weight.detach().float().norm(),
                "speed_head_bias_norm": output.bias.detach().float().norm(),
            }
        return loss, metrics

    def check_collapse(self, logged_metrics: dict[str, float]) -> str | None:
        """Warn when the speed head maps both speeds to one point (see the module docstring)."""
        cosine = logged_metrics.get("speed_key_cosine")
        gap = logged_metrics.get("speed_logit_gap")
        if cosine is None or gap is None:
            return None
        if cosine > self.collapse_key_cosine and abs(gap) < self.collapse_logit_gap:
            return (
                f"RSPNet's speed head looks collapsed: the same-speed and other-speed keys have cosine "
                f"{cosine:.4f} and the ranking logits differ by {gap:.4f} (margin {self.settings.margin}), "
                f"so the relative-speed loss carries no signal; speed head output layer weight norm "
                f"{logged_metrics.get('speed_head_weight_norm', float('nan')):.4g}, bias norm "
                f"{logged_metrics.get('speed_head_bias_norm', float('nan')):.4g}."
            )
        return None
