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
