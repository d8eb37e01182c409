"""PRP (Yao et al., CVPR 2020): classify the playback rate and reconstruct the skipped frames.

Sampling. A rate ``r`` is drawn from ``rates`` (class = its index). The sampler returns ONE clip
of ``2 * num_frames`` frames covering the window the model sees, read every ``r * stride / 2``
frames: the even positions are the model's input (``num_frames`` frames at ``r * stride``),
all ``2 * num_frames`` are the reconstruction target (the original's recon rate 2: the decoder
restores the frame between every two input frames). When ``r * stride`` is odd (rate 1 at
stride 1) there is no real frame half way, so the plan repeats each frame
(``info["interpolate"] = 1``) and ``forward`` makes the in-between target the mean of its two
neighbours, as the reference implementation does.

Loss. ``recon + 0.1 * CE``: a mean squared error weighted by a motion mask (per-pixel frame
differences of the target, box-smoothed, scaled to [0.8, 2.0] like the reference's Gaussian
weight around the most moving patch) plus cross-entropy of the rate class. The decoder is
:class:`~hf_vssl.pretext.heads.ReconstructionDecoder` on the backbone's last stage.
Complexity levels: 2, 3 or 4 rate classes (subsets of {1, 2, 4, 8}).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import CLASSIFICATION_PRETEXT_OPTIMIZER, PretextSettings, PretextTask, accuracy, scaled_hidden
from .heads import ReconstructionDecoder
from .sampling import ClipPlan, check_length

VALID_RATES = (1, 2, 4, 8)


@dataclass
class PRPSettings(PretextSettings):
    rates: tuple[int, ...] = (1, 2, 4, 8)
    """Playback rates, one class each (2-4 distinct values of {1, 2, 4, 8})."""
    classification_weight: float = 0.1
    """Weight of the rate cross-entropy: loss = recon + weight * CE."""
    decoder_hidden_size: int | None = None
    """Widest decoder stage; None = 64 scaled by backbone features / 512 (min 16)."""
    motion_min: float = 0.8
    motion_max: float = 2.0

    def check(self) -> None:
        rates = tuple(self.rates)
        if not (2 <= len(rates) <= 4) or len(set(rates)) != len(rates) or not set(rates) <= set(VALID_RATES):
            raise ValueError(f"rates must be 2-4 distinct values of {VALID_RATES}, got {rates}.")
        self.rates = tuple(sorted(rates))


@dataclass
class PlaybackRateSampler:
    """One ``2 * num_frames``-frame clip at half the drawn rate's step (see the module docstring)."""

    num_frames: int
    rates: tuple[int, ...]
    stride: int = 1

    def _window(self, rate: int) -> int:
        return self.num_frames * rate * self.stride  # frames the model's clip covers, incl. the last gap

    def min_frames_needed(self) -> int:
        return self._window(max(self.rates))

    def plan(self, num_video_frames: int, rng: np.random.Generator) -> ClipPlan:
        check_length(num_video_frames, self.min_frames_needed(), f"PRP with rates {list(self.rates)}")
        label = int(rng.integers(len(self.rates)))
        step = self.rates[label] * self.stride
        start = int(rng.integers(0, num_video_frames - self._window(self.rates[label]) + 1))
        positions = np.arange(2 * self.num_frames, dtype=np.int64)
        interpolate = step % 2 == 1
        offsets = (positions // 2) * step if interpolate else positions * (step // 2)
        return ClipPlan([start + offsets], {"rate": label, "interpolate": int(interpolate)})


def motion_weights(target: torch.Tensor, low: float, high: float, kernel: int) -> torch.Tensor:
    """Per-pixel loss weights ``(B, T, 1, H, W)`` in ``[low, high]`` from absolute frame differences."""
    diff = (target[:, 1:] - target[:, :-1]).abs().mean(dim=2)  # (B, T-1, H, W)
    diff = torch.cat([diff, diff[:, -1:]], dim=1)
    if kernel > 1:
        diff = F.avg_pool2d(diff, kernel, stride=1, padding=kernel // 2, count_include_pad=False)
    scale = diff.flatten(1).amax(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return (low + (high - low) * diff / scale).unsqueeze(2)


class PRPTask(PretextTask):
    name = "prp"
    settings_class = PRPSettings
    transform_preset = "prp"
    optimizer_defaults = CLASSIFICATION_PRETEXT_OPTIMIZER

    def __init__(self, settings: PRPSettings, num_features: int):
        super().__init__(settings, num_features)
        hidden = scaled_hidden(settings.decoder_hidden_size, 64, num_features, minimum=16)
        self.classifier = nn.Linear(num_features, len(settings.rates))
        # CNN backbones pool their last stage, so its channel count is num_features.
        self.decoder = ReconstructionDecoder(num_features, hidden)

    @property
    def num_classes(self) -> int:
        return len(self.settings.rates)

    def sampler(self, num_frames: int, stride: int = 1) -> PlaybackRateSampler:
        return PlaybackRateSampler(num_frames, tuple(self.settings.rates), stride)

    def suggest(self, num_frames: int, video_num_frames: int, stride: int) -> str:
        fitting = [r for r in self.settings.rates if num_frames * r * stride <= video_num_frames]
        hints = []
        if len(fitting) >= 2:
            hints.append(f"rates={fitting} fit these videos")
        largest = max(self.settings.rates)
        frames = video_num_frames // (largest * stride)
        if frames >= 1:
            hints.append(f"num_frames={frames} keeps rate {largest}")
        return "; ".join(hints + ["or drop videos this short"])

    @staticmethod
    def split_clip(
        pixel_values: torch.Tensor, interpolate: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 2T, C, H, W)`` sampler clip -> model input ``(B, T, ...)`` and target ``(B, 2T, ...)``."""
        inputs = pixel_values[:, 0::2]
        target = pixel_values
        if interpolate is not None:
            # Odd target positions of repeated-frame samples become the mean of their neighbours.
            following = torch.cat([inputs[:, 1:], inputs[:, -1:]], dim=1)
            midpoints = torch.stack([inputs, (inputs + following) / 2], dim=2).flatten(1, 2)
            mask = interpolate.to(pixel_values.device).bool().view(-1, 1, 1, 1, 1)
            target = torch.where(mask, midpoints, pixel_values)
        return inputs, target

    def forward(
        self,
        backbone,
        pixel_values,
        rate: torch.Tensor | None = None,
        interpolate: torch.Tensor | None = None,
        **info,
    ):
        if rate is None:
            raise ValueError("PRP needs the 'rate' label its sampler put in the batch.")
        if pixel_values.ndim != 5 or pixel_values.shape[1] % 2:
            raise ValueError(
                "PRP expects its sampler's clips of 2 * num_frames frames, (batch, 2*frames, channels, height, "
                f"width); got {tuple(pixel_values.shape)}."
            )
        inputs, target = self.split_clip(pixel_values, interpolate)
        output = backbone(inputs, return_dict=True)
        rate = rate.to(pixel_values.device).long()
        logits = self.classifier(output.pooler_output)
        feature_map = output.last_hidden_state
        if feature_map.ndim != 5:  # token outputs: decode from the pooled feature
            feature_map = output.pooler_output[:, :, None, None, None]
        reconstruction = self.decoder(feature_map, tuple(target.shape[i] for i in (1, 3, 4)))
        with torch.no_grad():
            kernel = max(1, target.shape[-1] // 16) | 1
            weights = motion_weights(
                target.float(), self.settings.motion_min, self.settings.motion_max, kernel
            )
        recon_loss = (weights * (reconstruction.float() - target.float()).pow(2)).mean()
        class_loss = F.cross_entropy(logits.float(), rate)
        loss = recon_loss + self.settings.classification_weight * class_loss
        return loss, {
            "accuracy": accuracy(logits, rate),
            "reconstruction_loss": recon_loss.detach(),
            "rate_loss": class_loss.detach(),
        }
