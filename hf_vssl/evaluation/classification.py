"""The one classification test of hf_vssl: finetuning's final test, retrieval features, robustness.

Protocol (the study's, after VCOP/PRP): every test video is seen as ``num_clips`` clips spread
uniformly over its length (``UniformClipSampler(mode="uniform")``) x ``num_crops`` spatial crops
(1 = center, 3 = both ends and the center of the longer side). Each view is classified alone:

- **clip-level** top-k: over all views, each view counted as one example;
- **video-level** top-k: the softmax averaged over the views of a video, one example per video.

Scores go through the shipped ``topk_accuracy`` evaluate metric. Noise (robustness) is applied to
the uint8 frames before the transform, seeded per video id (pixel noises: per frame of the video),
so results are deterministic.
Under ``accelerate launch`` the test set is sharded across processes and gathered once at the
end: records by video index (the sampler's padding duplicates dropped), a streamed shard split
(:class:`hf_vssl.data.eval_data.EvalStream`, ``index=-1``) by video id, each video exactly once
(checked: scored + left out = the split's videos).

No video is scored twice or replaced: the datasets are built with ``substitute=False``, so a
video that cannot be decoded (or is too short under ``short_video="skip"``) is left out and
listed in :attr:`EvaluationResult.skipped_videos` (for ``metrics.json`` and the card).
:func:`check_bad_videos` applies the ``max_bad_fraction`` tolerance to the counts summed over
every DataLoader worker and rank, so the verdict does not depend on either number.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

from hf_vssl.data.clips import UniformClipSampler
from hf_vssl.data.datasets import Noise, collate_clips
from hf_vssl.data.eval_data import EvalVideos, eval_clip_dataset, expected_videos
from hf_vssl.data.transforms import build_transform, resize_size
from hf_vssl.metrics import load_metric
from hf_vssl.models.processing_vssl import VIDEO_MEAN, VIDEO_STD
from hf_vssl.utils.fastpath import loader_transfer_options

logger = logging.getLogger(__name__)

__all__ = [
    "EvaluationResult",
    "MultiCropTransform",
    "build_eval_dataset",
    "check_bad_videos",
    "evaluate_classifier",
    "extract_features",
    "skipped_key",
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
            crop = F.resized_crop(
                video, top, left, side, side, [self.image_size, self.image_size], antialias=True
            )
            crops.append((crop.float().div_(255.0) - self._mean) / self._std)
        return torch.stack(crops)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_size={self.image_size}, num_crops={self.num_crops})"


def build_eval_dataset(
    videos: EvalVideos,
    num_frames: int,
    image_size: int,
    frame_stride: int = 1,
    num_clips: int = 5,
    num_crops: int = 1,
    noise: Noise | None = None,
    seed: int = 0,
    max_bad_fraction: float = 0.01,
    short_video: str = "loop",
):
    """The test-time dataset: ``num_clips`` uniform clips x ``num_crops`` crops of every video.

    ``videos``: records or a streamed shard split (:func:`hf_vssl.data.eval_data.load_eval_videos`).
    Never substitutes a video; a too-short video follows ``short_video`` (``skip``, ``loop``,
    ``pad`` or ``refuse``), decided per video."""
    sampler = UniformClipSampler(
        num_frames, frame_stride, num_clips=num_clips, mode="uniform", short_video="error"
    )
    return eval_clip_dataset(
        videos,
        sampler,
        transform=MultiCropTransform(image_size, num_crops),
        noise=noise,
        seed=seed,
        max_bad_fraction=max_bad_fraction,
        short_video=short_video,
    )


def check_bad_videos(dataset, accelerator: Accelerator | None = None) -> dict[str, int]:
    """Apply ``dataset``'s ``max_bad_fraction`` to its bad-video counts summed over every
    DataLoader worker (shared memory) and every rank (``accelerator.reduce``); return the sums.

    Called at each training epoch's end and after an evaluation, so the same corrupt data stops
    a run whatever the worker or process count. A dataset without a tracker returns ``{}``.
    """
    tracker = getattr(dataset, "tracker", None)
    if tracker is None:
        return {}
    totals = tracker.totals()
    if accelerator is not None and accelerator.num_processes > 1:
        counts = torch.tensor([totals["read"], totals["corrupt"], totals["short"]], device=accelerator.device)
        totals = dict(
            zip(("read", "corrupt", "short"), accelerator.reduce(counts, "sum").tolist(), strict=True)
        )
    total = tracker.num_videos if tracker.num_videos is not None else totals["read"]
    tracker.check_totals(int(totals["corrupt"]), int(total))
    return {key: int(value) for key, value in totals.items()}


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
    skipped_videos: list[dict] = field(default_factory=list)
    """``{"index", "video_id", "reason"}`` of every test video left out (never substituted)."""
    video_ids: list[str] = field(default_factory=list, repr=False)
    """The video of each row of ``video_scores``."""

    def results(self) -> dict[str, float]:
        """The ``results`` block of ``metrics.json``."""
        return {k: v for k, v in asdict(self).items() if k.startswith(("clip_", "video_top"))}


def skipped_key(entry: dict) -> int | str:
    """What identifies a left-out video: its index in the records, or (streams, index -1) its id."""
    return entry["index"] if entry["index"] >= 0 else entry["video_id"]


def _skipped(batch: dict) -> list[dict]:
    """The samples :func:`collate_clips` left out of ``batch``, with their reasons."""
    reasons = batch.get("skipped_reasons") or [None] * len(batch.get("skipped_video_ids", []))
    return (
        [
            {"index": int(index), "video_id": video_id, "reason": reason}
            for index, video_id, reason in zip(
                batch["skipped_index"].tolist(), batch["skipped_video_ids"], reasons, strict=True
            )
        ]
        if "skipped_index" in batch
        else []
    )


def _gather(
    accelerator: Accelerator | None, indices: torch.Tensor, video_ids: list[str], *tensors: torch.Tensor
):
    """``(video_ids, tensors)``: every rank's rows, each video once, in record order (streams,
    whose index is -1: in video-id order). Ranks may hold different counts (skipped videos,
    streams), so rows are padded for the gather and the padding dropped by each rank's count."""
    if accelerator is not None and accelerator.num_processes > 1:
        # Each rank's ids, and its rows' shapes and dtypes for a rank that holds none (a stream may
        # give a rank no video): its empty tensors must match the others' in the gather.
        layout = [(tuple(t.shape[1:]), t.dtype) for t in tensors] if len(indices) else None
        per_rank, layouts = zip(*gather_object([(video_ids, layout)]), strict=True)
        layout = next((spec for spec in layouts if spec is not None), None)
        if layout is None:
            return [], tensors
        if not len(indices):
            device = accelerator.device
            indices = indices.to(device)
            tensors = tuple(torch.zeros((0, *shape), dtype=dtype, device=device) for shape, dtype in layout)
        indices = accelerator.gather(accelerator.pad_across_processes(indices, dim=0, pad_index=-1))
        tensors = tuple(accelerator.gather(accelerator.pad_across_processes(t, dim=0)) for t in tensors)
        width = len(indices) // accelerator.num_processes
        rows = torch.cat([torch.arange(r * width, r * width + len(ids)) for r, ids in enumerate(per_rank)])
        video_ids = [video_id for ids in per_rank for video_id in ids]
        indices, tensors = indices[rows.to(indices.device)], tuple(t[rows.to(t.device)] for t in tensors)
    indices = indices.cpu()
    if bool((indices >= 0).all()):
        order = indices.argsort(stable=True)
        keep = torch.ones(len(order), dtype=torch.bool)
        keep[1:] = indices[order][1:] != indices[order][:-1]  # the sampler's padding duplicates
        order = order[keep]
    else:
        repeated = sorted(video_id for video_id, count in Counter(video_ids).items() if count > 1)
        if repeated:
            raise RuntimeError(
                f"videos {repeated[:5]} were scored more than once: the stream was not split exactly once "
                "across ranks and workers"
            )
        order = torch.tensor(sorted(range(len(video_ids)), key=video_ids.__getitem__), dtype=torch.int64)
    return [video_ids[i] for i in order.tolist()], tuple(t[order.to(t.device)].cpu() for t in tensors)


def _gather_skipped(accelerator: Accelerator | None, skipped: list[dict], desc: str) -> list[dict]:
    if accelerator is not None and accelerator.num_processes > 1:
        skipped = gather_object(skipped)
    unique = {skipped_key(entry): entry for entry in skipped}
    unique = [unique[key] for key in sorted(unique, key=lambda key: (isinstance(key, str), key))]
    if unique and (accelerator is None or accelerator.is_main_process):
        logger.warning(
            "%s: %d video(s) left out, not substituted: %s",
            desc,
            len(unique),
            "; ".join(f"{e['video_id']} ({e['reason']})" for e in unique[:5]),
        )
    return unique


def _check_exactly_once(dataset, num_scored: int, skipped: list[dict], desc: str) -> None:
    """Every video of the evaluated split scored or listed as left out, none twice."""
    expected = expected_videos(dataset)
    if expected is not None and num_scored + len(skipped) != expected:
        raise RuntimeError(
            f"{desc}: {num_scored} videos scored and {len(skipped)} left out, but the split has {expected}: "
            "some videos were not read (or read twice) across ranks and workers"
        )


def _stacked(indices: list, video_ids: list[str], *columns: list) -> tuple:
    """One rank's rows as tensors (empty ones when every video of this rank was left out)."""
    if not indices:
        return (torch.zeros(0, dtype=torch.int64), [], *(torch.zeros(0) for _ in columns))
    return (torch.cat(indices), video_ids, *(torch.cat(column) for column in columns))


def _views(pixel_values: torch.Tensor) -> torch.Tensor:
    """``(B, [N,] [crops,] T, C, H, W)`` -> ``(B, views, T, C, H, W)``."""
    return pixel_values.reshape(pixel_values.shape[0], -1, *pixel_values.shape[-4:])


def _loader(dataset, batch_size: int, num_workers: int, accelerator: Accelerator | None):
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        collate_fn=collate_clips,
        num_workers=num_workers,
        **loader_transfer_options(num_workers),
    )
    if accelerator is None or isinstance(dataset, torch.utils.data.IterableDataset):
        return loader  # a stream shards itself by rank; Accelerate would shard it a second time
    return accelerator.prepare_data_loader(loader)


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
    dataset,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    accelerator: Accelerator | None = None,
    desc: str = "evaluate",
    top_k: Sequence[int] = (1, 5),
) -> EvaluationResult:
    """Clip- and video-level top-1/top-5 of a ``VSSLForVideoClassification`` on ``dataset``.

    ``dataset`` comes from :func:`build_eval_dataset` (records or a streamed shard split); the model is put in eval mode (and left
    so). ``batch_size`` counts videos (each brings ``num_clips x num_crops`` views).
    """
    device = _device(model, accelerator)
    autocast = accelerator.autocast if accelerator is not None else contextlib.nullcontext
    was_training = model.training
    model.eval()
    loader = _loader(dataset, batch_size, num_workers, accelerator)
    view_logits, video_scores, labels, indices, video_ids, skipped = [], [], [], [], [], []
    main = accelerator is None or accelerator.is_local_main_process
    for batch in tqdm(loader, desc=desc, disable=not main, dynamic_ncols=True, leave=False):
        skipped += _skipped(batch)
        if batch["pixel_values"] is None:  # every video of the batch was left out
            continue
        output, count = _forward_views(model, batch["pixel_values"], device, autocast)
        logits = output.logits.float().view(-1, count, output.logits.shape[-1])
        view_logits.append(logits)
        video_scores.append(logits.softmax(-1).mean(1))
        labels.append(batch["labels"].to(device))
        indices.append(batch["index"].to(device))
        video_ids += batch["video_ids"]
    model.train(was_training)
    check_bad_videos(dataset, accelerator)
    skipped = _gather_skipped(accelerator, skipped, desc)
    # Everything stays on the device until here: one gather (and one host copy) at the end.
    video_ids, (view_logits, video_scores, labels) = _gather(
        accelerator, *_stacked(indices, video_ids, view_logits, video_scores, labels)
    )
    _check_exactly_once(dataset, len(labels), skipped, desc)
    if not len(labels):
        raise RuntimeError(f"{desc}: every one of the {len(skipped)} videos was left out ({skipped[:3]} ...)")

    metric = load_metric("topk_accuracy")
    num_views = view_logits.shape[1]
    clip = metric.compute(
        predictions=view_logits.flatten(0, 1).numpy(),
        references=labels.repeat_interleave(num_views).numpy(),
        k=list(top_k),
    )
    video = metric.compute(predictions=video_scores.numpy(), references=labels.numpy(), k=list(top_k))
    return EvaluationResult(
        clip_top1=clip["top1"],
        clip_top5=clip["top5"],
        video_top1=video["top1"],
        video_top5=video["top5"],
        num_videos=len(labels),
        num_views=num_views,
        video_scores=video_scores,
        labels=labels,
        skipped_videos=skipped,
        video_ids=video_ids,
    )


@torch.inference_mode()
def extract_features(
    backbone: torch.nn.Module,
    dataset,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    accelerator: Accelerator | None = None,
    desc: str = "features",
    return_skipped: bool = False,
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """``(features (V, D) float32, labels (V,))``: the backbone's pooled output averaged over each video's views.

    With ``return_skipped`` also the videos left out (as in :attr:`EvaluationResult.skipped_videos`).

    ``backbone`` is a ``VSSLModel`` (e.g. ``classifier.vssl``); records keep their order (streams:
    video-id order). Videos
    the dataset leaves out (never substituted) have no row; they are logged once.
    """
    device = _device(backbone, accelerator)
    autocast = accelerator.autocast if accelerator is not None else contextlib.nullcontext
    was_training = backbone.training
    backbone.eval()
    loader = _loader(dataset, batch_size, num_workers, accelerator)
    features, labels, indices, video_ids, skipped = [], [], [], [], []
    main = accelerator is None or accelerator.is_local_main_process
    for batch in tqdm(loader, desc=desc, disable=not main, dynamic_ncols=True, leave=False):
        skipped += _skipped(batch)
        if batch["pixel_values"] is None:
            continue
        output, count = _forward_views(backbone, batch["pixel_values"], device, autocast)
        pooled = output.pooler_output.float()
        features.append(pooled.view(-1, count, pooled.shape[-1]).mean(1))
        labels.append(batch["labels"].to(device))
        indices.append(batch["index"].to(device))
        video_ids += batch["video_ids"]
    backbone.train(was_training)
    check_bad_videos(dataset, accelerator)
    skipped = _gather_skipped(accelerator, skipped, desc)
    _, (features, labels) = _gather(accelerator, *_stacked(indices, video_ids, features, labels))
    _check_exactly_once(dataset, len(labels), skipped, desc)
    if not len(labels):
        raise RuntimeError(f"{desc}: every one of the {len(skipped)} videos was left out")
    return (features, labels, skipped) if return_skipped else (features, labels)
