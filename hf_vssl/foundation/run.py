"""The run behind ``python recipes/zero_shot.py``: zero-shot accuracy of a foundation model on a dataset split.

Reads top to bottom: arguments, records, class names, model (text embeddings computed once),
the evaluation shared with finetuning (``build_eval_dataset`` + ``evaluate_classifier``: clip-
and video-level top-1/top-5 over uniform clips x crops, bf16 autocast, sharded under
``accelerate launch``), then the run folder:

- ``metrics.json``: the ``metrics.json`` contract of the finetuning recipe with ``mode: zero_shot``
  (``results`` holds ``clip_top1``, ``clip_top5``, ``video_top1``, ``video_top5``), plus the
  model family, templates and class names under ``zero_shot``;
- ``predictions.json``: per video, its id, label, top-5 predicted classes;
- ``zero_shot_args.yaml`` (re-usable with ``--config``) and ``README.md`` (the card,
  :mod:`hf_vssl.foundation.card`).

Every run writes a new folder: the default name carries a timestamp, and an ``--output_dir``
that already holds a ``metrics.json`` is refused unless ``--overwrite_output_dir``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from hf_vssl.data.eval_data import ShardSplit, load_eval_videos
from hf_vssl.evaluation.classification import EvaluationResult, build_eval_dataset, evaluate_classifier
from hf_vssl.training.arguments import CompileArguments, save_args
from hf_vssl.utils.fastpath import compile_in_place

from .arguments import FoundationModelArguments, build_zero_shot_classifier, dataset_class_names
from .card import write_zero_shot_card
from .loading import FAMILIES, foundation_family
from .prompts import resolve_templates

logger = logging.getLogger(__name__)

__all__ = ["ZeroShotArguments", "run_zero_shot"]


@dataclass
class ZeroShotArguments(CompileArguments, FoundationModelArguments):
    """Settings of ``recipes/zero_shot.py``. Defaults: the test split of the built-in synthetic corpus."""

    config: str | None = field(
        default=None, metadata={"help": "YAML file of these arguments (CLI flags win)"}
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": f"an X-CLIP, CLIP or SigLIP checkpoint (Hub id or folder; model_type in {', '.join(FAMILIES)})"
        },
    )
    output_dir: str | None = field(
        default=None,
        metadata={"help": "a new folder for this run (default: outputs/zero-shot/<model>-<dataset>-<time>)"},
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "allow an --output_dir with results"})
    dataset: str = field(
        default="synthetic",
        metadata={
            "help": "ucf101, hmdb51, kinetics400, ssv2, diving48, videofolder, synthetic, a shard folder or a Hub "
            "dataset repo of shards (org/name)"
        },
    )
    dataset_root: str | None = field(default=None, metadata={"help": "dataset folder (synthetic: built in)"})
    dataset_revision: str | None = field(
        default=None, metadata={"help": "Hub shard datasets: the branch, tag or commit to read"}
    )
    dataset_split: str = "test"
    fold: int = field(default=1, metadata={"help": "official fold (UCF101 / HMDB51: 1-3)"})
    label_set: str | None = field(
        default=None, metadata={"help": "synthetic corpus only: motion or appearance"}
    )
    subset_size: int | None = field(default=None, metadata={"help": "class-balanced subset of the split"})
    subset_seed: int = 0
    eval_clips: int = field(default=5, metadata={"help": "uniform clips per video"})
    eval_crops: int = field(default=1, metadata={"help": "spatial crops per clip (1 or 3)"})
    per_device_eval_batch_size: int = field(
        default=8, metadata={"help": "videos per batch (x clips x crops)"}
    )
    dataloader_num_workers: int = 0
    bf16: bool = field(
        default=True,
        metadata={
            "help": "bf16 autocast of the model (GPU and CPU, like the other "
            "recipes); the logits are taken in float32"
        },
    )
    seed: int = 0


def _output_dir(args: ZeroShotArguments) -> Path:
    if args.output_dir:
        output_dir = Path(args.output_dir)
        if (output_dir / "metrics.json").is_file() and not args.overwrite_output_dir:
            raise FileExistsError(
                f"--output_dir {output_dir} already holds a metrics.json; pick a new folder or "
                "pass --overwrite_output_dir"
            )
        return output_dir
    name = Path(str(args.model_name_or_path).rstrip("/")).name
    return Path("outputs") / "zero-shot" / f"{name}-{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_args(args: ZeroShotArguments) -> str:
    if not args.model_name_or_path:
        raise ValueError("--model_name_or_path is required: an X-CLIP, CLIP or SigLIP Hub id or folder")
    family = foundation_family(args.model_name_or_path)
    if family is None:
        raise ValueError(
            f"--model_name_or_path {args.model_name_or_path}: no config.json with a model_type among "
            f"{', '.join(FAMILIES)} (for hf_vssl classifiers use recipes/finetune.py)"
        )
    resolve_templates(args.prompt_templates, args.prompt_ensemble)  # bad templates fail before any data loads
    if args.eval_crops not in (1, 3):
        raise ValueError(f"--eval_crops must be 1 or 3, got {args.eval_crops}")
    if args.eval_clips < 1:
        raise ValueError(f"--eval_clips must be >= 1, got {args.eval_clips}")
    if args.frame_stride < 1:
        raise ValueError(f"--frame_stride must be >= 1, got {args.frame_stride}")
    if args.per_device_eval_batch_size < 1:
        raise ValueError(f"--per_device_eval_batch_size must be >= 1, got {args.per_device_eval_batch_size}")
    return family


def _predictions(result: EvaluationResult, class_names: list[str], k: int = 5) -> list[dict[str, Any]]:
    """One entry per scored video (left-out videos have no row), named by the result's video ids."""
    scores = result.video_scores
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices.tolist()
    return [
        {
            "video_id": video_id,
            "label": label,
            "label_name": class_names[label],
            "predicted": [class_names[i] for i in row],
            "correct": row[0] == label,
        }
        for video_id, label, row in zip(result.video_ids, result.labels.tolist(), top, strict=True)
    ]


def run_zero_shot(args: ZeroShotArguments) -> Path:
    """Evaluate ``args.model_name_or_path`` zero-shot on ``args.dataset``; write the run folder; return it."""
    family = _check_args(args)
    records, id2label, _ = load_eval_videos(
        args.dataset,
        args.dataset_root,
        args.dataset_split,
        args.fold,
        revision=args.dataset_revision,
        subset_size=args.subset_size,
        subset_seed=args.subset_seed,
        label_set=args.label_set,
    )
    class_names = dataset_class_names(
        args,
        id2label if isinstance(records, ShardSplit) else records,
        dataset=args.dataset,
        dataset_root=args.dataset_root,
        fold=args.fold,
        label_set=args.label_set,
    )
    output_dir = _output_dir(args)
    accelerator = Accelerator(mixed_precision="bf16" if args.bf16 else "no")
    classifier = build_zero_shot_classifier(
        args, args.model_name_or_path, class_names, device=accelerator.device
    )
    compile_in_place(classifier, args.torch_compile, args.torch_compile_mode)
    dataset = build_eval_dataset(
        records,
        classifier.num_frames,
        classifier.image_size,
        args.frame_stride,
        args.eval_clips,
        args.eval_crops,
        seed=args.seed,
    )
    result = evaluate_classifier(
        classifier,
        dataset,
        batch_size=args.per_device_eval_batch_size,
        num_workers=args.dataloader_num_workers,
        accelerator=accelerator,
        desc="zero-shot",
    )
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        label_set = (args.label_set or "motion") if args.dataset == "synthetic" else None
        metrics = {
            "task": "video-classification",
            "mode": "zero_shot",
            "dataset": args.dataset,
            "dataset_split": args.dataset_split,
            "fold": args.fold,
            "label_set": label_set,
            "base_model": args.model_name_or_path,
            "results": result.results(),
            "num_videos": result.num_videos,
            "num_views": result.num_views,
            "evaluation": {
                "num_clips": args.eval_clips,
                "num_crops": args.eval_crops,
                "num_frames": classifier.num_frames,
                "image_size": classifier.image_size,
                "frame_stride": args.frame_stride,
                "subset_size": args.subset_size,
                "precision": accelerator.mixed_precision,
            },
            "zero_shot": {"family": family, "templates": classifier.templates, "class_names": class_names},
        }
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        predictions = _predictions(result, class_names)
        (output_dir / "predictions.json").write_text(json.dumps(predictions, indent=1) + "\n")
        save_args(args, output_dir / "zero_shot_args.yaml")
        write_zero_shot_card(output_dir)
        summary = ", ".join(f"{key} {100 * value:.1f}" for key, value in result.results().items())
        accelerator.print(
            f"zero-shot {args.model_name_or_path} on {args.dataset} {args.dataset_split}: {summary}"
        )
        accelerator.print(f"wrote metrics.json, predictions.json and README.md to {output_dir}")
    accelerator.wait_for_everyone()
    return output_dir
