"""The one training loop of hf_vssl: pretraining, finetuning and distillation all run through :func:`train`.

A job (:class:`TrainingJob`) brings only what differs: its model, optimiser and data, a step
function ``(model, batch, generator) -> (loss, metrics)`` and its export. The loop does the rest,
the same way for every job:

- ``accelerator.prepare``, the step budget and the learning-rate schedule (:func:`prepare_training`);
  a streamed dataset's loader is a :class:`~hf_vssl.training.streamed_batches.StreamedBatches`,
  which ``prepare`` passes through untouched: the same number of steps on every rank, batches
  moved to the device by it, mid-epoch resume from the stream state saved in the checkpoint;
- per micro-batch, inside ``accelerator.accumulate``: the on-device augmentation
  (``--augment_on device``), the step function with a device ``torch.Generator`` seeded by
  ``derive_seed(seed, epoch, batch_index, process_index)``, backward, gradient clipping at the
  accumulation boundary, optimiser step;
- per optimiser step: scheduler step, progress bar (main process), and at logging / saving
  boundaries the NaN guard, the logged averages and checkpoints;
- at each epoch's end (and the run's): the bad-video tolerance on counts summed over workers and
  ranks (:func:`hf_vssl.evaluation.check_bad_videos`), the same whatever their number.

**The logged averages** (one definition for every job): each metric is summed over the
micro-batches of the logging window on the device, averaged over processes, and divided by the
number of micro-batches in the window (every step function returns the same metric names each
micro-batch). ``clips_per_second`` counts clips of all processes over the window's wall time.
Nothing is copied to the host between boundaries: no per-step host sync.

:func:`start_or_resume` and :func:`save_checkpoint` are the loop's checkpoint / resume end
points (see :mod:`hf_vssl.training.checkpointing`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch import nn
from tqdm.auto import tqdm

from hf_vssl.data.datasets import collate_clips
from hf_vssl.data.subsets import save_subset
from hf_vssl.data.training_data import TrainingVideos
from hf_vssl.evaluation import check_bad_videos
from hf_vssl.hub import publish
from hf_vssl.utils.fastpath import compile_in_place, enable_cuda_fast_path, loader_transfer_options
from hf_vssl.utils.seeding import derive_seed

from .arguments import mixed_precision_for, save_args
from .checkpointing import (
    acquire_output_lock,
    check_shared_output_dir,
    gathered_state_dict,
    load_checkpoint,
    prune_checkpoints,
    refuse_foreign_checkpoints,
    resolve_checkpoint,
    truncate_log,
    write_checkpoint,
)
from .optim import build_scheduler, use_fused_steps
from .streamed_batches import StreamedBatches, streamed_batches_per_epoch

logger = logging.getLogger(__name__)

__all__ = [
    "NonFiniteLossError",
    "StepFunction",
    "TrainingJob",
    "append_log",
    "build_accelerator",
    "build_train_data",
    "build_train_dataloader",
    "prepare_training",
    "raise_if_nonfinite",
    "save_checkpoint",
    "start_or_resume",
    "to_channels_last_3d",
    "train",
]

#: ``(prepared model, batch, generator) -> (loss, metrics)``: one micro-batch of a job. ``metrics``
#: are detached scalar tensors on the device (never ``.item()``: that would sync every step).
StepFunction = Callable[
    [nn.Module, dict[str, Any], torch.Generator], tuple[torch.Tensor, dict[str, torch.Tensor]]
]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


def raise_if_nonfinite(
    accelerator: Accelerator, nonfinite: torch.Tensor, step: int, output_dir: Path
) -> None:
    """Stop (on every rank alike) if any step since the last check had a NaN/inf loss.

    ``nonfinite`` counts such steps on the device, so the check costs one host sync per logging
    or saving boundary, not one per step; it runs before a checkpoint is written, so the last
    checkpoint on disk is always a good one.
    """
    if accelerator.reduce(nonfinite, "sum").item() > 0:
        raise NonFiniteLossError(
            f"the loss became NaN or inf before step {step}; stopping. The last good checkpoint is kept in "
            f"{output_dir / 'checkpoints'} (resume with --resume_from_checkpoint latest after lowering "
            "--learning_rate or disabling --bf16)."
        )


def append_log(accelerator: Accelerator, output_dir: Path, entry: dict) -> None:
    """Append ``entry`` to ``log_history.jsonl``: a log readable without TensorBoard (main process only)."""
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        with open(output_dir / "log_history.jsonl", "a") as handle:
            handle.write(json.dumps(entry) + "\n")


def build_accelerator(args, output_dir: Path, *, log: bool = True) -> Accelerator:
    """The run's ``Accelerator`` (bf16, accumulation, trackers unless ``log`` is False or
    ``--report_to none``, seedable sampler seeded by ``--seed``, non-blocking batch copies and
    cuDNN autotuning on CUDA), with every RNG seeded by ``--seed``."""
    accelerator = Accelerator(
        mixed_precision=mixed_precision_for(args),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=None if args.report_to == "none" or not log else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / "logs")
        ),
        # non_blocking: batches from pinned memory (loader_transfer_options) overlap their copy.
        dataloader_config=DataLoaderConfiguration(
            use_seedable_sampler=True, data_seed=args.seed, non_blocking=torch.cuda.is_available()
        ),
        step_scheduler_with_optimizer=False,
    )
    enable_cuda_fast_path(accelerator.device)
    set_seed(args.seed)
    return accelerator


def build_train_dataloader(
    dataset, args, batch_size: int, collate_fn: Callable, num_processes: int, num_videos: int | None = None
) -> torch.utils.data.DataLoader | StreamedBatches:
    """The training loader (full batches only) of a map-style or a streamed dataset.

    Map-style: a shuffled ``DataLoader`` that ``accelerator.prepare`` shards; refuses a dataset
    that cannot fill one batch on every process. Streamed (a ``torch.utils.data.IterableDataset``,
    already split by rank): :class:`~hf_vssl.training.streamed_batches.StreamedBatches`, the same
    number of micro-batches on every rank, from ``num_videos`` (the manifest's count); at most one
    DataLoader worker per shard of this rank's share (a worker without a shard reads nothing).
    """
    if isinstance(dataset, torch.utils.data.IterableDataset):
        if num_videos is None:
            raise ValueError(
                "a streamed dataset needs num_videos (the manifest's count) to fix its steps per epoch"
            )
        workers = min(args.dataloader_num_workers, dataset.num_shards)
        if workers < args.dataloader_num_workers:
            logger.info(
                "%d DataLoader workers for this rank's %d shards (--dataloader_num_workers %d)",
                workers,
                dataset.num_shards,
                args.dataloader_num_workers,
            )
        per_epoch = streamed_batches_per_epoch(
            num_videos, batch_size, num_processes, args.gradient_accumulation_steps
        )
        pin_memory = loader_transfer_options(workers)["pin_memory"]
        return StreamedBatches(dataset, batch_size, collate_fn, per_epoch, workers, pin_memory)
    if len(dataset) < batch_size * num_processes:
        raise ValueError(
            f"{len(dataset)} videos cannot fill one batch of {batch_size} x {num_processes} processes"
        )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=collate_fn,
        num_workers=args.dataloader_num_workers,
        persistent_workers=args.dataloader_num_workers > 0,
        **loader_transfer_options(args.dataloader_num_workers),
    )


def build_train_data(
    videos: TrainingVideos,
    sampler,
    transform,
    args,
    accelerator: Accelerator,
    batch_size: int | None = None,
    collate_fn: Callable = collate_clips,
):
    """``(dataset, loader)`` of a recipe's training videos: the clip dataset of ``videos``
    (streamed shards: split by this process's rank) and :func:`build_train_dataloader` over it,
    with ``args.seed``, ``--max_bad_fraction`` and ``--short_video`` (``batch_size``: default
    ``--per_device_train_batch_size``)."""
    dataset = videos.clip_dataset(
        sampler,
        transform=transform,
        seed=args.seed,
        max_bad_fraction=args.max_bad_fraction,
        short_video=args.short_video,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
    )
    loader = build_train_dataloader(
        dataset,
        args,
        batch_size or args.per_device_train_batch_size,
        collate_fn,
        accelerator.num_processes,
        num_videos=videos.num_videos,
    )
    return dataset, loader


def save_trained_model(
    accelerator: Accelerator, model: nn.Module, processor, output_dir: Path, what: str
) -> None:
    """A recipe's export: ``model`` and its video ``processor`` saved into ``output_dir`` by the main
    process. Call it on EVERY process: under FSDP the full weights are gathered collectively first."""
    state_dict = gathered_state_dict(model)
    if accelerator.is_main_process:
        model.save_pretrained(output_dir, state_dict=state_dict)
        processor.save_pretrained(output_dir)
        accelerator.print(f"saved {what} to {output_dir}")


def to_channels_last_3d(model: nn.Module) -> nn.Module:
    """Every 3D convolution's and 3D transposed convolution's weights in the channels_last_3d
    layout (in place). Only those: a model may hold 2D ones (the patch embedding of a transformer
    adapter), whose 4D weights have no 3D layout. The transposed ones are PRP's decoder: left
    contiguous, each would convert its full-resolution activations between layouts every step."""
    for module in model.modules():
        if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            module.to(memory_format=torch.channels_last_3d)
    return model


def prepare_training(accelerator: Accelerator, args, model, optimizer, dataloader):
    """channels_last_3d (when asked), ``torch.compile`` (``--torch_compile``, in place: the
    module, its checkpoints and its export keep their keys), ``accelerator.prepare``, fused
    optimiser steps on CUDA (:func:`~hf_vssl.training.optim.use_fused_steps`), and the step
    budget and schedule.

    Returns ``(model, optimizer, dataloader, scheduler, steps_per_epoch, total_steps)``;
    ``total_steps`` is ``args.max_steps`` when positive, else ``num_train_epochs`` worth of
    optimiser steps. The scheduler is registered for checkpointing.
    """
    if args.channels_last:
        to_channels_last_3d(model)
    compile_in_place(model, args.torch_compile, args.torch_compile_mode)
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    use_fused_steps(optimizer, accelerator.device)
    steps_per_epoch = len(dataloader) // args.gradient_accumulation_steps
    if steps_per_epoch < 1:
        raise ValueError("fewer batches than gradient_accumulation_steps: nothing to train")
    total_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * steps_per_epoch)
    scheduler = build_scheduler(optimizer, args.lr_scheduler_type, total_steps, args.warmup_ratio)
    accelerator.register_for_checkpointing(scheduler)
    return model, optimizer, dataloader, scheduler, steps_per_epoch, total_steps


@dataclass
class TrainingJob:
    """What one kind of run brings to :func:`train`; everything else is the shared loop.

    Attributes:
        name: run name (trackers, progress bar, default Hub repo name).
        model, optimizer, dataloader: not yet prepared by Accelerate.
        dataset: the loader's dataset; ``set_epoch(epoch)`` is called at every epoch start.
        step: :data:`StepFunction`, one micro-batch: ``batch["pixel_values"]`` is already
            augmented on the device when ``device_augment`` is set.
        export: ``(unwrapped model, global_step)``, called on every process after training (it
            writes on the main process only; it may evaluate across processes first).
        records: training videos written to ``subset_ids.json`` (``None``: no file).
        device_augment: ``(uint8 batch, epoch, batch_index) -> float batch`` or ``None``.
        clips_per_sample: clips each sample feeds the network (for ``clips_per_second``).
        train_mode: puts the prepared model in training mode (default ``model.train()``).
        hub_repo_id: repo id for ``--push_to_hub`` without ``--hub_model_id`` (default: ``name``).
        desc: progress bar label.
        check_logs: called on the main process with each window's logged averages (host floats,
            so no extra sync); a returned text is logged as a warning (a pretext task's collapse
            check, :meth:`hf_vssl.pretext.base.PretextTask.check_collapse`).
    """

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    dataset: Any
    dataloader: torch.utils.data.DataLoader
    step: StepFunction
    export: Callable[[nn.Module, int], None]
    records: Sequence | None = None
    device_augment: Callable[[torch.Tensor, int, int], torch.Tensor] | None = None
    clips_per_sample: int = 1
    train_mode: Callable[[nn.Module], None] | None = None
    hub_repo_id: str | None = None
    desc: str = "train"
    check_logs: Callable[[dict[str, float]], str | None] | None = None


class _Window:
    """Device-side sums of one logging window (see the module docstring for the averages)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.nonfinite = torch.zeros((), device=device)  # NaN/inf losses since the last check
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.micro_batches, self.clips, self.start = 0, 0, time.perf_counter()

    def add(self, loss: torch.Tensor, metrics: dict[str, torch.Tensor], clips: int) -> None:
        loss = loss.detach()
        self.nonfinite = self.nonfinite + (~torch.isfinite(loss)).float()
        for key, value in {"loss": loss, **metrics}.items():
            self.sums[key] = self.sums.get(key, 0) + value.detach().float()
        self.micro_batches += 1
        self.clips += clips

    def averages(self, accelerator: Accelerator) -> dict[str, float]:
        """The window's logged averages (one host sync) and its throughput."""
        logs = {k: (accelerator.reduce(v, "mean") / self.micro_batches).item() for k, v in self.sums.items()}
        logs["clips_per_second"] = self.clips / max(time.perf_counter() - self.start, 1e-9)
        return logs


def train(accelerator: Accelerator, args, output_dir: Path, job: TrainingJob) -> nn.Module:
    """Run ``job`` to ``args.max_steps`` (or ``num_train_epochs``), export it, push it if asked.

    ``args`` is a :class:`~hf_vssl.training.arguments.LoopArguments`. Returns the trained model
    (unwrapped from Accelerate).
    """
    model, optimizer, dataloader, scheduler, steps_per_epoch, total_steps = prepare_training(
        accelerator, args, job.model, job.optimizer, job.dataloader
    )
    global_step, epoch, skip_batches, loop_state = start_or_resume(
        accelerator, args, output_dir, job.records, job.name
    )
    streamed = isinstance(dataloader, StreamedBatches)
    if streamed:
        dataloader.device = accelerator.device
    progress = tqdm(
        total=total_steps,
        initial=global_step,
        desc=job.desc,
        disable=not accelerator.is_local_main_process,
        dynamic_ncols=True,
    )
    window = _Window(accelerator.device)
    generator = torch.Generator(device=accelerator.device)
    clips_per_micro_batch = job.clips_per_sample * accelerator.num_processes
    (job.train_mode or nn.Module.train)(model)
    while global_step < total_steps:
        job.dataset.set_epoch(epoch)
        dataloader.set_epoch(epoch)
        if streamed and skip_batches:
            ranks = (loop_state.get("stream") or {}).get("ranks")
            state = (
                ranks[accelerator.process_index]
                if ranks and len(ranks) == accelerator.num_processes
                else None
            )
            dataloader.resume(epoch, skip_batches, state)
            batches = dataloader
        elif skip_batches:
            batches = accelerator.skip_first_batches(dataloader, skip_batches)
        else:
            batches = dataloader
        step_in_epoch = skip_batches // args.gradient_accumulation_steps
        first_batch, skip_batches = skip_batches, 0
        for batch_index, batch in enumerate(batches, start=first_batch):
            with accelerator.accumulate(model):
                if job.device_augment is not None:  # --augment_on device: uint8 batch -> augmented float
                    batch["pixel_values"] = job.device_augment(batch["pixel_values"], epoch, batch_index)
                generator.manual_seed(derive_seed(args.seed, epoch, batch_index, accelerator.process_index))
                loss, metrics = job.step(model, batch, generator)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            window.add(loss, metrics, batch["pixel_values"].shape[0] * clips_per_micro_batch)
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            global_step += 1
            step_in_epoch += 1
            progress.update(1)
            at_log = global_step % args.logging_steps == 0 or global_step == total_steps
            at_save = global_step % args.save_steps == 0 or global_step == total_steps
            if at_log or at_save:
                raise_if_nonfinite(accelerator, window.nonfinite, global_step, output_dir)
            if at_log:
                logs = window.averages(accelerator)
                logs.update(lr=scheduler.get_last_lr()[0], epoch=epoch + step_in_epoch / steps_per_epoch)
                accelerator.log(logs, step=global_step)
                progress.set_postfix(
                    {k: f"{logs[k]:.4g}" for k in ("loss", "accuracy", "clips_per_second") if k in logs}
                )
                append_log(accelerator, output_dir, {"step": global_step, **logs})
                warning = job.check_logs(logs) if job.check_logs and accelerator.is_main_process else None
                if warning:
                    logger.warning("step %d: %s", global_step, warning)
                window.reset()
            if at_save:
                save_checkpoint(
                    accelerator,
                    output_dir,
                    global_step=global_step,
                    epoch=epoch,
                    step_in_epoch=step_in_epoch,
                    steps_per_epoch=steps_per_epoch,
                    keep=args.save_total_limit,
                    stream=_stream_state(accelerator, dataloader) if streamed else None,
                )
            if global_step >= total_steps:
                break
        else:
            check_bad_videos(job.dataset, accelerator)
            epoch += 1
            continue
        break
    progress.close()
    check_bad_videos(job.dataset, accelerator)

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    job.export(unwrapped, global_step)
    for tracker in accelerator.trackers:  # not end_training(): the caller owns the process group
        tracker.finish()
    if args.push_to_hub and accelerator.is_main_process:
        publish(output_dir, args.hub_model_id or job.hub_repo_id or job.name)
    return unwrapped


def _stream_state(accelerator: Accelerator, batches: StreamedBatches) -> dict:
    """Every rank's :meth:`StreamedBatches.state`, gathered for the checkpoint (a checkpoint
    boundary already syncs, so this adds no per-step sync)."""
    state = torch.tensor(batches.state(), dtype=torch.int64, device=accelerator.device)
    ranks = accelerator.gather(state).view(accelerator.num_processes, -1)
    return {"num_workers": batches.num_workers, "ranks": ranks.tolist()}


def start_or_resume(
    accelerator: Accelerator, args, output_dir: Path, records, run_name: str
) -> tuple[int, int, int, dict]:
    """Check that every process sees the same output folder, lock it, write the run's arguments
    and data ids, restore the checkpoint to resume from (if asked), start trackers.

    The main process takes the exclusive lock of ``output_dir`` (a second live run refuses) and
    refuses a fresh run into a folder holding another run's checkpoints unless
    ``--overwrite_output_dir``. ``--resume_from_checkpoint latest`` takes the newest checkpoint
    that is complete and loads (skipping broken ones with a warning); nothing is unpickled.
    ``records`` (the training videos) go to ``subset_ids.json`` unless ``None``.
    Returns ``(global_step, epoch, batches_to_skip, loop_state)``: where the loop continues, and
    the checkpoint's whole loop state (``{}`` when starting afresh). ``args`` is a
    recipe's arguments dataclass (``resume_from_checkpoint``, ``overwrite_output_dir``,
    ``gradient_accumulation_steps``, ``subset_seed``, ``report_to``, ``bf16``).
    """
    resume = args.resume_from_checkpoint
    check_shared_output_dir(accelerator, output_dir)  # several processes: one folder for all, or refuse
    if accelerator.is_main_process:
        acquire_output_lock(output_dir)
        refuse_foreign_checkpoints(output_dir, resume, getattr(args, "overwrite_output_dir", False))
    accelerator.wait_for_everyone()
    resume_path, contents = resolve_checkpoint(output_dir, resume)
    global_step, epoch, skip_batches, state = 0, 0, 0, {}
    if contents is not None:
        state = load_checkpoint(accelerator, contents)
        global_step, epoch = state["global_step"], state["epoch"]
        skip_batches = state["step_in_epoch"] * args.gradient_accumulation_steps
        accelerator.print(f"resuming from {resume_path} at step {global_step}")
    elif resume:
        accelerator.print(f"no checkpoint in {output_dir} yet: starting from scratch")
    if accelerator.is_main_process:
        # The precision actually used is recorded, whoever chose it (flag, launcher or config).
        recorded = (
            args if args.bf16 is not None else replace(args, bf16=accelerator.mixed_precision == "bf16")
        )
        save_args(recorded, output_dir / "training_args.yaml")
        if records is not None:
            save_subset(records, output_dir / "subset_ids.json", seed=args.subset_seed)
        truncate_log(output_dir / "log_history.jsonl", global_step)  # a resumed run logs those steps again
    if accelerator.is_main_process and args.report_to != "none":
        accelerator.init_trackers(
            run_name, config={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        )
    return global_step, epoch, skip_batches, state


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: Path,
    *,
    global_step: int,
    epoch: int,
    step_in_epoch: int,
    steps_per_epoch: int,
    keep: int | None,
    stream: dict | None = None,
) -> Path:
    """Write ``checkpoints/checkpoint-<step>`` without pickle (models and tensors in safetensors,
    the rest in JSON, see :mod:`hf_vssl.training.checkpointing`), renamed into place when complete,
    then prune to the newest ``keep``. ``stream``: where each rank's stream stands (see
    :mod:`hf_vssl.training.streamed_batches`). Every process calls this."""
    path = write_checkpoint(
        accelerator,
        output_dir,
        {
            "global_step": global_step,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "steps_per_epoch": steps_per_epoch,
            **({"stream": stream} if stream is not None else {}),
        },
    )
    if accelerator.is_main_process:
        prune_checkpoints(output_dir, keep)
    accelerator.wait_for_everyone()
    return path
