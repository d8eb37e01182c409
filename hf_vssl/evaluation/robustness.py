"""Robustness of a video classifier to input noise: the classification test re-run on noisy test sets.

Each noise kind of :mod:`hf_vssl.data.noise` (temporal perturbations too) at severities 1-5 is applied to the
uint8 frames of every test clip, seeded per (seed, video id) (pixel noises: per (seed, video id,
frame of the video)), then the model is tested exactly as
after finetuning (:func:`hf_vssl.evaluation.evaluate_classifier`, video-level top-1). Severity 0
is the clean test set. Relative decrease / robustness come from the shipped
``relative_robustness`` evaluate metric. :func:`evaluate_robustness` returns the report dict that
:mod:`hf_vssl.analysis.robustness` writes out.

The test videos are records or a streamed shard split; a shard dataset that publishes the noisy
copy of its split made with the same kind, severity, preset and seed is read from that split
(``published`` in the report), anything else gets its noise on the fly: the same clips either way
(docs/streaming_evaluation.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from hf_vssl.data.eval_data import EvalVideos, noisy_eval_videos
from hf_vssl.data.noise import MAX_SEVERITY, NOISE_KINDS, NOISE_PRESETS, PIXEL_NOISES
from hf_vssl.metrics import load_metric

from .classification import build_eval_dataset, evaluate_classifier, skipped_key

logger = logging.getLogger(__name__)

__all__ = ["build_report", "check_noises", "evaluate_robustness"]


def check_noises(noises: Sequence[str], severities: Sequence[int], preset: str) -> None:
    """Refuse unknown noise kinds, severities outside 1..MAX_SEVERITY and unknown presets."""
    unknown = [kind for kind in noises if kind not in NOISE_KINDS]
    if unknown or not noises:
        raise ValueError(
            f"unknown noise kind(s) {unknown or '(none given)'}; valid: {', '.join(NOISE_KINDS)}"
        )
    bad = [s for s in severities if not 1 <= int(s) <= MAX_SEVERITY]
    if bad or not severities:
        raise ValueError(
            f"severities must be integers in 1..{MAX_SEVERITY} (0, the clean run, is always "
            f"included), got {list(severities)}"
        )
    if preset not in NOISE_PRESETS:
        raise ValueError(f"unknown noise preset {preset!r}; valid: {', '.join(NOISE_PRESETS)}")


def evaluate_robustness(
    model: torch.nn.Module,
    videos: EvalVideos,
    *,
    num_frames: int,
    image_size: int,
    frame_stride: int = 1,
    noises: Sequence[str] = PIXEL_NOISES,
    severities: Sequence[int] = tuple(range(1, MAX_SEVERITY + 1)),
    preset: str = "video-p",
    seed: int = 0,
    num_clips: int = 5,
    num_crops: int = 1,
    batch_size: int = 8,
    num_workers: int = 0,
    accelerator=None,
    dataset_name: str = "",
    short_video: str = "loop",
    max_bad_fraction: float = 0.01,
) -> dict[str, Any]:
    """Test ``model`` on the clean and every noisy variant of ``videos``; return the report dict.

    ``videos``: records or a shard split (:func:`hf_vssl.data.eval_data.load_eval_videos`); a
    published noisy split with these settings is read instead of adding the noise on the fly.

    Deterministic: the noise of a video depends only on ``(seed, video id, kind, severity)``
    and the evaluation has no other randomness, so two runs give identical numbers. Videos left
    out (unreadable, or short under ``short_video="skip"``; never substituted) are listed in
    the report's ``skipped_videos``.
    """
    severities = sorted({int(s) for s in severities})
    check_noises(noises, severities, preset)
    skipped: dict[int | str, dict] = {}

    def top1(videos, noise, desc):
        dataset = build_eval_dataset(
            videos,
            num_frames,
            image_size,
            frame_stride,
            num_clips,
            num_crops,
            noise=noise,
            seed=seed,
            max_bad_fraction=max_bad_fraction,
            short_video=short_video,
        )
        result = evaluate_classifier(
            model, dataset, batch_size=batch_size, num_workers=num_workers, accelerator=accelerator, desc=desc
        )
        skipped.update({skipped_key(entry): entry for entry in result.skipped_videos})
        return result.video_top1

    clean = top1(videos, None, "clean")
    noisy: dict[tuple[str, int], float] = {}
    published: dict[str, str] = {}
    cells = [(kind, severity) for kind in noises for severity in severities]
    main = accelerator is None or accelerator.is_local_main_process
    for kind, severity in tqdm(cells, desc="robustness", disable=not main, dynamic_ncols=True):
        variant, noise = noisy_eval_videos(videos, kind, severity, preset, seed)
        if noise is None:
            published[f"{kind} s{severity}"] = variant.split
        noisy[(kind, severity)] = top1(variant, noise, f"{kind} s{severity}")
    report = build_report(clean, noisy, dataset=dataset_name, preset=preset)
    report.update(
        seed=seed,
        num_clips=num_clips,
        num_crops=num_crops,
        metric="video_top1",
        skipped_videos=[skipped[key] for key in sorted(skipped, key=lambda key: (isinstance(key, str), key))],
        published=published,
    )
    return report


def build_report(
    clean_top1: float, noisy_top1: dict[tuple[str, int], float], *, dataset: str, preset: str
) -> dict[str, Any]:
    """The report dict from the clean accuracy and ``{(noise, severity): top1}`` (severities >= 1).

    Every noise gets a severity-0 cell equal to the clean accuracy. Relative values are ``None``
    when the clean accuracy is 0 (undefined).
    """
    metric = load_metric("relative_robustness")
    defined = clean_top1 > 0
    if not defined:
        logger.warning("clean top-1 is 0: relative decrease / robustness are undefined and reported as null")

    def relative(noisy: list[float]) -> dict[str, float | None]:
        if not defined:
            return {"relative_decrease": None, "relative_robustness": None}
        return metric.compute(clean_accuracy=[clean_top1] * len(noisy), noisy_accuracy=noisy)

    noises = list(dict.fromkeys(kind for kind, _ in noisy_top1))
    cells, average = [], {}
    for kind in noises:
        cells.append({"noise": kind, "severity": 0, "top1": clean_top1, **relative([clean_top1])})
        values = []
        for (other, severity), top1 in sorted(noisy_top1.items(), key=lambda item: item[0][1]):
            if other == kind:
                values.append(top1)
                cells.append({"noise": kind, "severity": severity, "top1": top1, **relative([top1])})
        average[kind] = {"top1": sum(values) / len(values), **relative(values)}
    return {
        "dataset": dataset,
        "preset": preset,
        "clean_top1": clean_top1,
        "cells": cells,
        "average": average,
    }
