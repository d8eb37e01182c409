"""Batched clip augmentation on the training device, after collation.

A training preset of :mod:`hf_vssl.data.transforms` splits in two:

- the **loader part** (:func:`~hf_vssl.data.transforms.build_loader_transform`), in the
  DataLoader workers: the random (resized) crop, cut in uint8 with the context a rotation reads
  and resized once in uint8 to a fixed side ``L`` (``S + 2 * margin``; ``S`` without rotation);
  cheap, and the batch travels to the device as uint8 (4x fewer bytes than float);
- the **device part** (:class:`BatchAugment`), on the collated uint8 batch ``(B, T, C, L, L)``
  or ``(B, N, T, C, L, L)``: per-clip parameters drawn with torch's RNG on the batch's device
  (each clip of a multi-clip sample its own, shared by all its frames; one per sample, shared by
  its clips, for a preset with ``per_sample_params`` such as VCOP's; with the probabilities of
  its position's view for a preset with ``views`` such as CVRL's), then for the whole batch
  one ``affine_grid`` + ``grid_sample`` (flip, rotation, the crop's place in its context), one
  colour matrix per clip applied with one ``baddbmm`` (jitter, grayscale, ``/255`` and the
  normalisation folded together), a clamp where the jitter fired and CVRL's gamma / blur /
  solarize on the clips that drew them. Output: normalised float32 ``(B, [N,] T, C, S, S)``.

Both halves use the parameter drawing and the matrices of
:class:`~hf_vssl.data.transforms.FusedClipTransform` (one implementation): for the same crop
and parameters the device output equals the per-clip fused path within float rounding. The
loader part draws the crop exactly as the fused path does; the rest of the random stream
differs (drawn on the device), so the two paths give different (equally distributed) samples.

The training loops pick where augmentation runs with ``--augment_on auto|loader|device``
(:func:`train_transforms`): "auto" is "device" on CUDA, else "loader". In device mode each
batch's draws come from a generator on the device seeded from ``(seed, epoch, batch index,
process)`` (:class:`SeededBatchAugment`), so a resumed run augments exactly like an
uninterrupted one whatever else consumed the global RNG (a DataLoader iterator's base seed,
for one, is drawn once more after a resume).
"""

from __future__ import annotations

import math

import torch

from .transforms import (
    NUM_CLIP_UNIFORMS,
    ClipParams,
    FusedClipTransform,
    build_loader_transform,
    build_transform,
    crop_thetas,
    fused_spec,
    resample_batch,
)

AUGMENT_ON = ("auto", "loader", "device")


class BatchAugment:
    """The device part of a training preset: uint8 ``(B, [N,] T, 3, L, L)`` -> normalised float32
    ``(B, [N,] T, 3, S, S)``, on the batch's device. Picklable, no parameters, no ``nn.Module``.

    ``augment(batch, generator=None)`` draws the parameters (``torch.rand`` on the batch's
    device, from ``generator`` or the device's default generator) and applies them;
    :meth:`draw` and :meth:`apply` do the two steps apart.
    """

    #: Clips per pass on the CPU (see :meth:`apply`).
    cpu_chunk = 2

    def __init__(self, spec: FusedClipTransform, preset: str | None = None):
        self.spec, self.preset = spec, preset
        self.image_size, self.input_size = spec.image_size, spec.loader_size

    def draw(
        self,
        num_clips: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
        clips_per_sample: int = 1,
    ) -> ClipParams:
        """Parameters of ``num_clips`` clips (float32 on ``device``), in samples of
        ``clips_per_sample`` clips (each clip drawn with its view's probabilities)."""
        u = torch.rand(num_clips, NUM_CLIP_UNIFORMS, device=device, generator=generator)
        view = None
        if clips_per_sample > 1 and self.spec.views:
            view = torch.arange(num_clips, device=u.device) % clips_per_sample
        return self.spec.clip_params(u, view)

    def _check(self, video: torch.Tensor) -> None:
        size = self.input_size
        if (
            not isinstance(video, torch.Tensor)
            or video.dtype != torch.uint8
            or video.ndim not in (5, 6)
            or tuple(video.shape[-3:]) != (3, size, size)
        ):
            got = (
                f"{video.dtype} tensor of shape {tuple(video.shape)}"
                if isinstance(video, torch.Tensor)
                else type(video).__name__
            )
            raise ValueError(
                f"BatchAugment expects a uint8 batch (B, [N,] T, 3, {size}, {size}) from "
                f"build_loader_transform({self.preset!r}, {self.image_size}) and collate_clips, got {got}"
            )

    def apply(self, video: torch.Tensor, params: ClipParams) -> torch.Tensor:
        """Augment the uint8 batch ``video`` with ``params`` (one row per clip, clips in
        ``video.reshape(-1, T, 3, L, L)`` order)."""
        self._check(video)
        lead, (t, c, height, width) = video.shape[:-4], video.shape[-4:]
        clips = video.reshape(-1, t, c, height, width)
        if params.num_clips != clips.shape[0]:
            raise ValueError(f"{params.num_clips} parameter rows for {clips.shape[0]} clips")
        if clips.device.type == "cpu" and clips.shape[0] > self.cpu_chunk:
            # On the CPU, a few clips at a time keep the float intermediates cache-resident
            # (2-3x faster than whole-batch passes over ~100 MB tensors).
            chunks = [
                self._apply(clips[i : i + self.cpu_chunk], params.select(slice(i, i + self.cpu_chunk)))
                for i in range(0, clips.shape[0], self.cpu_chunk)
            ]
            out = torch.cat(chunks)
        else:
            out = self._apply(clips, params)
        return out.view(*lead, t, c, self.image_size, self.image_size)

    def _apply(self, clips: torch.Tensor, params: ClipParams) -> torch.Tensor:
        spec, size = self.spec, self.image_size
        if self.input_size == size and not spec.rotation_degrees:
            # Geometry is the flip alone: exact, on the uint8 batch (what grid_sample would give).
            flip = params.flip.view(-1, 1, 1, 1, 1)
            clips = torch.where(flip, clips.flip(-1), clips).to(torch.float32)
        else:
            margin = float(spec.margin)
            boxes = params.angle.new_full((clips.shape[0], 4), margin)  # top, left, height, width
            boxes[:, 2:] = size
            theta = crop_thetas(boxes, params.flip, params.angle)
            clips = resample_batch(clips, theta, size, spec.padding_mode)
        return spec.finish(clips, params)

    def __call__(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        self._check(video)
        if video.ndim == 6 and self.spec.per_sample_params:
            # One draw per sample, shared by its N clips (VCOP's tuples); the crops were per clip.
            samples, clips = video.shape[:2]
            params = self.draw(samples, video.device, generator)
            index = torch.arange(samples, device=video.device).repeat_interleave(clips)
            return self.apply(video, params.select(index))
        num_clips = math.prod(video.shape[:-4])
        per_sample = video.shape[1] if video.ndim == 6 else 1
        return self.apply(video, self.draw(num_clips, video.device, generator, per_sample))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(preset={self.preset!r}, image_size={self.image_size}, "
            f"input_size={self.input_size})"
        )


def build_batch_augment(preset: str, image_size: int = 112) -> BatchAugment:
    """The device part of training preset ``preset``, for batches from
    ``build_loader_transform(preset, image_size)``."""
    return BatchAugment(fused_spec(preset, image_size), preset)


def resolve_augment_on(augment_on: str, device: torch.device | str) -> str:
    """``"loader"`` or ``"device"``: ``"auto"`` is ``"device"`` on a CUDA device, else ``"loader"``."""
    if augment_on not in AUGMENT_ON:
        raise ValueError(f"--augment_on must be one of {', '.join(AUGMENT_ON)}, got {augment_on!r}")
    if augment_on == "auto":
        return "device" if torch.device(device).type == "cuda" else "loader"
    return augment_on


class SeededBatchAugment:
    """:class:`BatchAugment` for a training loop: each batch's parameters come from a generator
    on ``device`` seeded from ``(seed, epoch, batch_index, process_index)``, so the augmentation of
    a batch does not depend on the RNG history (resumed runs match uninterrupted ones)."""

    def __init__(self, augment: BatchAugment, device: torch.device | str, seed: int, process_index: int = 0):
        self.augment, self.seed, self.process_index = augment, int(seed), int(process_index)
        self.generator = torch.Generator(device=device)

    def batch_seed(self, epoch: int, batch_index: int) -> int:
        """A 63-bit seed for the batch, the same in every run."""
        import numpy as np

        sequence = np.random.SeedSequence(
            [self.seed, int(epoch), int(batch_index), self.process_index, 0x5EED]
        )
        return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))

    def __call__(self, pixel_values: torch.Tensor, epoch: int, batch_index: int) -> torch.Tensor:
        self.generator.manual_seed(self.batch_seed(epoch, batch_index))
        return self.augment(pixel_values, generator=self.generator)


def train_transforms(
    preset: str,
    image_size: int,
    augment_on: str = "auto",
    device: torch.device | str = "cpu",
    *,
    train: bool = True,
    seed: int = 0,
    process_index: int = 0,
):
    """``(dataset transform, device augment or None)`` of a training loop.

    ``augment_on`` resolves with :func:`resolve_augment_on`. Device mode applies to training
    presets with ``train=True``; otherwise (or in loader mode) the dataset gets
    ``build_transform(preset, image_size, train)`` and the second item is None. The device
    augment is called as ``augment(pixel_values, epoch, batch_index)`` (:class:`SeededBatchAugment`).
    """
    mode = resolve_augment_on(augment_on, device)
    if mode == "device" and train and preset != "eval":
        augment = SeededBatchAugment(build_batch_augment(preset, image_size), device, seed, process_index)
        return build_loader_transform(preset, image_size), augment
    return build_transform(preset, image_size, train=train), None


__all__ = [
    "AUGMENT_ON",
    "BatchAugment",
    "SeededBatchAugment",
    "build_batch_augment",
    "build_loader_transform",
    "resolve_augment_on",
    "train_transforms",
]
