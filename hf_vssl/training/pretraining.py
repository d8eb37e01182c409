"""Pretraining behind ``accelerate launch recipes/pretrain.py``: a backbone plus one pretext task.

Reads top to bottom: arguments, data, model, optimiser; the loop is :func:`hf_vssl.training.loop.train`. One process, or many under
``accelerate launch`` (the map-style dataset of a source is sharded by Accelerate's seedable
sampler; shards named by ``--dataset`` are streamed, split by rank and DataLoader worker; every
sample is a function of ``(seed, epoch, video)``, so a resumed run sees exactly the data and
augmentations of an uninterrupted one, see ``docs/streaming.md``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from hf_vssl.data.batch_augment import train_transforms
from hf_vssl.data.dataset_argument import parse_dataset_argument
from hf_vssl.data.datasets import collate_clips
from hf_vssl.data.loading import probe_lengths
from hf_vssl.data.training_data import dataset_name, open_training_videos
from hf_vssl.hub import repo_name
from hf_vssl.models import VSSLConfig, VSSLVideoProcessor
from hf_vssl.pretext.modeling import VSSLForPretraining
from hf_vssl.pretext.registry import get_pretext_task_class
from hf_vssl.training.arguments import LoopArguments, TrainingDataArguments, parse_json_option
from hf_vssl.training.loop import (
    NonFiniteLossError,  # noqa: F401 (re-exported for callers and tests)
    TrainingJob,
    build_accelerator,
    build_train_data,
    save_trained_model,
    train,
)
from hf_vssl.training.optim import build_optimizer, resolve_optimizer_settings
from hf_vssl.utils.naming import output_name, resolve_output_dir

logger = logging.getLogger(__name__)


@dataclass
class PretrainingArguments(TrainingDataArguments, LoopArguments):
    """Settings of a pretraining run. Defaults: the CPU demo (RSPNet, 1/4-width R21D, 8x56x56 clips)."""

    learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "default: the task's own, scaled linearly to the total batch from its reference batch"
        },
    )

    config: str | None = field(
        default=None, metadata={"help": "YAML file of these arguments (CLI flags win)"}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "default: outputs/{task}-{backbone}-{dataset}"}
    )
    pretext_task: str = field(default="rspnet", metadata={"help": "rotnet, cvrl, vcop, tdl, prp or rspnet"})
    pretext_config: str | None = field(
        default=None, metadata={"help": "JSON object overriding task settings"}
    )
    backbone: str = field(default="r21d", metadata={"help": "a name from hf_vssl.list_backbones()"})
    width_multiplier: float = field(
        default=0.25, metadata={"help": "channel scale of CNN backbones (1.0 = study)"}
    )
    num_frames: int = field(default=8, metadata={"help": "frames per clip (the study: 16)"})
    image_size: int = field(default=56, metadata={"help": "crop size (the study: 112)"})
    frame_stride: int = field(default=1, metadata={"help": "base temporal stride of clips"})
    transform_preset: str | None = field(
        default=None,
        metadata={
            "help": "override the task's clip augmentation (a name from hf_vssl.data.transforms.TRANSFORM_PRESETS; "
            "'eval' = resize + center crop only)"
        },
    )
    num_train_epochs: float = field(
        default=20.0,
        metadata={"help": "passes over the training videos (used when --max_steps is not given)"},
    )


def _pretext_step(model: nn.Module, batch: dict, generator: torch.Generator):
    """One micro-batch: the task's loss and metrics; the sampler's labels ride along as tensors."""
    info = {
        k: v
        for k, v in batch.items()
        if isinstance(v, torch.Tensor) and k not in ("pixel_values", "labels", "index")
    }
    output = model(pixel_values=batch["pixel_values"], generator=generator, **info)
    return output.loss, output.metrics


def pretraining_provenance(args: PretrainingArguments, config: VSSLConfig, global_step: int) -> dict:
    """The pretraining stage of a checkpoint's ``config.provenance`` (kept by every finetune on top)."""
    return {
        "stage": "pretraining",
        "pretext_task": config.pretext_task,
        "pretext_config": config.pretext_config,
        "dataset": args.dataset,
        "dataset_revision": args.dataset_revision,
        "dataset_split": args.dataset_split,
        "fold": args.fold,
        "subset_size": args.subset_size,
        "subset_seed": args.subset_seed,
        "steps": int(global_step),
        "backbone": config.backbone,
        "width_multiplier": config.width_multiplier,
    }


def check_video_lengths(model: VSSLForPretraining, records, args: PretrainingArguments) -> None:
    """The start-up length check of the task's settings, by ``--short_video``: ``refuse`` stops on
    the shortest probed video; ``skip`` only when even the longest is too short (every video
    would be skipped); ``loop`` / ``pad`` fit any video, so nothing is probed. Otherwise each
    video is handled as it is read (streamed shards: always, as nothing is probed before)."""
    if args.short_video not in ("refuse", "skip") or records is None:
        return
    lengths = probe_lengths(records)
    frames, path = min(lengths) if args.short_video == "refuse" else max(lengths)
    try:
        model.validate(frames, num_frames=args.num_frames, stride=args.frame_stride)
    except ValueError as error:
        probed = "shortest video probed" if args.short_video == "refuse" else "longest of the videos probed"
        raise ValueError(f"{error} ({probed}: {path}; --short_video {args.short_video})") from None


def run_pretraining(args: PretrainingArguments) -> Path:
    """Run the pretraining described by ``args``; return the output folder."""
    argument = parse_dataset_argument(args.dataset, args.dataset_root, args.dataset_revision)
    name = output_name(
        args.pretext_task,
        args.backbone,
        dataset_name(argument),
        args.subset_size if args.dataset != "synthetic" else None,
    )
    output_dir = resolve_output_dir(args.output_dir, name)
    accelerator = build_accelerator(args, output_dir)

    # -- data (refuse impossible settings before anything runs) --------------------------------
    videos = open_training_videos(
        argument,
        args.dataset_split,
        fold=args.fold,
        subset_size=args.subset_size,
        subset_seed=args.subset_seed,
        label_set=args.label_set,
    )
    # -- model (the task fits its dataset-dependent settings, e.g. a queue, to the data) -------
    pretext_config = get_pretext_task_class(args.pretext_task).fit_to_dataset(
        parse_json_option(args.pretext_config, "pretext_config"), videos.num_videos
    )
    config = VSSLConfig(
        backbone=args.backbone,
        num_frames=args.num_frames,
        image_size=args.image_size,
        width_multiplier=args.width_multiplier,
        pretext_task=args.pretext_task,
        pretext_config=pretext_config,
    )
    model = VSSLForPretraining(config)
    check_video_lengths(model, videos.records, args)
    transform, device_augment = train_transforms(
        args.transform_preset or model.transform_preset,
        args.image_size,
        args.augment_on,
        accelerator.device,
        seed=args.seed,
        process_index=accelerator.process_index,
    )
    dataset, dataloader = build_train_data(
        videos,
        model.sampler(args.num_frames, args.frame_stride),
        transform,
        args,
        accelerator,
        collate_fn=collate_clips,  # looked up here: tests record the videos each rank reads through it
    )

    # -- optimiser -------------------------------------------------------------------------------
    optimizer_settings = resolve_optimizer_settings(
        model.pretext.optimizer_defaults,
        total_batch_size=args.per_device_train_batch_size
        * accelerator.num_processes
        * args.gradient_accumulation_steps,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
    )
    optimizer = build_optimizer(model, optimizer_settings)

    # -- the loop, then the export ---------------------------------------------------------------
    def export(trained: VSSLForPretraining, global_step: int) -> None:
        trained.config.provenance = [pretraining_provenance(args, trained.config, global_step)]
        processor = VSSLVideoProcessor.for_clip(args.num_frames, args.image_size, args.frame_stride)
        save_trained_model(accelerator, trained, processor, output_dir, "pretrained model")

    train(
        accelerator,
        args,
        output_dir,
        TrainingJob(
            name=name,
            model=model,
            optimizer=optimizer,
            dataset=dataset,
            dataloader=dataloader,
            step=_pretext_step,
            export=export,
            records=videos.records,
            device_augment=device_augment,
            clips_per_sample=model.num_clips,
            # Hub names are stricter than folder names: checked only when pushing.
            hub_repo_id=(
                repo_name(args.pretext_task, args.backbone, dataset_name(argument), args.subset_size)
                if args.push_to_hub and not args.hub_model_id
                else None
            ),
            desc=f"pretrain {name}",
            check_logs=model.pretext.check_collapse,
        ),
    )
    return output_dir
