"""Pieces every training loop of hf_vssl shares: the NaN guard and the plain-text log."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from accelerate import Accelerator

from hf_vssl.data.subsets import save_subset
from hf_vssl.training.arguments import save_args
from hf_vssl.training.checkpointing import (
    acquire_output_lock,
    load_checkpoint,
    prune_checkpoints,
    refuse_foreign_checkpoints,
    resolve_checkpoint,
    truncate_log,
    write_checkpoint,
)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


def raise_if_nonfinite(accelerator: Accelerator, nonfinite: torch.Tensor, step: int, output_dir: Path) -> None:
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


def start_or_resume(accelerator: Accelerator, args, output_dir: Path, records, run_name: str) -> tuple[int, int, int]:
    """Lock the output folder, write the run's arguments and data ids, restore the checkpoint to
    resume from (if asked), start trackers.

    The main process takes the exclusive lock of ``output_dir`` (a second live run refuses) and
    refuses a fresh run into a folder holding another run's checkpoints unless
    ``--overwrite_output_dir``. ``--resume_from_checkpoint latest`` takes the newest checkpoint
    that is complete and loads (skipping broken ones with a warning); nothing is unpickled.
    ``records`` (the training videos) go to ``subset_ids.json`` unless ``None``.
    Returns ``(global_step, epoch, batches_to_skip)``: where the loop continues. ``args`` is a
    recipe's arguments dataclass (``resume_from_checkpoint``, ``overwrite_output_dir``,
    ``gradient_accumulation_steps``, ``subset_seed``, ``report_to``, ``bf16``).
    """
    resume = args.resume_from_checkpoint
    if accelerator.is_main_process:
        acquire_output_lock(output_dir)
        refuse_foreign_checkpoints(output_dir, resume, getattr(args, "overwrite_output_dir", False))
    accelerator.wait_for_everyone()
    resume_path, contents = resolve_checkpoint(output_dir, resume)
    global_step, epoch, skip_batches = 0, 0, 0
    if contents is not None:
        state = load_checkpoint(accelerator, contents)
        global_step, epoch = state["global_step"], state["epoch"]
        skip_batches = state["step_in_epoch"] * args.gradient_accumulation_steps
        accelerator.print(f"resuming from {resume_path} at step {global_step}")
    elif resume:
        accelerator.print(f"no checkpoint in {output_dir} yet: starting from scratch")
    if accelerator.is_main_process:
        # The precision actually used is recorded, whoever chose it (flag, launcher or config).
        recorded = args if args.bf16 is not None else replace(args, bf16=accelerator.mixed_precision == "bf16")
        save_args(recorded, output_dir / "training_args.yaml")
        if records is not None:
            save_subset(records, output_dir / "subset_ids.json", seed=args.subset_seed)
        truncate_log(output_dir / "log_history.jsonl", global_step)  # a resumed run logs those steps again
    if accelerator.is_main_process and args.report_to != "none":
        accelerator.init_trackers(
            run_name, config={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        )
    return global_step, epoch, skip_batches


def save_checkpoint(accelerator: Accelerator, output_dir: Path, *, global_step: int, epoch: int,
                    step_in_epoch: int, steps_per_epoch: int, keep: int | None) -> Path:
    """Write ``checkpoints/checkpoint-<step>`` without pickle (models and tensors in safetensors,
    the rest in JSON, see :mod:`hf_vssl.training.checkpointing`), renamed into place when complete,
    then prune to the newest ``keep``. Every process calls this."""
    path = write_checkpoint(accelerator, output_dir, {"global_step": global_step, "epoch": epoch,
                                                      "step_in_epoch": step_in_epoch,
                                                      "steps_per_epoch": steps_per_epoch})
    if accelerator.is_main_process:
        prune_checkpoints(output_dir, keep)
    accelerator.wait_for_everyone()
    return path


def prepare_training(accelerator: Accelerator, args, model, optimizer, dataloader):
    """channels_last_3d (when asked), ``accelerator.prepare``, and the step budget and schedule.

    Returns ``(model, optimizer, dataloader, scheduler, steps_per_epoch, total_steps)``;
    ``total_steps`` is ``args.max_steps`` when positive, else ``num_train_epochs`` worth of
    optimiser steps. The scheduler is registered for checkpointing.
    """
    import math

    from hf_vssl.training.optim import build_scheduler

    if args.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    steps_per_epoch = len(dataloader) // args.gradient_accumulation_steps
    if steps_per_epoch < 1:
        raise ValueError("fewer batches than gradient_accumulation_steps: nothing to train")
    total_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * steps_per_epoch)
    scheduler = build_scheduler(optimizer, args.lr_scheduler_type, total_steps, args.warmup_ratio)
    accelerator.register_for_checkpointing(scheduler)
    return model, optimizer, dataloader, scheduler, steps_per_epoch, total_steps
