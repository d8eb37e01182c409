"""Pieces every training loop of hf_vssl shares: the NaN guard and the plain-text log."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from accelerate import Accelerator


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
    """Write the run's arguments and data ids, restore the latest checkpoint if asked, start trackers.

    ``records`` (the training videos) go to ``subset_ids.json`` unless ``None``.
    Returns ``(global_step, epoch, batches_to_skip)``: where the loop continues. ``args`` is a
    recipe's arguments dataclass (``resume_from_checkpoint``, ``gradient_accumulation_steps``,
    ``subset_seed``, ``report_to``).
    """
    from hf_vssl.data.subsets import save_subset
    from hf_vssl.training.arguments import save_args
    from hf_vssl.training.checkpointing import read_loop_state, resolve_resume_path

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_args(args, output_dir / "training_args.yaml")
        if records is not None:
            save_subset(records, output_dir / "subset_ids.json", seed=args.subset_seed)
    global_step, epoch, skip_batches = 0, 0, 0
    resume_path = resolve_resume_path(output_dir, args.resume_from_checkpoint)
    if resume_path is not None:
        accelerator.load_state(str(resume_path))
        state = read_loop_state(resume_path)
        global_step, epoch = state["global_step"], state["epoch"]
        skip_batches = state["step_in_epoch"] * args.gradient_accumulation_steps
        accelerator.print(f"resuming from {resume_path} at step {global_step}")
    elif args.resume_from_checkpoint:
        accelerator.print(f"no checkpoint in {output_dir} yet: starting from scratch")
    if accelerator.is_main_process and args.report_to != "none":
        accelerator.init_trackers(
            run_name, config={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        )
    return global_step, epoch, skip_batches


def save_checkpoint(accelerator: Accelerator, output_dir: Path, *, global_step: int, epoch: int,
                    step_in_epoch: int, steps_per_epoch: int, keep: int | None) -> Path:
    """``accelerator.save_state`` into ``checkpoints/checkpoint-<step>``, then the loop position
    (written last: it marks the checkpoint complete), then prune to the newest ``keep``."""
    from hf_vssl.training.checkpointing import checkpoint_dir, prune_checkpoints, write_loop_state

    path = checkpoint_dir(output_dir, global_step)
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        write_loop_state(path, global_step=global_step, epoch=epoch, step_in_epoch=step_in_epoch,
                         steps_per_epoch=steps_per_epoch)
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
