"""TDL (temporal discriminative learning, Wang et al. 2020): temporal triplets + a MoCo memory.

Sampling, as the reference's data set (``get_moco_items``): three clips of one video, in this
order: the *anchor*, a *positive* from the same temporal interval (the same frames; it differs
by its own spatial augmentation, which the data layer draws per clip) and a *negative* from
another interval of the same video whose start is at least ``negative_min_offset`` frames (2,
the reference's ``thresh``) away from the anchor's, so it may overlap the anchor.

Model and loss, as the reference's ``train_moco``:

- the anchor gets **intra-video mixup** first: each anchor clip is blended with one of its own
  frames (a random frame per clip), ``(1 - p) * clip + p * frame``, ``p ~ U(0, mixup_alpha)``
  drawn once per batch (the reference's ``SpatialMixup(0.1, version=2)``);
- anchor -> online backbone -> head (query); positive -> momentum encoder (EMA 0.999, no
  gradient, shuffle-BN) -> key; negative -> the **online** backbone and head, *with* gradient
  (a separate forward pass, as in the reference), so the loss also pushes the hard negative's
  own embedding away;
- head: ``Linear(D -> 128)`` + L2 normalisation (the reference's ``id_head``), PyTorch's default
  Linear init;
- InfoNCE of the query against its key, with the same-video negative as a hard negative and a
  queue of 500 keys of other videos (the study's size) as further negatives, temperature 0.07;
  the positive keys enter the queue.

Diagnostics (detached, no host sync): ``logit_gap`` (positive vs mean negative logit),
``hard_negative_gap`` (positive vs the same-video negative) and ``concentration`` (norm of the
mean query: 1 when every clip maps to one point); :meth:`TDLTask.check_collapse` warns on them.
"""

from __future__ import annotations

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
    concentration,
    concentration_warning,
    info_nce_logits,
    logit_gap,
    positive_first_cross_entropy,
)
from .heads import ReferenceInitProjectionHead
from .sampling import ClipPlan, check_length, clip_span, strided_indices


@dataclass
class TDLSettings(PretextSettings):
    queue_size: int = 500
    temperature: float = 0.07
    momentum: float = 0.999
    projection_dim: int = 128
    negative_min_offset: int = 2
    """Fewest video frames between the anchor's and the negative's starts (the reference's 2);
    the clip span (``(num_frames - 1) * stride + 1``) or more makes the two intervals disjoint."""
    mixup_alpha: float = 0.1
    """Largest weight of the anchor's intra-video mixup (0 disables it)."""

    def check(self) -> None:
        if self.temperature <= 0 or not 0 <= self.momentum <= 1 or self.queue_size < 1:
            raise ValueError(
                f"need temperature > 0, 0 <= momentum <= 1, queue_size >= 1; got {self.temperature}, "
                f"{self.momentum}, {self.queue_size}."
            )
        if self.negative_min_offset < 1:
            raise ValueError(f"negative_min_offset must be >= 1, got {self.negative_min_offset}.")
        if not 0 <= self.mixup_alpha <= 1:
            raise ValueError(f"mixup_alpha must be in [0, 1], got {self.mixup_alpha}.")


@dataclass
class TripletSampler:
    """Anchor and positive from one interval, the negative starting ``min_offset``+ frames away."""

    num_frames: int
    stride: int = 1
    min_offset: int = 2

    def min_frames_needed(self) -> int:
        return clip_span(self.num_frames, self.stride) + self.min_offset

    def plan(self, num_video_frames: int, rng: np.random.Generator) -> ClipPlan:
        check_length(
            num_video_frames,
            self.min_frames_needed(),
            f"TDL (negative {self.min_offset}+ frames from the anchor)",
        )
        starts = num_video_frames - clip_span(self.num_frames, self.stride) + 1  # valid starts 0..starts-1
        # The anchor: uniform over the starts that leave room for a negative; the negative:
        # uniform over the starts at least min_offset away, [0, anchor - m] and [anchor + m, starts).
        m = self.min_offset
        anchors = np.flatnonzero((np.arange(starts) >= m) | (np.arange(starts) <= starts - 1 - m))
        anchor = int(anchors[rng.integers(len(anchors))])
        before, after = max(anchor - m + 1, 0), max(starts - anchor - m, 0)
        pick = int(rng.integers(0, before + after))
        negative = pick if pick < before else anchor + self.min_offset + (pick - before)
        anchor_clip = strided_indices(anchor, self.num_frames, self.stride)
        return ClipPlan(
            [anchor_clip, anchor_clip.copy(), strided_indices(negative, self.num_frames, self.stride)], {}
        )


def intra_video_mixup(
    clips: torch.Tensor, alpha: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Blend each ``(B, T, C, H, W)`` clip with one of its own frames: ``(1 - p) x + p x[t_b]``.

    ``p ~ U(0, alpha)`` once for the batch, ``t_b`` uniform per clip (TDL's intra-video mixup:
    a static frame of the same video, so the clip keeps its appearance but its motion is
    dampened). Both draws use ``generator`` when given.
    """
    if alpha <= 0:
        return clips
    batch, frames = clips.shape[:2]
    weight = torch.rand((), device=clips.device, generator=generator) * alpha
    frame = torch.randint(frames, (batch,), device=clips.device, generator=generator)
    still = clips[torch.arange(batch, device=clips.device), frame].unsqueeze(1)  # (B, 1, C, H, W)
    return torch.lerp(clips, still.expand_as(clips), weight.to(clips.dtype))


class TDLTask(MoCoTask, PretextTask):
    name = "tdl"
    settings_class = TDLSettings
    transform_preset = "tdl"
    optimizer_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "sgd",
        "learning_rate": 3e-3,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "reference_batch_size": 8,
    }

    def __init__(self, settings: TDLSettings, num_features: int):
        super().__init__(settings, num_features)
        head = ReferenceInitProjectionHead(
            num_features, num_features, settings.projection_dim, 1, init="pytorch"
        )
        self.heads = nn.ModuleList([head])
        self.queue = FeatureQueue(settings.queue_size, settings.projection_dim)

    @property
    def num_clips(self) -> int:
        return 3

    def sampler(self, num_frames: int, stride: int = 1) -> TripletSampler:
        return TripletSampler(num_frames, stride, self.settings.negative_min_offset)

    def suggest(self, num_frames: int, video_num_frames: int, stride: int) -> str:
        frames = (video_num_frames - self.settings.negative_min_offset - 1) // stride + 1
        return (
            f"num_frames<={frames} leaves room for a negative {self.settings.negative_min_offset} frames from "
            f"the anchor at stride {stride}, or drop videos this short"
        )

    def forward(self, backbone, pixel_values, generator=None, **info):
        clips = self._expect_clips(pixel_values)
        if self.training:
            self.momentum_step(backbone)
        (positive,) = self.encode_keys(clips[:, 1], generator)
        anchor = intra_video_mixup(clips[:, 0], self.settings.mixup_alpha, generator)
        query = self.heads[0](self._features(backbone, anchor))
        negative = self.heads[0](self._features(backbone, clips[:, 2]))  # online, with gradient
        logits = info_nce_logits(
            query, positive, self.queue(), self.settings.temperature, extra_negatives=negative
        )
        loss, top1 = positive_first_cross_entropy(logits)
        if self.training:
            self.queue.enqueue(positive)
        with torch.no_grad():
            metrics = {
                "accuracy": top1,
                "batch_accuracy": batch_instance_accuracy(query, positive),
                "contrastive_loss": loss.detach(),
                "logit_gap": logit_gap(logits),
                "hard_negative_gap": (logits[:, 0] - logits[:, 1]).mean(),
                "concentration": concentration(query),
            }
        return loss, metrics

    def check_collapse(self, logged_metrics: dict[str, float]) -> str | None:
        """Warn when the embeddings all point one way (the contrastive loss then only sees noise)."""
        return concentration_warning("TDL", logged_metrics)
