"""RotNet (3DRotNet, Jing et al. 2018): predict which rotation was applied to the whole clip.

The sampler reads one clip; the rotation is drawn per sample *inside* ``forward`` (on the
device, ``torch.randint`` from the step's ``generator``) so the data pipeline stays
task-agnostic. With ``all_rotations=True`` every clip goes through the network in each of its
rotations instead, as the original batches them (a batch of B videos is ``B * K`` clips).
Complexity levels of the study: 2, 3 or 4 rotation classes, in units of 90 degrees
``{0, 180}``, ``{0, 90, 180}``, ``{0, 90, 180, 270}`` (the 2-class level uses 180 degrees, so it
also works on non-square frames). The head is the original's ``fc1`` (features -> 64) + ReLU +
``fc2`` at PyTorch's default init; its optimiser is the original's (SGD 0.1 at 32 videos,
momentum 0.9, weight decay 1e-3). ``docs/pretext_fidelity.md`` lists every setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .base import PretextSettings, PretextTask, accuracy
from .heads import ClassifierHead
from .sampling import ClipPlan, clip_span, random_clip_indices

#: Rotation classes (in quarter turns) for each complexity level.
ROTATION_SETS: dict[int, tuple[int, ...]] = {2: (0, 2), 3: (0, 1, 2), 4: (0, 1, 2, 3)}

#: 3DRotNet's optimiser (``train.py``): SGD, momentum 0.9, weight decay 1e-3, learning rate 0.1
#: (set at step 0 by its step schedule) at 32 videos per batch.
ROTNET_OPTIMIZER: dict[str, Any] = {
    "optimizer": "sgd",
    "learning_rate": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-3,
    "reference_batch_size": 32,
}


@dataclass
class RotNetSettings(PretextSettings):
    num_rotations: int = 4
    """Number of rotation classes: 2, 3 or 4 (the study's complexity levels)."""
    all_rotations: bool = False
    """Put every rotation of each clip in the batch (the original's batching; K times the clips
    per step) instead of one random rotation per clip."""
    head_hidden_size: int = 64
    """Width of the original's hidden layer (fc1); 0 = one linear layer."""

    def check(self) -> None:
        if self.num_rotations not in ROTATION_SETS:
            raise ValueError(
                f"num_rotations must be one of {sorted(ROTATION_SETS)}, got {self.num_rotations}."
            )
        if self.head_hidden_size < 0:
            raise ValueError(f"head_hidden_size must be >= 0, got {self.head_hidden_size}.")


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
    pixel_values: torch.Tensor, rotation: torch.Tensor, quarter_turns: tuple[int, ...] = (0, 1, 2, 3)
) -> torch.Tensor:
    """Rotate each clip of ``(B, T, C, H, W)`` by ``quarter_turns[rotation[b]] * 90`` degrees
    (counter-clockwise, like the original's ``np.rot90`` over height and width).

    ``rotation`` holds class indices into ``quarter_turns``. Vectorised without host syncs: one
    ``torch.rot90`` of the whole batch per non-zero turn, selected per sample with
    ``torch.where``; the turns are Python constants, so nothing has to survive a
    ``from_pretrained`` on the meta device. 90/270 degree turns need square frames.
    """
    out = pixel_values
    for label, turns in enumerate(quarter_turns):
        if turns % 4 == 0:
            continue
        mask = (rotation == label).view(-1, *([1] * (pixel_values.ndim - 1)))
        out = torch.where(mask, torch.rot90(pixel_values, turns, dims=(-2, -1)), out)
    return out


class RotNetTask(PretextTask):
    name = "rotnet"
    settings_class = RotNetSettings
    transform_preset = "rotnet"
    optimizer_defaults = ROTNET_OPTIMIZER

    def __init__(self, settings: RotNetSettings, num_features: int):
        super().__init__(settings, num_features)
        self.classifier = ClassifierHead(num_features, settings.num_rotations, settings.head_hidden_size)

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
        return rotate_clips(pixel_values, rotation, ROTATION_SETS[self.settings.num_rotations])

    def forward(
        self,
        backbone,
        pixel_values,
        rotation: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **info,
    ):
        """``rotation`` (class per sample) may be given; by default it is drawn here from ``generator``.

        With ``all_rotations`` each clip is repeated once per class (labels ``0..K-1``) instead.
        """
        device = pixel_values.device
        if self.settings.all_rotations:
            pixel_values = pixel_values.repeat_interleave(self.num_classes, dim=0)
            rotation = torch.arange(self.num_classes, device=device).repeat(
                pixel_values.shape[0] // self.num_classes
            )
        elif rotation is None:
            rotation = torch.randint(
                self.num_classes, (pixel_values.shape[0],), device=device, generator=generator
            )
        rotation = rotation.to(device).long()
        logits = self.classifier(self._features(backbone, self.rotate(pixel_values, rotation)))
        loss = F.cross_entropy(logits.float(), rotation)
        return loss, {"accuracy": accuracy(logits, rotation), "rotation_loss": loss.detach()}
