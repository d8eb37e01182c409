"""The interface every pretext task implements.

A pretext task is an ``nn.Module`` that owns what the task adds to the backbone (heads,
momentum encoders, feature queues) and a small settings dataclass whose defaults are the
study's (docs/study_settings.md#pretext-tasks). It answers four questions:

- *what to read*: :meth:`PretextTask.sampler` returns a ``ClipSampler`` for the data layer, and
  :attr:`PretextTask.transform_preset` names the per-clip augmentation;
- *can this work*: :meth:`PretextTask.min_video_frames` / :meth:`PretextTask.validate` refuse an
  impossible setting at start with a message that says what would work;
- *what to build*: :meth:`PretextTask.attach_backbone` is called once the query backbone is
  initialised (contrastive tasks copy it into a momentum encoder there);
- *what to optimise*: :meth:`PretextTask.forward` ``(backbone, pixel_values, generator=None,
  **info) -> (loss, metrics)``, where ``metrics`` are detached tensors (no host sync on the hot
  path) and always include ``"accuracy"``, the task's own pretext accuracy. Every random draw
  in ``forward`` uses ``generator`` (the training loop seeds one per step, so a resumed run
  draws what an uninterrupted one draws); :meth:`PretextTask.lr_scales` names submodules that
  train at a multiple of the base learning rate.

``backbone`` is the query ``VSSLModel`` (any module mapping ``(B, T, C, H, W)`` to an output with
``pooler_output (B, D)`` and ``last_hidden_state``); contrastive tasks also read its parameters
for the momentum update.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from .sampling import ClipSampler


@dataclasses.dataclass
class PretextSettings:
    """Base of every task's settings; subclasses add fields with the study's defaults."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_overrides(cls, task_name: str, overrides: dict[str, Any] | None) -> PretextSettings:
        """Defaults updated by ``overrides``; an unknown key raises ``ValueError`` listing the valid ones."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"Unknown pretext_config key(s) {unknown} for task {task_name!r}. "
                f"Valid keys: {', '.join(cls.field_names())}."
            )
        # JSON round trips turn tuples into lists; settings keep tuples so they stay hashable.
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        settings = cls(**overrides)
        settings.check()
        return settings

    def check(self) -> None:
        """Validate field values; subclasses raise ``ValueError`` with a clear message."""

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def scaled_hidden(hidden: int | None, reference: int, num_features: int, minimum: int = 32) -> int:
    """Head width: ``hidden`` if given, else ``reference`` scaled by ``num_features / 512``.

    The study's heads are sized for 512-d features (``reference`` is that size). Tiny test
    backbones (width multiplier 1/8 -> 64-d features) get proportionally narrower heads, never
    below ``minimum`` and never wider than ``reference``.
    """
    if hidden is not None:
        return int(hidden)
    return int(min(reference, max(minimum, round(reference * num_features / 512))))


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy as a detached float32 scalar tensor (no host sync)."""
    return (logits.detach().argmax(dim=-1) == target).float().mean()


class PretextTask(nn.Module):
    """Base class of the six pretext tasks (see the module docstring for the contract)."""

    name: ClassVar[str]
    settings_class: ClassVar[type[PretextSettings]]
    transform_preset: ClassVar[str]
    optimizer_defaults: ClassVar[dict[str, Any]] = {}
    """The original work's optimiser (docs/study_settings.md#optimisers): ``optimizer``, ``learning_rate`` at
    ``reference_batch_size`` (scaled linearly to the run's total batch), ``momentum``, ``weight_decay``."""

    def __init__(self, settings: PretextSettings, num_features: int):
        super().__init__()
        self.settings = settings
        self.num_features = num_features

    @classmethod
    def fit_to_dataset(cls, pretext_config: dict[str, Any] | None, num_videos: int) -> dict[str, Any] | None:
        """``pretext_config`` (the user's overrides) fitted to a training set of ``num_videos`` videos.

        The hook through which a task states its dataset-dependent settings (e.g. a feature queue
        sized to the corpus); the default changes nothing. Explicit overrides are never changed.
        """
        return pretext_config

    # -- what to read --------------------------------------------------------------------
    @property
    def num_clips(self) -> int:
        """Clips per sample in ``pixel_values``: 1 gives ``(B, T, C, H, W)``, N > 1 ``(B, N, T, C, H, W)``."""
        return 1

    def sampler(self, num_frames: int, stride: int = 1) -> ClipSampler:
        """The clip sampler for clips of ``num_frames`` model frames at base ``stride``."""
        raise NotImplementedError

    def min_video_frames(self, num_frames: int, stride: int = 1) -> int:
        """Fewest video frames :meth:`sampler` needs for one sample."""
        return self.sampler(num_frames, stride).min_frames_needed()

    def suggest(self, num_frames: int, video_num_frames: int, stride: int) -> str:
        """What would work instead (task-specific hint appended to :meth:`validate`'s error)."""
        return (
            f"use fewer frames per clip (num_frames={num_frames}) or a smaller stride (stride={stride}), "
            "or drop videos this short"
        )

    def validate(self, num_frames: int, video_num_frames: int, stride: int = 1) -> None:
        """Refuse clips of ``num_frames`` at ``stride`` on videos of ``video_num_frames`` frames.

        Raises ``ValueError`` naming the task, what it needs and what would work.
        """
        needed = self.min_video_frames(num_frames, stride)
        if video_num_frames < needed:
            raise ValueError(
                f"Pretext task {self.name!r} with {self.settings.to_dict()} needs videos of at least "
                f"{needed} frames for {num_frames}-frame clips at stride {stride}, but the videos have "
                f"{video_num_frames}. To make it work: {self.suggest(num_frames, video_num_frames, stride)}."
            )

    # -- what to build -------------------------------------------------------------------
    def attach_backbone(self, backbone: nn.Module) -> None:
        """Called once the query backbone is initialised; non-contrastive tasks need nothing."""

    # -- what to optimise ----------------------------------------------------------------
    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multipliers of this task's submodules, by attribute name (e.g. PRP's
        ``{"classifier": 10.0}``); the optimiser builder gives their parameters ``lr * scale``."""
        return {}

    def forward(
        self,
        backbone: nn.Module,
        pixel_values: torch.Tensor,
        generator: torch.Generator | None = None,
        **info: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, metrics)``; every random draw uses ``generator`` (on the batch's device) when
        given, else torch's global RNG."""
        raise NotImplementedError

    def check_collapse(self, logged_metrics: dict[str, float]) -> str | None:
        """A warning when the logged (host-side, averaged) metrics show the objective collapsing.

        Called by the training loop at its logging boundaries with the values it is about to
        log, so the check costs no extra host sync. ``None`` means nothing to report; tasks
        with a collapse diagnostic override this.
        """
        return None

    # -- helpers -------------------------------------------------------------------------
    def _expect_clips(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Check the ``(B, N, T, C, H, W)`` layout of a multi-clip task."""
        if pixel_values.ndim != 6 or pixel_values.shape[1] != self.num_clips:
            raise ValueError(
                f"Pretext task {self.name!r} expects pixel_values of shape (batch, {self.num_clips}, frames, "
                f"channels, height, width) from its sampler, got {tuple(pixel_values.shape)}."
            )
        return pixel_values

    @staticmethod
    def _features(backbone: nn.Module, clips: torch.Tensor) -> torch.Tensor:
        """Pooled features of ``(B, T, C, H, W)`` clips."""
        return backbone(clips, return_dict=True).pooler_output
