"""TDL (temporal discriminative learning, Wang et al. 2020): temporal triplets + a MoCo memory.

Sampling: three clips of one video, in this order: the *anchor*, a *positive* from the same
temporal interval (the same frames; it differs by its own spatial augmentation, which the data
layer draws per clip) and a *negative* from a non-overlapping interval of the same video.

Loss: InfoNCE of the anchor's query against the positive's key (momentum encoder, EMA 0.999),
with the same-video negative as a hard negative and a queue of 500 keys of other videos as
further negatives, temperature 0.07. The positive keys enter the queue. Projection: 2-layer MLP
to 128-d (hidden = the backbone's feature size), L2-normalised.
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
class TDLSettings(PretextSettings):
    queue_size: int = 500
    temperature: float = 0.07
    momentum: float = 0.999
    projection_dim: int = 128

    def check(self) -> None:
        if self.temperature <= 0 or not 0 <= self.momentum <= 1 or self.queue_size < 1:
            raise ValueError(
                f"need temperature > 0, 0 <= momentum <= 1, queue_size >= 1; got {self.temperature}, "
                f"{self.momentum}, {self.queue_size}."
            )


@dataclass
class TripletSampler:
    """Anchor and positive from one interval, the negative from another (non-overlapping) one."""

    num_frames: int
    stride: int = 1

    def min_frames_needed(self) -> int:
        return 2 * clip_span(self.num_frames, self.stride)

    def plan(self, num_video_frames: int, rng: np.random.Generator) -> ClipPlan:
        span = clip_span(self.num_frames, self.stride)
        check_length(num_video_frames, 2 * span, "TDL (two non-overlapping intervals)")
        free = num_video_frames - 2 * span
        first = int(rng.integers(0, free + 1))
        second = span + int(rng.integers(first, free + 1))  # starts after the first interval ends
        anchor, negative = (first, second) if rng.random() < 0.5 else (second, first)
        anchor_clip = strided_indices(anchor, self.num_frames, self.stride)
        return ClipPlan(
            [anchor_clip, anchor_clip.copy(), strided_indices(negative, self.num_frames, self.stride)],
            {},
        )


class TDLTask(MoCoTask, PretextTask):
    name = "tdl"
    settings_class = TDLSettings
    transform_preset = "tdl"
    optimizer_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "sgd",
        "learning_rate": 3e-3,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "reference_batch_size": 8,
    }

    def __init__(self, settings: TDLSettings, num_features: int):
        super().__init__(settings, num_features)
        self.heads = nn.ModuleList([ProjectionHead(num_features, num_features, settings.projection_dim, 2)])
        self.queue = FeatureQueue(settings.queue_size, settings.projection_dim)

    @property
    def num_clips(self) -> int:
        return 3

    def sampler(self, num_frames: int, stride: int = 1) -> TripletSampler:
        return TripletSampler(num_frames, stride)

    def suggest(self, num_frames: int, video_num_frames: int, stride: int) -> str:
        frames = (video_num_frames // 2 - 1) // stride + 1
        return f"num_frames<={frames} gives two non-overlapping intervals at stride {stride}, or drop videos this short"

    def forward(self, backbone, pixel_values, **info):
        clips = self._expect_clips(pixel_values)
        batch = clips.shape[0]
        if self.training:
            self.momentum_step(backbone)
        # One key pass over positives and negatives together.
        (keys,) = self.encode_keys(torch.cat([clips[:, 1], clips[:, 2]]))
        positive, negative = keys[:batch], keys[batch:]
        query = self.heads[0](self._features(backbone, clips[:, 0]))
        loss, top1 = info_nce(
            query, positive, self.queue(), self.settings.temperature, extra_negatives=negative
        )
        if self.training:
            self.queue.enqueue(positive)
        return loss, {
            "accuracy": top1,
            "batch_accuracy": batch_instance_accuracy(query, positive),
            "contrastive_loss": loss.detach(),
        }
