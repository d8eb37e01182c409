"""The downstream loop behind ``accelerate launch recipes/finetune.py``: finetune, linear probe, retrieval.

Reads top to bottom like :mod:`hf_vssl.training.pretraining`: arguments, data (both splits
checked before anything trains), model (from a pretraining, backbone or classification
checkpoint, or random), optimiser, clip-level training loop, video-level test, export.

- ``finetune``: every weight trains; one random clip per video per epoch with the ``vcop``-style
  augmentation (resize, random crop, flip, small rotation, colour jitter).
- ``linear_probe``: the backbone is frozen *including its batch-norm statistics* (eval mode
  throughout, ``requires_grad=False``); only the classifier trains, on the eval transform.
- ``retrieval``: no training; nearest-neighbour retrieval test -> train with the backbone.

Training runs through :func:`hf_vssl.training.loop.train`; the test (and the robustness recipe)
go through :mod:`hf_vssl.evaluation`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hf_vssl.data.batch_augment import train_transforms
from hf_vssl.data.clips import UniformClipSampler
from hf_vssl.data.dataset_argument import parse_dataset_argument
from hf_vssl.data.eval_data import load_eval_videos
from hf_vssl.data.loading import merge_label_spaces
from hf_vssl.data.training_data import TrainingVideos, open_training_videos
from hf_vssl.evaluation import build_eval_dataset, evaluate_classifier, evaluate_retrieval
from hf_vssl.hub import write_model_card
from hf_vssl.models import VSSLConfig, VSSLForVideoClassification, VSSLModel, VSSLVideoProcessor
from hf_vssl.models.loading import load_checked
from hf_vssl.training.arguments import LoopArguments, save_args
from hf_vssl.training.loop import (
    NonFiniteLossError,  # noqa: F401 (re-exported for callers and tests)
    TrainingJob,
    append_log,
    build_accelerator,
    build_train_data,
    save_trained_model,
    train,
)
from hf_vssl.training.optim import build_optimizer, resolve_optimizer_settings
from hf_vssl.utils.naming import resolve_output_dir

logger = logging.getLogger(__name__)

MODES = ("finetune", "linear_probe", "retrieval")

#: Optimiser defaults per mode (SGD as in the study's finetuning; a probe on frozen features takes
#: a larger step and no weight decay).
MODE_OPTIMIZER = {
    # AdamW: at CPU-demo budgets (hundreds of steps) SGD 0.01 leaves even appearance labels at
    # chance, where AdamW 1e-3 learns (measured on the synthetic corpus, see docs/miniature_study).
    "finetune": {"optimizer": "adamw", "learning_rate": 1e-3, "weight_decay": 0.05},
    "linear_probe": {"optimizer": "sgd", "learning_rate": 0.5, "momentum": 0.9, "weight_decay": 0.0},
}


@dataclass
class FinetuningArguments(LoopArguments):
    """Settings of a downstream run. Defaults: the CPU demo (synthetic corpus, 8x56x56 clips, batch 8)."""

    learning_rate: float | None = field(
        default=None, metadata={"help": "default: 1e-3 (AdamW) to finetune, 0.5 (SGD) to probe"}
    )

    config: str | None = field(
        default=None, metadata={"help": "YAML file of these arguments (CLI flags win)"}
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "pretraining, backbone or classification checkpoint (folder or Hub id); omit for random init"
        },
    )
    init: str = field(
        default="pretrained",
        metadata={"help": "pretrained or random (random ignores the weights of --model_name_or_path)"},
    )
    mode: str = field(default="finetune", metadata={"help": "finetune, linear_probe or retrieval"})
    output_dir: str | None = field(
        default=None, metadata={"help": "default: outputs/{model}-{mode}-{dataset}"}
    )
    backbone: str | None = field(
        default=None, metadata={"help": "random init: a name from hf_vssl.list_backbones() (default r21d)"}
    )
    width_multiplier: float | None = field(
        default=None, metadata={"help": "random init: channel scale (0.25)"}
    )
    num_frames: int | None = field(
        default=None, metadata={"help": "frames per clip (default: the checkpoint's, else 8)"}
    )
    image_size: int | None = field(
        default=None, metadata={"help": "crop size (default: the checkpoint's, else 56)"}
    )
    frame_stride: int = field(default=1, metadata={"help": "temporal stride of the clips"})
    classifier_dropout: float | None = field(
        default=None, metadata={"help": "dropout before the classifier (default: the model config's)"}
    )
    dataset: str = field(
        default="synthetic",
        metadata={"help": "ucf101, hmdb51, diving48, ssv2, kinetics400, videofolder or synthetic"},
    )
    dataset_root: str | None = field(default=None, metadata={"help": "dataset folder (synthetic: built in)"})
    dataset_revision: str | None = field(
        default=None, metadata={"help": "Hub shard datasets only: the branch, tag or commit to read"}
    )
    train_split: str = field(default="train", metadata={"help": "split of --dataset to train on"})
    eval_split: str | None = field(
        default=None,
        metadata={
            "help": "split of --dataset to evaluate on (default: its labelled held-out split: val for kinetics400 "
            "and ssv2, test elsewhere)"
        },
    )
    fold: int = field(default=1, metadata={"help": "official fold (UCF101 / HMDB51: 1-3)"})
    label_set: str | None = field(
        default=None, metadata={"help": "synthetic corpus only: motion or appearance"}
    )
    subset_size: int | None = field(
        default=None, metadata={"help": "class-balanced subset of the training split"}
    )
    subset_seed: int = field(default=0, metadata={"help": "seed of the class-balanced subset"})
    per_device_eval_batch_size: int = field(
        default=8, metadata={"help": "evaluation clips per device and batch"}
    )
    warmup_ratio: float = field(
        default=0.1, metadata={"help": "fraction of the optimiser steps spent in linear warm-up"}
    )
    num_train_epochs: float = field(
        default=10.0,
        metadata={"help": "passes over the training videos (used when --max_steps is not given)"},
    )
    train_transform: str = field(
        default="eval",
        metadata={"help": "augmentation preset of finetuning (the study: resize + center crop, i.e. 'eval')"},
    )
    eval_clips: int = field(default=5, metadata={"help": "uniform clips per test video"})
    eval_crops: int = field(default=1, metadata={"help": "spatial crops per clip at test time (1 or 3)"})
    do_retrieval: bool = field(default=False, metadata={"help": "also run nearest-neighbour retrieval"})
    save_steps: int = field(
        default=100, metadata={"help": "write a resumable checkpoint every this many optimiser steps"}
    )
    save_total_limit: int = field(
        default=1, metadata={"help": "keep only the newest this many checkpoints (0: keep all)"}
    )
    short_video: str = field(
        default="loop",
        metadata={
            "help": "a video shorter than a clip: loop or pad its frames, skip it (left out of training and of the "
            "test, and reported), or refuse (stop, naming the file)"
        },
    )


# -- set-up helpers ------------------------------------------------------------------------------


def _check_args(args: FinetuningArguments) -> None:
    if args.mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, got {args.mode!r}")
    if args.init not in ("pretrained", "random"):
        raise ValueError(f"--init must be 'pretrained' or 'random', got {args.init!r}")
    if args.eval_crops not in (1, 3):
        raise ValueError(f"--eval_crops must be 1 or 3, got {args.eval_crops}")
    if args.eval_clips < 1:
        raise ValueError(f"--eval_clips must be >= 1, got {args.eval_clips}")
    if args.mode == "retrieval" and not args.model_name_or_path:
        logger.warning("--mode retrieval without --model_name_or_path scores a randomly initialised backbone")


def _default_name(args: FinetuningArguments) -> str:
    base = Path(args.model_name_or_path.rstrip("/")).name if args.model_name_or_path else "scratch"
    if args.init == "random":
        base = f"scratch-{args.backbone or 'r21d'}"
    return f"{base}-{args.mode.replace('_', '-')}-{args.dataset}"


def _source_config(args: FinetuningArguments) -> VSSLConfig | None:
    if not args.model_name_or_path:
        return None
    try:
        config = VSSLConfig.from_pretrained(args.model_name_or_path)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"--model_name_or_path {args.model_name_or_path}: not an hf_vssl checkpoint ({error})"
        ) from None
    if args.backbone and args.backbone != config.backbone:
        raise ValueError(
            f"--backbone {args.backbone} contradicts the checkpoint's backbone {config.backbone!r} "
            f"({args.model_name_or_path}); drop --backbone or use --init random"
        )
    return config


def build_classifier_config(
    args: FinetuningArguments, source: VSSLConfig | None, id2label: dict[int, str]
) -> VSSLConfig:
    """The classifier's config: the checkpoint's backbone (or ``--backbone``) with this dataset's labels.

    Raises ``ValueError`` (naming the flags) when the clip shape is one the backbone cannot take,
    or differs from a fixed-shape transformer checkpoint's.
    """
    default_frames, default_size = (source.num_frames, source.image_size) if source is not None else (8, 56)
    num_frames, image_size = args.num_frames or default_frames, args.image_size or default_size
    if (
        source is not None
        and source.backbone_spec.fixed_input_shape
        and (num_frames, image_size) != (source.num_frames, source.image_size)
    ):
        raise ValueError(
            f"backbone {source.backbone!r} has learned position embeddings for "
            f"{source.num_frames}x{source.image_size}x{source.image_size} clips; "
            f"--num_frames/--image_size cannot change them"
        )
    try:
        base = (
            source
            if source is not None
            else VSSLConfig(
                backbone=args.backbone or "r21d",
                width_multiplier=args.width_multiplier if args.width_multiplier is not None else 0.25,
            )
        )
        config = base.for_classification(id2label)
        config.num_frames, config.image_size = num_frames, image_size
        config.validate_clip_shape()
    except ValueError as error:
        raise ValueError(f"--num_frames {num_frames} / --image_size {image_size}: {error}") from None
    if args.classifier_dropout is not None:
        config.classifier_dropout = args.classifier_dropout
    return config


def load_classifier(
    args: FinetuningArguments, config: VSSLConfig, source: VSSLConfig | None
) -> VSSLForVideoClassification:
    """The classifier: checkpoint backbone (+ its head when the labels match) or random init.

    A classification checkpoint whose labels differ gets a fresh head, with a warning.
    """
    if source is None or args.init == "random":
        return VSSLForVideoClassification(config)
    path = args.model_name_or_path
    # Only the classifier head may differ from the checkpoint (other labels); any other tensor
    # of another shape means config.json and weights disagree: refused, never re-initialised.
    model, info = load_checked(VSSLForVideoClassification, path, config=config, reinit_prefix="classifier.")
    missing_backbone = [k for k in info["missing_keys"] if not k.startswith("classifier.")]
    if missing_backbone:
        raise ValueError(
            f"{path}: the checkpoint lacks {len(missing_backbone)} backbone weights "
            f"(e.g. {missing_backbone[:3]}); is it an hf_vssl {config.backbone} checkpoint?"
        )
    had_head = "VSSLForVideoClassification" in (source.architectures or [])
    if had_head:
        old = {int(k): v for k, v in (source.id2label or {}).items()}
        if old != config.id2label:
            # A head of the same size but other classes is as wrong as one of another size.
            model._init_weights(model.classifier)
            logger.warning(
                "%s has a classification head for %d labels (%s...) but %s has %d (%s...): the head is "
                "replaced by a freshly initialised one",
                path,
                source.num_labels,
                list(old.values())[:3],
                args.dataset,
                config.num_labels,
                list(config.id2label.values())[:3],
            )
        else:
            logger.info("reusing the classification head of %s (same %d labels)", path, config.num_labels)
    else:
        logger.info("loaded the backbone of %s (%s); the classifier starts fresh", path, source.architectures)
    return model


def _probe_forward(model: VSSLForVideoClassification, config: VSSLConfig) -> None:
    """One tiny forward so an input the backbone cannot take fails now, not after data loading."""
    dummy = torch.zeros(1, config.num_frames, config.num_channels, config.image_size, config.image_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(pixel_values=dummy)
    except RuntimeError as error:
        raise ValueError(
            f"backbone {config.backbone!r} cannot take {config.num_frames}x{config.image_size}x"
            f"{config.image_size} clips: {error}"
        ) from None
    finally:
        model.train(was_training)


def freeze_backbone(model: VSSLForVideoClassification) -> None:
    """Linear probe: no gradients into the backbone, and its batch-norm statistics frozen (eval mode)."""
    model.vssl.requires_grad_(False)
    model.vssl.eval()


def finetune_train_data(args: FinetuningArguments, accelerator, config: VSSLConfig, videos: TrainingVideos):
    """``(dataset, loader, device_augment)`` of the training split: one random clip per video
    (a record list, or streamed shards), augmented unless probing; the batch is lowered to what
    the split can fill on every process."""
    linear_probe = args.mode == "linear_probe"
    sampler = UniformClipSampler(
        config.num_frames, args.frame_stride, num_clips=1, mode="random", short_video="error"
    )  # the dataset applies --short_video per video
    transform, device_augment = train_transforms(
        args.train_transform,
        config.image_size,
        args.augment_on,
        accelerator.device,
        train=not linear_probe,
        seed=args.seed,
        process_index=accelerator.process_index,
    )
    batch_size = min(args.per_device_train_batch_size, videos.num_videos // accelerator.num_processes)
    if batch_size < 1:
        raise ValueError(
            f"{videos.num_videos} training videos cannot feed {accelerator.num_processes} processes"
        )
    if batch_size < args.per_device_train_batch_size:
        logger.warning("only %d training videos: batch size lowered to %d", videos.num_videos, batch_size)
    dataset, dataloader = build_train_data(
        videos, sampler, transform, args, accelerator, batch_size=batch_size
    )
    return dataset, dataloader, device_augment


# -- the run -----------------------------------------------------------------------------------


def run_finetuning(args: FinetuningArguments) -> Path:
    """Run the downstream job described by ``args``; return the output folder.

    Writes into the output folder: the ``VSSLForVideoClassification`` checkpoint and its
    ``VSSLVideoProcessor``, ``metrics.json``, ``log_history.jsonl``, ``training_args.yaml`` and the
    model card (``--mode retrieval`` writes ``retrieval.json`` only).
    """
    _check_args(args)
    output_dir = resolve_output_dir(args.output_dir, _default_name(args))
    accelerator = build_accelerator(args, output_dir, log=args.mode != "retrieval")

    # -- data: both splits must exist before anything trains ----------------------------------
    # Both splits need labels (an unlabelled one is refused in one line); the label space is the
    # source's own (e.g. UCF101's 101 classes of classInd.txt), not the labels a copy happens to hold.
    label_set = args.label_set if args.dataset == "synthetic" else None
    # Evaluation reads records or a streamed shard split alike (hf_vssl.data.eval_data).
    data = {"revision": args.dataset_revision, "label_set": label_set}
    test_videos, test_labels, eval_split = load_eval_videos(
        args.dataset, args.dataset_root, args.eval_split, args.fold, **data
    )

    def gallery():  # retrieval's gallery: the (subset of the) train split, as evaluation videos
        subset = {"subset_size": args.subset_size, "subset_seed": args.subset_seed}
        return load_eval_videos(
            args.dataset, args.dataset_root, args.train_split, args.fold, **data, **subset
        )

    if args.mode == "retrieval":  # the train split is only the gallery
        train_records, train_labels, _ = gallery()
    else:
        train_videos = open_training_videos(
            parse_dataset_argument(args.dataset, args.dataset_root, args.dataset_revision),
            args.train_split,
            fold=args.fold,
            subset_size=args.subset_size,
            subset_seed=args.subset_seed,
            label_set=label_set,
            labelled=True,
        )
        train_labels = train_videos.id2label
    id2label = merge_label_spaces(train_labels, test_labels)

    # -- model ----------------------------------------------------------------------------------
    source = _source_config(args)
    config = build_classifier_config(args, source, id2label)
    config.provenance = finetune_provenance(args, source, eval_split)
    model = load_classifier(args, config, source)
    _probe_forward(model, config)
    processor = VSSLVideoProcessor.for_clip(config.num_frames, config.image_size, args.frame_stride)
    eval_kwargs = {"batch_size": args.per_device_eval_batch_size, "num_workers": args.dataloader_num_workers}

    def eval_dataset(videos):
        return build_eval_dataset(
            videos,
            config.num_frames,
            config.image_size,
            args.frame_stride,
            args.eval_clips,
            args.eval_crops,
            seed=args.seed,
            max_bad_fraction=args.max_bad_fraction,
            short_video=args.short_video,
        )

    if args.mode == "retrieval":
        return _run_retrieval_only(
            args,
            accelerator,
            model,
            eval_dataset(train_records),
            eval_dataset(test_videos),
            output_dir,
            eval_kwargs,
            eval_split,
        )

    linear_probe = args.mode == "linear_probe"
    if linear_probe:
        freeze_backbone(model)
    dataset, dataloader, device_augment = finetune_train_data(args, accelerator, config, train_videos)

    # -- optimiser -------------------------------------------------------------------------------
    settings = resolve_optimizer_settings(
        MODE_OPTIMIZER[args.mode],
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
    )
    optimizer = build_optimizer(model, settings)

    # -- the loop (clip-level training), then the video-level test and the export ----------------
    def export(trained: VSSLForVideoClassification, global_step: int) -> None:
        # The model first: a failure in the test below loses no training.
        save_trained_model(accelerator, trained, processor, output_dir, f"the {args.mode} classifier")
        accelerator.wait_for_everyone()
        result = evaluate_classifier(
            trained,
            eval_dataset(test_videos),
            accelerator=accelerator,
            desc=f"test {args.eval_clips} clips x {args.eval_crops} crops",
            **eval_kwargs,
        )
        accelerator.print(
            f"test: clip top-1 {result.clip_top1:.3f} top-5 {result.clip_top5:.3f} | "
            f"video top-1 {result.video_top1:.3f} top-5 {result.video_top5:.3f} "
            f"({result.num_videos} videos)"
        )
        retrieval = None
        if args.do_retrieval:
            retrieval = evaluate_retrieval(
                trained.vssl,
                eval_dataset(gallery()[0]),
                eval_dataset(test_videos),
                accelerator=accelerator,
                **eval_kwargs,
            )
            accelerator.print("retrieval: " + ", ".join(f"{k} {v:.3f}" for k, v in retrieval.items()))
        append_log(
            accelerator,
            output_dir,
            {"step": global_step, **{f"eval_{k}": v for k, v in result.results().items()}},
        )
        if accelerator.is_main_process:
            metrics = _metrics_json(args, config, result, retrieval, label_set, eval_split)
            (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
            write_model_card(output_dir)
            accelerator.print(f"saved metrics.json and the model card to {output_dir}")
        accelerator.wait_for_everyone()

    def train_mode(prepared: nn.Module) -> None:
        prepared.train()
        if linear_probe:  # .train() would resume updating the frozen backbone's batch-norm statistics
            accelerator.unwrap_model(prepared).vssl.eval()

    train(
        accelerator,
        args,
        output_dir,
        TrainingJob(
            name=output_dir.name,
            model=model,
            optimizer=optimizer,
            dataset=dataset,
            dataloader=dataloader,
            step=_classification_step,
            export=export,
            device_augment=device_augment,
            train_mode=train_mode,
            desc=f"{args.mode} {output_dir.name}",
        ),
    )
    return output_dir


def _classification_step(model: nn.Module, batch: dict, generator: torch.Generator):
    """One micro-batch of clip-level training: cross-entropy and accuracy (on the device)."""
    output = model(pixel_values=batch["pixel_values"], labels=batch["labels"])
    accuracy = (output.logits.detach().argmax(-1) == batch["labels"]).float().mean()
    return output.loss, {"accuracy": accuracy}


def _run_retrieval_only(
    args, accelerator, model, train_dataset, test_dataset, output_dir, eval_kwargs, eval_split: str
) -> Path:
    backbone: VSSLModel = model.vssl.to(accelerator.device)
    retrieval, skipped = evaluate_retrieval(
        backbone, train_dataset, test_dataset, accelerator=accelerator, return_skipped=True, **eval_kwargs
    )
    accelerator.print("retrieval: " + ", ".join(f"{k} {v:.3f}" for k, v in retrieval.items()))
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_args(args, output_dir / "training_args.yaml")
        report = {
            "task": "video-retrieval",
            "dataset": args.dataset,
            "dataset_split": eval_split,
            "gallery_split": args.train_split,
            "fold": args.fold,
            "label_set": args.label_set if args.dataset == "synthetic" else None,
            "base_model": args.model_name_or_path,
            "num_clips": args.eval_clips,
            "retrieval": retrieval,
            "skipped_videos": skipped,  # left out of the gallery / the queries, with the reason
        }
        (output_dir / "retrieval.json").write_text(json.dumps(report, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return output_dir


def finetune_provenance(args: FinetuningArguments, source: VSSLConfig | None, eval_split: str) -> list[dict]:
    """The classifier's ``config.provenance``: every stage of its source checkpoint (the
    pretraining's task, settings, dataset, subset and steps; earlier finetunes), then this run.

    A source saved before provenance was recorded contributes what its config says (its pretext
    task and settings)."""
    inherited = source is not None and args.init == "pretrained"
    stages = [dict(stage) for stage in (getattr(source, "provenance", None) or [])] if inherited else []
    if inherited and not stages and source.pretext_task:
        stages.append(
            {
                "stage": "pretraining",
                "pretext_task": source.pretext_task,
                "pretext_config": source.pretext_config,
                "model": args.model_name_or_path,
            }
        )
    stages.append(
        {
            "stage": args.mode,
            "dataset": args.dataset,
            "dataset_split": args.train_split,
            "eval_split": eval_split,
            "fold": args.fold,
            "subset_size": args.subset_size,
            "max_steps": args.max_steps if args.max_steps > 0 else None,
            "num_train_epochs": float(args.num_train_epochs),
            "base_model": args.model_name_or_path if args.init == "pretrained" else None,
        }
    )
    return stages


def _metrics_json(
    args: FinetuningArguments,
    config: VSSLConfig,
    result,
    retrieval: dict | None,
    label_set: str | None,
    eval_split: str,
) -> dict[str, Any]:
    metrics = {
        "task": "video-classification",
        "dataset": args.dataset,
        "dataset_split": eval_split,
        "fold": args.fold,
        "label_set": (label_set or "motion") if args.dataset == "synthetic" else None,
        "mode": args.mode,
        "base_model": args.model_name_or_path if args.init == "pretrained" else None,
        "num_train_epochs": float(args.num_train_epochs),
        "results": result.results(),
        # Test videos left out (unreadable, or short under --short_video skip): never substituted.
        "skipped_videos": result.skipped_videos,
        # How the test was run, so the robustness recipe can repeat it exactly.
        "evaluation": {
            "num_clips": args.eval_clips,
            "num_crops": args.eval_crops,
            "num_frames": config.num_frames,
            "image_size": config.image_size,
            "frame_stride": args.frame_stride,
            "short_video": args.short_video,
        },
    }
    if args.max_steps > 0:
        metrics["max_steps"] = args.max_steps
    if retrieval is not None:
        metrics["retrieval"] = retrieval
    return metrics
