"""The pretraining loop behind ``accelerate launch recipes/pretrain.py``.

Reads top to bottom: arguments, data, model, optimiser, loop, export. One process, or many under
``accelerate launch`` (the map-style dataset is sharded by Accelerate's seedable sampler; every
sample is a function of ``(seed, epoch, index)``, so a resumed run sees exactly the data and
augmentations of an uninterrupted one).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from hf_vssl.data.batch_augment import train_transforms
from hf_vssl.data.datasets import VideoClipDataset, collate_clips
from hf_vssl.models import VSSLConfig, VSSLVideoProcessor
from hf_vssl.pretext.modeling import VSSLForPretraining
from hf_vssl.training.arguments import LoopArguments, mixed_precision_for, parse_json_option
from hf_vssl.training.data import load_records, output_name, resolve_output_dir, shortest_video
from hf_vssl.training.loop import (
    NonFiniteLossError,  # noqa: F401 (re-exported for callers and tests)
    append_log,
    prepare_training,
    raise_if_nonfinite,
    save_checkpoint,
    start_or_resume,
)
from hf_vssl.training.optim import build_optimizer, resolve_optimizer_settings

logger = logging.getLogger(__name__)


@dataclass
class PretrainingArguments(LoopArguments):
    """Settings of a pretraining run. Defaults: the CPU demo (RSPNet, 1/4-width R21D, 8x56x56 clips)."""

    learning_rate: float | None = field(default=None, metadata={
        "help": "default: the task's own, scaled linearly to the total batch from its reference batch"})

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
    transform_preset: str | None = field(default=None, metadata={
        "help": "override the task's clip augmentation (a name from hf_vssl.data.transforms.TRANSFORM_PRESETS; "
                "'eval' = resize + center crop only)"})
    dataset: str = field(
        default="synthetic",
        metadata={"help": "ucf101, hmdb51, kinetics400, ssv2, diving48, videofolder or synthetic"},
    )
    dataset_root: str | None = field(default=None, metadata={"help": "dataset folder (synthetic: built in)"})
    dataset_split: str = field(default="train", metadata={"help": "split of --dataset to pretrain on"})
    fold: int = field(default=1, metadata={"help": "official fold (UCF101 / HMDB51: 1-3)"})
    label_set: str | None = field(
        default=None, metadata={"help": "synthetic corpus only: motion or appearance"}
    )
    subset_size: int | None = field(
        default=None, metadata={"help": "class-balanced nested subset of this size"}
    )
    subset_seed: int = field(default=0, metadata={"help": "seed of the class-balanced subset"})
    num_train_epochs: float = field(default=20.0, metadata={
        "help": "passes over the training videos (used when --max_steps is not given)"})


def fit_queue_to_data(task: str, pretext_config: dict | None, num_videos: int) -> dict | None:
    """Cap a MoCo-style feature queue that is larger than half the training videos (with a warning).

    The study's queues (16384 for RSPNet, 500 for TDL) assume tens of thousands of videos. A
    queue holding more keys than there are videos fills with stale keys of each query's own
    video, which then count as negatives and stop instance discrimination from learning. An
    explicit ``queue_size`` in ``--pretext_config`` is never changed.
    """
    from hf_vssl.pretext.registry import default_pretext_config

    defaults = default_pretext_config(task)
    if "queue_size" not in defaults or (pretext_config and "queue_size" in pretext_config):
        return pretext_config
    limit = max(1, num_videos // 2)
    if defaults["queue_size"] <= limit:
        return pretext_config
    capped = 1 << (limit.bit_length() - 1)  # largest power of two <= limit
    logger.warning(
        "%s: the default queue of %d keys exceeds half of the %d training videos; using %d "
        "(set --pretext_config '{\"queue_size\": N}' to choose).", task, defaults["queue_size"], num_videos, capped,
    )
    return {**(pretext_config or {}), "queue_size": capped}


def run_pretraining(args: PretrainingArguments) -> Path:
    """Run the pretraining described by ``args``; return the output folder."""
    name = output_name(
        args.pretext_task,
        args.backbone,
        args.dataset,
        args.subset_size if args.dataset != "synthetic" else None,
    )
    output_dir = resolve_output_dir(args.output_dir, name)
    accelerator = Accelerator(
        mixed_precision=mixed_precision_for(args),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / "logs")
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        step_scheduler_with_optimizer=False,
    )
    set_seed(args.seed)

    # -- data (refuse impossible settings before anything runs) --------------------------------
    records = load_records(
        args.dataset,
        args.dataset_root,
        args.dataset_split,
        args.fold,
        subset_size=args.subset_size,
        subset_seed=args.subset_seed,
        label_set=args.label_set,
    )
    # -- model (its queue sized for the data) -------------------------------------------------
    pretext_config = fit_queue_to_data(
        args.pretext_task, parse_json_option(args.pretext_config, "pretext_config"), len(records)
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
    config.pretext_config = model.pretext.settings.to_dict()  # record the resolved settings

    video_frames, video_path = shortest_video(records)
    try:
        model.validate(video_frames, num_frames=args.num_frames, stride=args.frame_stride)
    except ValueError as error:
        raise ValueError(f"{error} (shortest video probed: {video_path})") from None
    transform, device_augment = train_transforms(
        args.transform_preset or model.transform_preset, args.image_size, args.augment_on, accelerator.device,
        seed=args.seed, process_index=accelerator.process_index,
    )
    dataset = VideoClipDataset(
        records,
        model.sampler(args.num_frames, args.frame_stride),
        transform=transform,
        seed=args.seed,
        max_bad_fraction=args.max_bad_fraction,
    )
    if len(dataset) < args.per_device_train_batch_size * accelerator.num_processes:
        raise ValueError(
            f"{len(dataset)} videos cannot fill one batch of "
            f"{args.per_device_train_batch_size} x {accelerator.num_processes} processes"
        )
    dataloader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.per_device_train_batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=collate_clips,
        num_workers=args.dataloader_num_workers,
        persistent_workers=args.dataloader_num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )

    # -- optimiser and schedule ----------------------------------------------------------------
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
    model, optimizer, dataloader, scheduler, steps_per_epoch, total_steps = prepare_training(
        accelerator, args, model, optimizer, dataloader
    )

    # -- outputs and resume ------------------------------------------------------------------
    global_step, start_epoch, skip_batches = start_or_resume(accelerator, args, output_dir, records, name)

    # -- loop ----------------------------------------------------------------------------------
    unwrapped = accelerator.unwrap_model(model)
    num_clips = unwrapped.num_clips
    progress = tqdm(
        total=total_steps,
        initial=global_step,
        desc=f"pretrain {name}",
        disable=not accelerator.is_local_main_process,
        dynamic_ncols=True,
    )
    nonfinite = torch.zeros((), device=accelerator.device)
    sums: dict[str, torch.Tensor] = {}
    window_start, window_clips, window_batches = time.perf_counter(), 0, 0
    epoch = start_epoch
    model.train()
    while global_step < total_steps:
        dataset.set_epoch(epoch)
        dataloader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(dataloader, skip_batches) if skip_batches else dataloader
        step_in_epoch = skip_batches // args.gradient_accumulation_steps
        first_batch, skip_batches = skip_batches, 0
        for batch_index, batch in enumerate(batches, start=first_batch):
            with accelerator.accumulate(model):
                pixel_values = batch.pop("pixel_values")
                if device_augment is not None:  # --augment_on device: uint8 batch -> augmented float
                    pixel_values = device_augment(pixel_values, epoch, batch_index)
                info = {
                    k: v
                    for k, v in batch.items()
                    if isinstance(v, torch.Tensor) and k not in ("labels", "index")
                }
                output = model(pixel_values=pixel_values, **info)
                loss = output.loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            # Book-keeping stays on the device: no host sync until a logging/saving boundary.
            detached = loss.detach()
            nonfinite = nonfinite + (~torch.isfinite(detached)).float()
            for key, value in {"loss": detached, **output.metrics}.items():
                sums[key] = sums.get(key, 0) + value.detach().float()
            window_clips += pixel_values.shape[0] * num_clips * accelerator.num_processes
            window_batches += 1
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            global_step += 1
            step_in_epoch += 1
            progress.update(1)
            at_log = global_step % args.logging_steps == 0 or global_step == total_steps
            at_save = global_step % args.save_steps == 0 or global_step == total_steps
            if at_log or at_save:
                raise_if_nonfinite(accelerator, nonfinite, global_step, output_dir)
            if at_log:
                logs = {k: (accelerator.reduce(v, "mean") / window_batches).item() for k, v in sums.items()}
                elapsed = time.perf_counter() - window_start
                logs.update(
                    lr=scheduler.get_last_lr()[0],
                    clips_per_second=window_clips / max(elapsed, 1e-9),
                    epoch=epoch + step_in_epoch / steps_per_epoch,
                )
                accelerator.log(logs, step=global_step)
                progress.set_postfix(
                    loss=f"{logs['loss']:.3f}",
                    acc=f"{logs.get('accuracy', float('nan')):.3f}",
                    clips_s=f"{logs['clips_per_second']:.1f}",
                )
                append_log(accelerator, output_dir, {"step": global_step, **logs})
                sums, window_start, window_clips, window_batches = {}, time.perf_counter(), 0, 0
            if at_save:
                save_checkpoint(accelerator, output_dir, global_step=global_step, epoch=epoch, step_in_epoch=step_in_epoch,
                                steps_per_epoch=steps_per_epoch, keep=args.save_total_limit)
            if global_step >= total_steps:
                break
        else:
            epoch += 1
            continue
        break
    progress.close()

    # -- export --------------------------------------------------------------------------------
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(output_dir)
        VSSLVideoProcessor.for_clip(args.num_frames, args.image_size, args.frame_stride).save_pretrained(
            output_dir
        )
        accelerator.print(f"saved pretrained model to {output_dir}")
    for tracker in accelerator.trackers:  # not end_training(): the caller owns the process group
        tracker.finish()
    if args.push_to_hub and accelerator.is_main_process:
        from hf_vssl.hub import publish, repo_name

        publish(output_dir, args.hub_model_id or repo_name(args.pretext_task, args.backbone, args.dataset,
                                                           args.subset_size))
    return output_dir
