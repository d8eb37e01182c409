"""RSPNet (Chen et al., AAAI 2021): relative speed perception + appearance-focused video instance discrimination.

Sampling: for each video a speed ``a`` is drawn from ``speeds`` (default 1x and 2x) and the
sampler returns three clips of ``num_frames`` frames, in this order:

- ``query``: a random window at speed ``a`` (a 2x clip takes every other frame, so 16 frames
  at 2x cover 32 frames of the video);
- ``key``: another random window of the same video, also at speed ``a``;
- ``other_speed_key``: the same start as ``key`` at the other speed ``b != a``.

``info = {"query_speed": index of a, "other_speed": index of b}`` (relative speed: query/key
*same*, query/other_speed_key *different*). This is the reference implementation's on-device
selection (``_diff_speed``) moved into the sampler, so only the frames used are decoded.

Loss, as the reference's ``MoCoDiffLossTwoFc`` + ``Loss`` (margin 2.0): two L2-normalised
128-d heads on the query backbone (linear, the reference's default ``fc_type``), *A*
(appearance) and *M* (speed), and their momentum copies (EMA 0.999) on the keys.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .base import PretextSettings, PretextTask
from .contrastive import FeatureQueue, MoCoTask, batch_instance_accuracy, info_nce
from .heads import ProjectionHead
from .sampling import ClipPlan, check_length, clip_span, strided_indices


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


@dataclass
class RelativeSpeedSampler:
    """Query, same-speed key and other-speed key (see the module docstring)."""

    num_frames: int
    speeds: tuple[int, ...]
    stride: int = 1

    def _span(self, speed: int) -> int:
        return clip_span(self.num_frames, speed * self.stride)

    def min_frames_needed(self) -> int:
        return self._span(max(self.speeds))

    def plan(self, num_video_frames: int, rng: np.random.Generator) -> ClipPlan:
        check_length(num_video_frames, self.min_frames_needed(), f"RSPNet with speeds {list(self.speeds)}")
        same = int(rng.integers(len(self.speeds)))
        other = int(rng.choice([i for i in range(len(self.speeds)) if i != same]))
        a, b = self.speeds[same] * self.stride, self.speeds[other] * self.stride
        query_start = int(rng.integers(0, num_video_frames - self._span(self.speeds[same]) + 1))
        # The key window must fit both speeds: it is read at a and at b from the same start.
        key_start = int(
            rng.integers(0, num_video_frames - self._span(max(self.speeds[same], self.speeds[other])) + 1)
        )
        clips = [
            strided_indices(query_start, self.num_frames, a),
            strided_indices(key_start, self.num_frames, a),
            strided_indices(key_start, self.num_frames, b),
        ]
        return ClipPlan(clips, {"query_speed": same, "other_speed": other})


class RSPNetTask(MoCoTask, PretextTask):
    name = "rspnet"
    settings_class = RSPNetSettings
    transform_preset = "rspnet"
    optimizer_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "sgd",
        "learning_rate": 0.05,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "reference_batch_size": 32,
    }

    def __init__(self, settings: RSPNetSettings, num_features: int):
        super().__init__(settings, num_features)
        # heads[0]: appearance (A), heads[1]: speed (M); linear by default, as the reference's
        # R(2+1)D config (fc_type "linear"): on our miniature budget it also learns A faster than the MLP.
        dims = (num_features, num_features, settings.projection_dim, settings.head_layers)
        self.heads = nn.ModuleList([ProjectionHead(*dims, batch_norm=False) for _ in range(2)])
        self.queue = FeatureQueue(settings.queue_size, settings.projection_dim)
        self.ranking = nn.MarginRankingLoss(margin=settings.margin)

    @property
    def num_clips(self) -> int:
        return 3

    def sampler(self, num_frames: int, stride: int = 1) -> RelativeSpeedSampler:
        return RelativeSpeedSampler(num_frames, tuple(self.settings.speeds), stride)

    def suggest(self, num_frames: int, video_num_frames: int, stride: int) -> str:
        fastest = max(self.settings.speeds)
        frames = (video_num_frames - 1) // (fastest * stride) + 1
        return f"num_frames<={frames} keeps speed {fastest}x at stride {stride}, or drop videos this short"

    def forward(self, backbone, pixel_values, **info):
        clips = self._expect_clips(pixel_values)
        batch = clips.shape[0]
        if self.training:
            self.momentum_step(backbone)
        key_a, key_m = self.encode_keys(torch.cat([clips[:, 1], clips[:, 2]]))
        features = self._features(backbone, clips[:, 0])
        q_a, q_m = self.heads[0](features), self.heads[1](features)
        queue = self.queue()
        temperature = self.settings.temperature
        ce_same, top1 = info_nce(q_a, key_a[:batch], queue, temperature)
        ce_other, _ = info_nce(q_a, key_a[batch:], queue, temperature)
        same_speed = (q_m.float() * key_m[:batch].float()).sum(dim=1) / temperature
        other_speed = (q_m.float() * key_m[batch:].float()).sum(dim=1) / temperature
        ranking = self.ranking(same_speed, other_speed, torch.ones_like(same_speed))
        loss = self.settings.appearance_weight * (ce_same + ce_other) + self.settings.speed_weight * ranking
        if self.training:
            self.queue.enqueue(key_a[batch:])
        return loss, {
            "accuracy": top1,
            "batch_accuracy": batch_instance_accuracy(q_a, key_a[:batch]),
            "speed_accuracy": (same_speed > other_speed).float().mean().detach(),
            "appearance_loss": (ce_same + ce_other).detach(),
            "speed_loss": ranking.detach(),
        }
