"""PRP (Yao et al., CVPR 2020): classify the playback rate and reconstruct the skipped frames.

Sampling. A rate ``r`` is drawn from ``rates`` (class = its index). The sampler returns ONE clip
of ``2 * num_frames`` frames covering the window the model sees, read every ``r * stride / 2``
frames: the even positions are the model's input (``num_frames`` frames at ``r * stride``),
all ``2 * num_frames`` are the reconstruction target (the original's recon rate 2: the decoder
restores the frame between every two input frames). When ``r * stride`` is odd (rate 1 at
stride 1) there is no real frame half way, so the plan repeats each frame
(``info["interpolate"] = 1``) and ``forward`` makes the in-between target the mean of its two
neighbours, as the reference implementation does.

Network (the original's ``SSCN_OneClip``). Two separate conv branches (3x3x3 conv, BatchNorm,
ReLU) on the backbone's last stage: one is pooled into the rate classifier, the other feeds
:class:`~hf_vssl.pretext.heads.PRPDecoder` (four x2 transposed-conv upsamplings to the
``2 * num_frames`` target frames).

Loss. ``recon + 0.1 * CE``. The reconstruction target is the clip in [0, 1] (the batch's
normalisation undone), compared by a squared error weighted by the original's motion mask
(:func:`chunk_motion_weights`), averaged per sample over the target frames that are real
frames: the in-between frames of rate 1, which are averages, are left out of the loss as in
the original (they only exist to give every rate the same output length). The rate classifier
trains at 10x the base learning rate (:meth:`PRPTask.lr_scales`).

Complexity levels: 2, 3 or 4 rate classes (subsets of {1, 2, 4, 8}). Every departure from the
original is a named setting of :class:`PRPSettings`; ``docs/pretext_fidelity.md`` lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hf_vssl.models.processing_vssl import VIDEO_MEAN, VIDEO_STD

from .base import PretextSettings, PretextTask, accuracy, scaled_hidden
from .heads import ClassifierHead, ConvBlock, PRPDecoder, ReconstructionDecoder
from .sampling import ClipPlan, check_length

VALID_RATES = (1, 2, 4, 8)
DECODERS = ("original", "light")
MOTION_MASKS = ("original", "per_frame")
AUGMENTATIONS = ("study", "original")

#: The original's optimiser (``train_predict.py``): SGD 0.01 at batch 8, momentum 0.9, weight
#: decay 5e-4; the rate classifier at 10x (``PRPSettings.classifier_lr_scale``).
PRP_OPTIMIZER: dict[str, Any] = {
    "optimizer": "sgd",
    "learning_rate": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "reference_batch_size": 8,
}


@dataclass
class PRPSettings(PretextSettings):
    rates: tuple[int, ...] = (1, 2, 4, 8)
    """Playback rates, one class each (2-4 distinct values of {1, 2, 4, 8})."""
    classification_weight: float = 0.1
    """Weight of the rate cross-entropy: loss = recon + weight * CE."""
    classifier_lr_scale: float = 10.0
    """Learning-rate multiplier of the rate classifier (the original's ``fc8`` trains at 10x)."""
    separate_branches: bool = True
    """The original's two conv branches (classification, reconstruction) on the last stage;
    False classifies the backbone's pooled feature and decodes its last stage directly."""
    decoder: str = "original"
    """``original``: the transposed-conv decoder of the original (widths 512/256/128/64 scaled by
    features / 512); ``light``: a cheaper trilinear-upsampling decoder for CPU budgets."""
    decoder_hidden_size: int | None = None
    """Widest stage of the ``light`` decoder; None = 64 scaled by backbone features / 512 (min 16)."""
    motion_mask: str = "original"
    """``original``: per 16-frame chunk, squared differences of 4 frames pooled over quarter-frame
    windows, min-max scaled per channel; ``per_frame``: box-smoothed per-frame differences."""
    motion_min: float = 0.8
    motion_max: float = 2.0
    reconstruct_averaged_frames: bool = False
    """Also fit the averaged in-between frames of rate 1 (the original leaves them out)."""
    normalized_targets: bool = False
    """Reconstruct the normalised pixels instead of the original's [0, 1] frames."""
    augmentation: str = "study"
    """``study``: the study's augmentation (resize, random crop, flip, rotation, colour jitter);
    ``original``: the original's centre crop without random augmentation (the ``eval`` preset)."""

    def check(self) -> None:
        rates = tuple(self.rates)
        if not (2 <= len(rates) <= 4) or len(set(rates)) != len(rates) or not set(rates) <= set(VALID_RATES):
            raise ValueError(f"rates must be 2-4 distinct values of {VALID_RATES}, got {rates}.")
        self.rates = tuple(sorted(rates))
        for key, valid in (
            ("decoder", DECODERS),
            ("motion_mask", MOTION_MASKS),
            ("augmentation", AUGMENTATIONS),
        ):
            if getattr(self, key) not in valid:
                raise ValueError(f"{key} must be one of {list(valid)}, got {getattr(self, key)!r}.")
        if self.classifier_lr_scale <= 0:
            raise ValueError(f"classifier_lr_scale must be > 0, got {self.classifier_lr_scale}.")


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
    """Per-pixel loss weights ``(B, T, 1, H, W)`` in ``[low, high]`` from absolute frame differences.

    The ``per_frame`` motion mask (a named option; the default is :func:`chunk_motion_weights`).
    """
    diff = (target[:, 1:] - target[:, :-1]).abs().mean(dim=2)  # (B, T-1, H, W)
    diff = torch.cat([diff, diff[:, -1:]], dim=1)
    if kernel > 1:
        diff = F.avg_pool2d(diff, kernel, stride=1, padding=kernel // 2, count_include_pad=False)
    scale = diff.flatten(1).amax(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return (low + (high - low) * diff / scale).unsqueeze(2)


def chunk_motion_weights(
    target: torch.Tensor, label: torch.Tensor, rates: tuple[int, ...], low: float, high: float
) -> torch.Tensor:
    """The original's motion mask (its ``getPatchLossMask_DPAU``): loss weights ``(B, 2T, C, H, W)``.

    ``target`` ``(B, 2T, C, H, W)`` in [0, 1], ``label`` the rate class per sample. A clip at
    rate ``r`` covers ``r`` chunks of ``T`` video frames (the original's 16-frame chunks), each
    ``2T / r`` target frames long. Per chunk: the squared differences between 4 evenly spaced
    frames (the original's frames 0, 5, 10, 15), averaged over the 3 differences and windows of
    a quarter of the frame at a sixteenth's stride (28 and 7 at 112 px), scaled per channel to
    ``[low, high]`` (all ones where no channel moves) and resized trilinearly over the chunk.

    The pooled map has one time step, so the trilinear resize is constant over the chunk's
    frames and bilinear in space: the per-rate maps are selected per sample (no host sync) at
    the pooled resolution and resized once, instead of resizing every rate's map to the full
    target (what the original computes per sample, at a fraction of the memory traffic).
    """
    batch, length, channels, height, width = target.shape
    frames = length // 2
    kernel = (3, max(1, height // 4), max(1, width // 4))
    stride = (3, max(1, height // 16), max(1, width // 16))
    selected = None
    for index, rate in enumerate(rates):
        chunks = math.gcd(rate, length)
        chunk_length = length // chunks
        # Video-frame offsets 0, 5, 10, 15 of a 16-frame chunk, as target-frame positions.
        picks = [int(j * chunk_length // frames) for j in np.round(np.linspace(0, frames - 1, 4))]
        x = target.reshape(batch * chunks, chunk_length, channels, height, width)[:, picks]
        diff = (x[:, 1:] - x[:, :-1]).pow(2).transpose(1, 2)  # (B*chunks, C, 3, H, W)
        pooled = F.avg_pool3d(diff, kernel_size=kernel, stride=stride)  # (B*chunks, C, 1, h, w)
        flat = pooled.flatten(2)
        lowest, highest = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
        scaled = low + (high - low) * (flat - lowest + 1e-6) / (highest - lowest + 1e-6)
        still = (highest - lowest <= 0).all(dim=1, keepdim=True)
        scaled = torch.where(still, torch.ones_like(scaled), scaled)
        small = pooled.shape[-2:]
        # Each chunk's map for each of its target frames: (B, 2T, C, h, w).
        per_frame = scaled.view(batch, chunks, 1, channels, *small).expand(-1, -1, chunk_length, -1, -1, -1)
        per_frame = per_frame.reshape(batch, length, channels, *small)
        if selected is None:
            selected = torch.ones_like(per_frame)
        selected = torch.where((label == index).view(-1, 1, 1, 1, 1), per_frame, selected)
    mask = F.interpolate(selected.flatten(0, 1), size=(height, width), mode="bilinear", align_corners=False)
    return mask.view(batch, length, channels, height, width)


class PRPTask(PretextTask):
    name = "prp"
    settings_class = PRPSettings
    optimizer_defaults = PRP_OPTIMIZER

    def __init__(self, settings: PRPSettings, num_features: int):
        super().__init__(settings, num_features)
        self.classifier = ClassifierHead(num_features, len(settings.rates))
        if settings.separate_branches:
            self.classification_branch = ConvBlock(num_features, num_features)
            self.reconstruction_branch = ConvBlock(num_features, num_features)
        # CNN backbones pool their last stage, so its channel count is num_features.
        if settings.decoder == "original":
            self.decoder = PRPDecoder(num_features)
        else:
            hidden = scaled_hidden(settings.decoder_hidden_size, 64, num_features, minimum=16)
            self.decoder = ReconstructionDecoder(num_features, hidden)

    @property
    def transform_preset(self) -> str:  # type: ignore[override]
        """``prp`` (the study's augmentation) or ``eval`` (the original's centre crop)."""
        return "prp" if self.settings.augmentation == "study" else "eval"

    @property
    def num_classes(self) -> int:
        return len(self.settings.rates)

    def lr_scales(self) -> dict[str, float]:
        return {"classifier": float(self.settings.classifier_lr_scale)}

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
        return "; ".join([*hints, "or drop videos this short"])

    @staticmethod
    def split_clip(
        pixel_values: torch.Tensor, interpolate: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 2T, C, H, W)`` sampler clip -> model input ``(B, T, ...)`` and target ``(B, 2T, ...)``."""
        inputs = pixel_values[:, 0::2]
        target = pixel_values
        if interpolate is not None:
            # Odd target positions of repeated-frame samples become the mean of their neighbours
            # (only the odd frames are computed, then interleaved with the even ones once).
            following = torch.cat([inputs[:, 1:], inputs[:, -1:]], dim=1)
            mask = interpolate.to(pixel_values.device).bool().view(-1, 1, 1, 1, 1)
            odd = torch.where(mask, (inputs + following) / 2, pixel_values[:, 1::2])
            target = torch.stack([inputs, odd], dim=2).flatten(1, 2)
        return inputs, target

    def loss_mask(self, interpolate: torch.Tensor | None, length: int, device: torch.device) -> torch.Tensor:
        """``(B, 2T)`` 1 where a target frame counts in the loss: all but rate 1's averaged frames."""
        real = torch.ones(length, device=device)
        if interpolate is None or self.settings.reconstruct_averaged_frames:
            return real.view(1, -1)
        averaged = torch.arange(length, device=device) % 2 == 1
        return torch.where(interpolate.to(device).bool().view(-1, 1) & averaged, 0.0, real)

    def forward(
        self,
        backbone,
        pixel_values,
        rate: torch.Tensor | None = None,
        interpolate: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **info,
    ):
        """Loss and metrics of one batch. PRP draws nothing at random here (``generator`` is unused)."""
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
        feature_map = output.last_hidden_state
        if feature_map.ndim != 5:  # token outputs: work on the pooled feature as a 1x1x1 map
            feature_map = output.pooler_output[:, :, None, None, None]
        if self.settings.separate_branches:
            pooled = self.classification_branch(feature_map).mean(dim=(2, 3, 4))
            feature_map = self.reconstruction_branch(feature_map)
        else:
            pooled = output.pooler_output
        logits = self.classifier(pooled)
        reconstruction = self.decoder(feature_map, tuple(target.shape[i] for i in (1, 3, 4))).float()
        target = target.float()
        with torch.no_grad():
            if not self.settings.normalized_targets:  # the original's targets are frames in [0, 1]
                mean = target.new_tensor(VIDEO_MEAN).view(1, 1, -1, 1, 1)
                std = target.new_tensor(VIDEO_STD).view(1, 1, -1, 1, 1)
                target = target * std + mean
            if self.settings.motion_mask == "original":
                weights = chunk_motion_weights(
                    target, rate, self.settings.rates, self.settings.motion_min, self.settings.motion_max
                )
            else:
                kernel = max(1, target.shape[-1] // 16) | 1
                weights = motion_weights(target, self.settings.motion_min, self.settings.motion_max, kernel)
            frames = self.loss_mask(interpolate, target.shape[1], target.device)
        # Per-sample mean over the frames that count, then the batch mean (as the original).
        per_frame = (weights * (reconstruction - target).pow(2)).mean(dim=(2, 3, 4))  # (B, 2T)
        frames = frames.expand_as(per_frame)
        recon_loss = ((per_frame * frames).sum(dim=1) / frames.sum(dim=1)).mean()
        class_loss = F.cross_entropy(logits.float(), rate)
        loss = recon_loss + self.settings.classification_weight * class_loss
        return loss, {
            "accuracy": accuracy(logits, rate),
            "reconstruction_loss": recon_loss.detach(),
            "rate_loss": class_loss.detach(),
        }
