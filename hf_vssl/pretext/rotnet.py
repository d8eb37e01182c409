"""RotNet (3DRotNet, Jing et al. 2018): predict which rotation was applied to the whole clip.

The sampler reads one clip; the rotation is drawn per sample *inside* ``forward`` (on the
device, ``torch.randint``) so the data pipeline stays task-agnostic. Complexity levels of the
study: 2, 3 or 4 rotation classes, in units of 90 degrees ``{0, 180}``, ``{0, 90, 180}``,
``{0, 90, 180, 270}`` (the 2-class level uses 180 degrees, so it also works on non-square frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import CLASSIFICATION_PRETEXT_OPTIMIZER, PretextSettings, PretextTask, accuracy
from .sampling import ClipPlan, clip_span, random_clip_indices

#: Rotation classes (in quarter turns) for each complexity level.
ROTATION_SETS: dict[int, tuple[int, ...]] = {2: (0, 2), 3: (0, 1, 2), 4: (0, 1, 2, 3)}


@dataclass
class RotNetSettings(PretextSettings):
    num_rotations: int = 4
    """Number of rotation classes: 2, 3 or 4 (the study's complexity levels)."""

    def check(self) -> None:
        if self.num_rotations not in ROTATION_SETS:
            raise ValueError(
                f"num_rotations must be one of {sorted(ROTATION_SETS)}, got {self.num_rotations}."
            )


@dataclass
class SingleClipSampler:
    """One clip at a uniformly random position (shorter videos repeat their last frame)."""

    num_frames: int
    stride: int = 1

    def plan(self, num_video_frames: int, rng: np.random.Generator) -> ClipPlan:
        return ClipPlan([random_clip_indices(num_video_frames, self.num_frames, self.stride, rng)], {})

    def min_frames_needed(self) -> int:
        return clip_span(self.num_frames, self.stride)


def rotate_clips(
    pixel_values: torch.Tensor, quarter_turns: torch.Tensor, candidates: tuple[int, ...] = (1, 2, 3)
) -> torch.Tensor:
    """Rotate each clip of ``(B, T, C, H, W)`` by ``quarter_turns[b] * 90`` degrees (counter-clockwise).

    Vectorised without host syncs: one ``torch.rot90`` of the whole batch per angle in
    ``candidates`` (the non-zero turns that may occur), selected per sample with ``torch.where``.
    90/270 degree turns need square frames.
    """
    out = pixel_values
    for turns in candidates:
        if turns % 4 == 0:
            continue
        mask = (quarter_turns == turns).view(-1, *([1] * (pixel_values.ndim - 1)))
        out = torch.where(mask, torch.rot90(pixel_values, turns, dims=(-2, -1)), out)
    return out


class RotNetTask(PretextTask):
    name = "rotnet"
    settings_class = RotNetSettings
    transform_preset = "rotnet"
    optimizer_defaults = CLASSIFICATION_PRETEXT_OPTIMIZER

    def __init__(self, settings: RotNetSettings, num_features: int):
        super().__init__(settings, num_features)
        self.register_buffer(
            "quarter_turns", torch.tensor(ROTATION_SETS[settings.num_rotations]), persistent=False
        )
        self.classifier = nn.Linear(num_features, settings.num_rotations)

    @property
    def num_classes(self) -> int:
        return self.settings.num_rotations

    def sampler(self, num_frames: int, stride: int = 1) -> SingleClipSampler:
        return SingleClipSampler(num_frames, stride)

    def rotate(self, pixel_values: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        """Apply rotation *classes* ``rotation`` ``(B,)`` to ``(B, T, C, H, W)`` clips."""
        if pixel_values.shape[-1] != pixel_values.shape[-2] and self.settings.num_rotations > 2:
            raise ValueError(
                f"RotNet with {self.settings.num_rotations} rotations turns clips by 90 degrees, which needs square "
                f"frames; got {tuple(pixel_values.shape[-2:])}. Crop to a square or use num_rotations=2."
            )
        return rotate_clips(
            pixel_values, self.quarter_turns[rotation], ROTATION_SETS[self.settings.num_rotations]
        )

    def forward(self, backbone, pixel_values, rotation: torch.Tensor | None = None, **info):
        """``rotation`` (class per sample) may be given for reproducibility; by default it is drawn here."""
        if rotation is None:
            rotation = torch.randint(self.num_classes, (pixel_values.shape[0],), device=pixel_values.device)
        rotation = rotation.to(pixel_values.device).long()
        logits = self.classifier(self._features(backbone, self.rotate(pixel_values, rotation)))
        loss = F.cross_entropy(logits.float(), rotation)
        return loss, {"accuracy": accuracy(logits, rotation), "rotation_loss": loss.detach()}
