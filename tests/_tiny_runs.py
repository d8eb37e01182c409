"""The tiny pretraining run several test modules start from (shared, so its flags live in one place)."""

from __future__ import annotations

from pathlib import Path

from hf_vssl.training.arguments import parse_args
from hf_vssl.training.pretraining import PretrainingArguments, run_pretraining

#: A 1/8-width R(2+1)D on 8x32x32 clips, batch 4, no workers, no trackers: seconds per step on a CPU.
TINY_PRETRAINING_FLAGS = [
    "--backbone", "r21d", "--width_multiplier", "0.125", "--num_frames", "8", "--image_size", "32",
    "--per_device_train_batch_size", "4", "--dataloader_num_workers", "0", "--report_to", "none",
]  # fmt: skip


def tiny_pretraining(
    output_dir: Path, dataset_root: Path, *extra: str, task: str = "rotnet", max_steps: int = 2
) -> Path:
    """Pretrain ``task`` for ``max_steps`` on ``dataset_root`` into ``output_dir``; ``extra`` flags win."""
    flags = [*TINY_PRETRAINING_FLAGS, "--pretext_task", task, "--max_steps", str(max_steps)]
    flags += ["--dataset_root", str(dataset_root), "--output_dir", str(output_dir), *extra]
    return run_pretraining(parse_args(PretrainingArguments, flags))
