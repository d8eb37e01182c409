"""VCOP (Xu et al., CVPR 2019): predict the order of N shuffled clips of one video.

The sampler takes N clips of ``num_frames`` frames separated by ``interval`` video frames,
shuffles them with a permutation drawn from the task's generator and returns them in the
shuffled order, with ``info={"permutation": k}``: ``k`` indexes
``itertools.permutations(range(N))`` and ``permutations[k][i]`` is the temporal position of the
i-th clip shown. A pairwise MLP head classifies the ``N!`` orders. As in the original, the
backbone sees the clips one tuple position at a time (``N`` passes of ``B`` clips, so BatchNorm
normalises each position's clips together); ``joint_batch=True`` runs all ``B * N`` clips in one
pass instead. The augmentation is drawn once per tuple (the same flip, rotation and colour
jitter for its clips, so the cut between consecutive clips stays continuous). Complexity
levels: N = 3, 4, 5 (6, 24, 120 classes). ``docs/pretext_fidelity.md`` lists every setting.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .base import PretextSettings, PretextTask, accuracy, scaled_hidden
from .heads import PairwiseOrderHead
from .sampling import ClipPlan, check_length, clip_span, strided_indices

#: The original's optimiser (``train_vcop.py``): SGD 1e-3 at batch 8, momentum 0.9, weight decay 5e-4.
VCOP_OPTIMIZER: dict[str, Any] = {
    "optimizer": "sgd",
    "learning_rate": 1e-3,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "reference_batch_size": 8,
}


@dataclass
class VCOPSettings(PretextSettings):
    num_clips: int = 3
    """Clips per tuple N (3, 4 or 5; N! classes)."""
    interval: int = 8
    """Video frames between the end of one clip and the start of the next."""
    hidden_size: int | None = None
    """Pair MLP width; None = 512 scaled by backbone features / 512 (512 for 512-d features)."""
    dropout: float = 0.5
    joint_batch: bool = False
    """Run all ``B * N`` clips through the backbone in one pass (one BatchNorm batch) instead of
    the original's one pass per tuple position."""

    def check(self) -> None:
        if not 2 <= self.num_clips <= 6:
            raise ValueError(
                f"num_clips must be between 2 and 6 (the study uses 3, 4, 5), got {self.num_clips}."
            )
        if self.interval < 0:
            raise ValueError(f"interval must be >= 0, got {self.interval}.")


@dataclass
class ClipOrderSampler:
    """N equally spaced clips, returned in a random order with the permutation's class index."""

    num_frames: int
    num_clips: int
    interval: int
    stride: int = 1

    @cached_property
    def permutations(self) -> list[tuple[int, ...]]:
        return list(itertools.permutations(range(self.num_clips)))

    def min_frames_needed(self) -> int:
        return self.num_clips * clip_span(self.num_frames, self.stride) + (self.num_clips - 1) * self.interval

    def plan(self, num_video_frames: int, rng: np.random.Generator) -> ClipPlan:
        needed = self.min_frames_needed()
        check_length(num_video_frames, needed, f"VCOP with {self.num_clips} clips")
        start = int(rng.integers(0, num_video_frames - needed + 1))
        step = clip_span(self.num_frames, self.stride) + self.interval
        ordered = [
            strided_indices(start + i * step, self.num_frames, self.stride) for i in range(self.num_clips)
        ]
        label = int(rng.integers(len(self.permutations)))
        order = self.permutations[label]
        return ClipPlan([ordered[position] for position in order], {"permutation": label})


class VCOPTask(PretextTask):
    name = "vcop"
    settings_class = VCOPSettings
    transform_preset = "vcop"
    optimizer_defaults = VCOP_OPTIMIZER

    def __init__(self, settings: VCOPSettings, num_features: int):
        super().__init__(settings, num_features)
        hidden = scaled_hidden(settings.hidden_size, 512, num_features)
        self.head = PairwiseOrderHead(
            num_features, settings.num_clips, self.num_classes, hidden, settings.dropout
        )

    @property
    def num_clips(self) -> int:
        return self.settings.num_clips

    @property
    def num_classes(self) -> int:
        return math.factorial(self.settings.num_clips)

    def sampler(self, num_frames: int, stride: int = 1) -> ClipOrderSampler:
        return ClipOrderSampler(num_frames, self.settings.num_clips, self.settings.interval, stride)

    def suggest(self, num_frames: int, video_num_frames: int, stride: int) -> str:
        span = clip_span(num_frames, stride)
        max_clips = max(0, (video_num_frames + self.settings.interval) // (span + self.settings.interval))
        hints = []
        if 3 <= max_clips < self.settings.num_clips:
            hints.append(f"num_clips={max_clips} fits these videos")
        hints.append(f"a smaller interval (now {self.settings.interval})")
        hints.append(f"fewer frames per clip (now {num_frames}) or stride (now {stride})")
        return "; ".join(hints) + ", or drop videos this short"

    def forward(
        self,
        backbone,
        pixel_values,
        permutation: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **info,
    ):
        """Order loss of a batch of tuples; the head's dropout mask is drawn from ``generator``."""
        if permutation is None:
            raise ValueError("VCOP needs the 'permutation' label its sampler put in the batch.")
        batch, clips = self._expect_clips(pixel_values).shape[:2]
        if self.settings.joint_batch:
            features = self._features(backbone, pixel_values.flatten(0, 1)).view(batch, clips, -1)
        else:  # one backbone pass per tuple position (N <= 6 passes), as the original
            features = torch.stack(
                [self._features(backbone, pixel_values[:, i]) for i in range(clips)], dim=1
            )
        logits = self.head(features, generator=generator)
        target = permutation.to(logits.device).long()
        loss = F.cross_entropy(logits.float(), target)
        return loss, {"accuracy": accuracy(logits, target), "order_loss": loss.detach()}
