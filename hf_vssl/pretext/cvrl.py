"""CVRL (Qian et al., CVPR 2021): InfoNCE between two clips of the same video, other videos negatives.

Sampling: two clips whose start distance ``t`` follows a linearly decreasing density on
``[0, M]`` (``M`` = the largest distance the video allows), ``p(t) ∝ M - t``, drawn by inverse
CDF ``t = M (1 - sqrt(1 - u))``; the pair is placed uniformly and returned in random order. Each
clip gets its own (temporally consistent) ``cvrl`` augmentation.

Model, as the reference (``official/projects/video_ssl`` of tensorflow/models): backbone ->
MLP projection with 3 hidden layers (2048 wide, BatchNorm + ReLU) and a 128-d output layer,
Keras' default (Glorot-uniform) initialisation -> L2 normalisation; NT-Xent with temperature
0.1, every other clip of the (global) batch a negative. The loss is the *sum* of the two
directions' mean cross-entropies (view 1 against view 2 and back), as the reference's
``contrastive_loss``. Under DDP the second view is shuffled across ranks before the backbone
(shuffle-BN, see ``contrastive``) and both views are gathered with gradients, so negatives come
from all ranks.

Diagnostics (detached, no host sync): ``logit_gap`` (positive vs mean negative logit) and
``concentration`` (norm of the mean embedding: 1 when every clip maps to one point);
:meth:`CVRLTask.check_collapse` warns on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from .base import PretextSettings, PretextTask, scaled_hidden
from .contrastive import (
    _world,
    batch_shuffle,
    batch_unshuffle,
    concentration,
    concentration_warning,
    cross_entropy_and_accuracy,
    gather_with_grad,
    local_slice,
    logit_gap,
    symmetric_info_nce_logits,
)
from .heads import ReferenceInitProjectionHead
from .sampling import ClipPlan, clip_span, random_clip_indices, strided_indices


@dataclass
class CVRLSettings(PretextSettings):
    temperature: float = 0.1
    projection_dim: int = 128
    projection_hidden_size: int | None = None
    """MLP width; None = 2048 scaled by backbone features / 512 (2048 for 512-d features)."""
    projection_hidden_layers: int = 3
    """Hidden layers of the projection MLP (the reference's ``hidden_layer_num``), before its output layer."""

    def check(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}.")
        if self.projection_hidden_layers < 0:
            raise ValueError(f"projection_hidden_layers must be >= 0, got {self.projection_hidden_layers}.")


def decreasing_distance(max_distance: int, rng: np.random.Generator) -> int:
    """A start distance in ``[0, max_distance]`` with density decreasing linearly to 0 at ``max_distance``."""
    if max_distance <= 0:
        return 0
    return int(max_distance * (1.0 - np.sqrt(1.0 - rng.random())))


@dataclass
class TwoClipSampler:
    """Two clips of one video, start distance from a linearly decreasing distribution."""

    num_frames: int
    stride: int = 1

    def min_frames_needed(self) -> int:
        return clip_span(self.num_frames, self.stride)

    def plan(self, num_video_frames: int, rng: np.random.Generator) -> ClipPlan:
        span = clip_span(self.num_frames, self.stride)
        if num_video_frames < span:  # too short for one clip: two looks at the padded clip
            clip = random_clip_indices(num_video_frames, self.num_frames, self.stride, rng)
            return ClipPlan([clip, clip.copy()], {})
        max_distance = num_video_frames - span
        distance = decreasing_distance(max_distance, rng)
        first = int(rng.integers(0, max_distance - distance + 1))
        clips = [
            strided_indices(first, self.num_frames, self.stride),
            strided_indices(first + distance, self.num_frames, self.stride),
        ]
        if rng.random() < 0.5:
            clips.reverse()
        return ClipPlan(clips, {})


class CVRLTask(PretextTask):
    name = "cvrl"
    settings_class = CVRLSettings
    transform_preset = "cvrl"
    optimizer_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "sgd",
        "learning_rate": 0.32,
        "momentum": 0.9,
        "weight_decay": 1e-6,
        "reference_batch_size": 1024,
    }

    def __init__(self, settings: CVRLSettings, num_features: int):
        super().__init__(settings, num_features)
        hidden = scaled_hidden(settings.projection_hidden_size, 2048, num_features, minimum=128)
        self.projector = ReferenceInitProjectionHead(
            num_features,
            hidden,
            settings.projection_dim,
            settings.projection_hidden_layers + 1,
            init="glorot",
        )

    @property
    def num_clips(self) -> int:
        return 2

    def sampler(self, num_frames: int, stride: int = 1) -> TwoClipSampler:
        return TwoClipSampler(num_frames, stride)

    def forward(self, backbone, pixel_values, generator=None, **info):
        clips = self._expect_clips(pixel_values)
        z1 = self.projector(self._features(backbone, clips[:, 0]))
        # Shuffle-BN for the second view (identity in one process).
        view2, unshuffle = batch_shuffle(clips[:, 1], generator)
        z2_all = batch_unshuffle(
            self.projector(self._features(backbone, view2)), unshuffle, differentiable=True
        )
        z1_all = gather_with_grad(z1)
        z2 = local_slice(z2_all)
        _, rank = _world()
        logits, positive = symmetric_info_nce_logits(
            z1, z2, self.settings.temperature, z1_all=z1_all, z2_all=z2_all, offset=rank * z1.shape[0]
        )
        mean_loss, top1 = cross_entropy_and_accuracy(logits, positive)
        # The reference adds the two directions' mean losses: twice the mean over all 2B queries.
        loss = 2.0 * mean_loss
        with torch.no_grad():
            metrics = {
                "accuracy": top1,
                "contrastive_loss": loss.detach(),
                "logit_gap": logit_gap(logits, positive),
                "concentration": concentration(z1),
            }
        return loss, metrics

    def check_collapse(self, logged_metrics: dict[str, float]) -> str | None:
        """Warn when the embeddings all point one way (the contrastive loss then only sees noise)."""
        return concentration_warning("CVRL", logged_metrics)
