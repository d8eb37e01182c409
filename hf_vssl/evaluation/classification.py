"""The one classification test of hf_vssl: finetuning's final test, retrieval features, robustness.

Protocol (the study's, after VCOP/PRP): every test video is seen as ``num_clips`` clips spread
uniformly over its length (``UniformClipSampler(mode="uniform")``) x ``num_crops`` spatial crops
(1 = center, 3 = both ends and the center of the longer side). Each view is classified alone:

- **clip-level** top-k: over all views, each view counted as one example;
- **video-level** top-k: the softmax averaged over the views of a video, one example per video.

Scores go through the shipped ``topk_accuracy`` evaluate metric. Noise (robustness) is applied to
the uint8 frames before the transform, seeded per video id, so results are deterministic.
Under ``accelerate launch`` the test set is sharded across processes and gathered with
``gather_for_metrics`` (padding duplicates dropped).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from accelerate import Accelerator
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

from hf_vssl.data.clips import UniformClipSampler
from hf_vssl.data.datasets import Noise, VideoClipDataset, collate_clips
from hf_vssl.data.records import VideoRecord
from hf_vssl.data.transforms import build_transform, resize_size
from hf_vssl.metrics import load_metric
from hf_vssl.models.processing_vssl import VIDEO_MEAN, VIDEO_STD

__all__ = [
    "EvaluationResult",
    "MultiCropTransform",
    "build_eval_dataset",
    "evaluate_classifier",
    "extract_features",
]


class MultiCropTransform:
    """uint8 ``(T, C, H, W)`` -> normalised float ``(num_crops, T, C, S, S)``.

    Like the ``eval`` transform (shortest side resized to ``resize_size(S)``, crop ``S``), but with
    ``num_crops`` crops placed at the start, center and end of the longer side (the center for
    the other side). ``num_crops=1`` is exactly ``build_transform("eval", S, train=False)``.
    """

    def __init__(self, image_size: int, num_crops: int = 3):
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops!r}")
        self.image_size, self.num_crops = int(image_size), int(num_crops)
        self._single = build_transform("eval", self.image_size, train=False)
        self._mean = torch.tensor(VIDEO_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(VIDEO_STD).view(1, 3, 1, 1)

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        if self.num_crops == 1:
            return self._single(video).unsqueeze(0)
        height, width = video.shape[-2:]
        # Crop-then-resize as the fused eval crop does: the square's side in input pixels.
        side = min(round(self.image_size * min(height, width) / resize_size(self.image_size)), height, width)
        long_room = max(height, width) - side
        short_offset = (min(height, width) - side) // 2
        crops = []
        for along in (0, long_room // 2, long_room):
            top, left = (short_offset, along) if width >= height else (along, short_offset)
            crop = F.resized_crop(video, top, left, side, side, [self.image_size, self.image_size], antialias=True)
            crops.append((crop.float().div_(255.0) - self._mean) / self._std)
        return torch.stack(crops)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_size={self.image_size}, num_crops={self.num_crops})"


def build_eval_dataset(
    records: Sequence[VideoRecord],
    num_frames: int,
    image_size: int,
    frame_stride: int = 1,
    num_clips: int = 5,
    num_crops: int = 1,
    noise: Noise | None = None,
    seed: int = 0,
    max_bad_fraction: float = 0.01,
) -> VideoClipDataset:
    """The test-time dataset: ``num_clips`` uniform clips x ``num_crops`` crops of every video."""
    sampler = UniformClipSampler(num_frames, frame_stride, num_clips=num_clips, mode="uniform", short_video="loop")
    return VideoClipDataset(records, sampler, transform=MultiCropTransform(image_size, num_crops), noise=noise,
                            seed=seed, max_bad_fraction=max_bad_fraction)


@dataclass
class EvaluationResult:
    """Clip- and video-level accuracies (fractions) and the per-video scores behind them."""

    clip_top1: float
    clip_top5: float
    video_top1: float
    video_top5: float
    num_videos: int
    num_views: int
    video_scores: torch.Tensor = field(repr=False)
    """``(num_videos, num_labels)`` mean softmax over the views, in record order."""
    labels: torch.Tensor = field(repr=False)

    def results(self) -> dict[str, float]:
        """The ``results`` block of ``metrics.json``."""
        return {k: v for k, v in asdict(self).items() if k.startswith(("clip_", "video_top"))}


def _views(pixel_values: torch.Tensor) -> torch.Tensor:
    """``(B, [N,] [crops,] T, C, H, W)`` -> ``(B, views, T, C, H, W)``."""
    return pixel_values.reshape(pixel_values.shape[0], -1, *pixel_values.shape[-4:])


def _loader(dataset: VideoClipDataset, batch_size: int, num_workers: int, accelerator: Accelerator | None):
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_clips,
                                         num_workers=num_workers)
    return accelerator.prepare_data_loader(loader) if accelerator is not None else loader


def _device(model: torch.nn.Module, accelerator: Accelerator | None) -> torch.device:
    return accelerator.device if accelerator is not None else next(model.parameters()).device


def _forward_views(model, pixel_values, device, autocast):
    """Run ``model`` on every view of a batch at once; returns ``(output, views per video)``."""
    views = _views(pixel_values.to(device, non_blocking=True))
    with autocast():
        output = model(pixel_values=views.flatten(0, 1))
    return output, views.shape[1]


@torch.inference_mode()
def evaluate_classifier(
    model: torch.nn.Module,
    dataset: VideoClipDataset,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    accelerator: Accelerator | None = None,
    desc: str = "evaluate",
    top_k: Sequence[int] = (1, 5),
) -> EvaluationResult:
    """Clip- and video-level top-1/top-5 of a ``VSSLForVideoClassification`` on ``dataset``.

    ``dataset`` comes from :func:`build_eval_dataset`; the model is put in eval mode (and left
    so). ``batch_size`` counts videos (each brings ``num_clips x num_crops`` views).
    """
    device = _device(model, accelerator)
    autocast = accelerator.autocast if accelerator is not None else contextlib.nullcontext
    was_training = model.training
    model.eval()
    loader = _loader(dataset, batch_size, num_workers, accelerator)
    view_logits, video_scores, labels, indices = [], [], [], []
    main = accelerator is None or accelerator.is_local_main_process
    for batch in tqdm(loader, desc=desc, disable=not main, dynamic_ncols=True, leave=False):
        output, count = _forward_views(model, batch["pixel_values"], device, autocast)
        logits = output.logits.float().view(-1, count, output.logits.shape[-1])
        view_logits.append(logits)
        video_scores.append(logits.softmax(-1).mean(1))
        labels.append(batch["labels"].to(device))
        indices.append(batch["index"].to(device))
    # Everything stays on the device until here: one gather (and one host copy) at the end.
    view_logits, video_scores, labels, indices = (torch.cat(x) for x in (view_logits, video_scores, labels, indices))
    if accelerator is not None:
        view_logits, video_scores, labels, indices = accelerator.gather_for_metrics(
            (view_logits, video_scores, labels, indices))
    order = indices.argsort()
    view_logits, video_scores, labels = view_logits[order].cpu(), video_scores[order].cpu(), labels[order].cpu()
    model.train(was_training)

    metric = load_metric("topk_accuracy")
    num_views = view_logits.shape[1]
    clip = metric.compute(predictions=view_logits.flatten(0, 1).numpy(),
                          references=labels.repeat_interleave(num_views).numpy(), k=list(top_k))
    video = metric.compute(predictions=video_scores.numpy(), references=labels.numpy(), k=list(top_k))
    return EvaluationResult(
        clip_top1=clip["top1"], clip_top5=clip["top5"], video_top1=video["top1"], video_top5=video["top5"],
        num_videos=len(labels), num_views=num_views, video_scores=video_scores, labels=labels,
    )


@torch.inference_mode()
def extract_features(
    backbone: torch.nn.Module,
    dataset: VideoClipDataset,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    accelerator: Accelerator | None = None,
    desc: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (V, D) float32, labels (V,))``: the backbone's pooled output averaged over each video's views.

    ``backbone`` is a ``VSSLModel`` (e.g. ``classifier.vssl``); records keep their order.
    """
    device = _device(backbone, accelerator)
    autocast = accelerator.autocast if accelerator is not None else contextlib.nullcontext
    was_training = backbone.training
    backbone.eval()
    loader = _loader(dataset, batch_size, num_workers, accelerator)
    features, labels, indices = [], [], []
    main = accelerator is None or accelerator.is_local_main_process
    for batch in tqdm(loader, desc=desc, disable=not main, dynamic_ncols=True, leave=False):
        output, count = _forward_views(backbone, batch["pixel_values"], device, autocast)
        pooled = output.pooler_output.float()
        features.append(pooled.view(-1, count, pooled.shape[-1]).mean(1))
        labels.append(batch["labels"].to(device))
        indices.append(batch["index"].to(device))
    features, labels, indices = (torch.cat(x) for x in (features, labels, indices))
    if accelerator is not None:
        features, labels, indices = accelerator.gather_for_metrics((features, labels, indices))
    order = indices.argsort()
    backbone.train(was_training)
    return features[order].cpu(), labels[order].cpu()
