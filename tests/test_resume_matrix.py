"""Exact resume across tasks, precisions and DataLoader workers.

Each case trains 4 steps uninterrupted (checkpoints every 2), then goes back to checkpoint-2 as if
killed there, resumes, and requires bit-identical weights, buffers (queues, BatchNorm statistics)
and the same logged losses. Batches of 8 from the 24 training videos make 3 steps per epoch, so
every resumed run crosses an epoch boundary.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_vssl.pretext.registry import list_pretext_tasks
from hf_vssl.training.arguments import parse_args
from hf_vssl.training.distillation import DistillationArguments, run_distillation
from hf_vssl.training.pretraining import PretrainingArguments, run_pretraining

TINY = [
    "--backbone",
    "r21d",
    "--width_multiplier",
    "0.125",
    "--num_frames",
    "8",
    "--image_size",
    "32",
    "--per_device_train_batch_size",
    "8",
    "--report_to",
    "none",
    "--logging_steps",
    "1",
    "--save_steps",
    "2",
    "--save_total_limit",
    "5",
    "--max_steps",
    "4",
]
#: Run on every test session; the rest of the matrix is marked slow. RotNet draws its rotations
#: in forward (from the loop's per-step generator): the quick lane covers that path too.
QUICK = {("rspnet", "fp32", 0), ("cvrl", "bf16", 0), ("prp", "bf16", 0), ("rotnet", "bf16", 0)}


def _cases():
    for task in list_pretext_tasks():
        for precision in ("fp32", "bf16"):
            for workers in (0, 2):
                marks = [] if (task, precision, workers) in QUICK else [pytest.mark.slow]
                yield pytest.param(task, precision, workers, marks=marks, id=f"{task}-{precision}-w{workers}")


def _interrupt_and_resume(output: Path, run) -> None:
    """Compare ``output`` (an uninterrupted 4-step run) with a resume from its checkpoint-2."""
    expected = load_file(output / "model.safetensors")
    expected_logs = (output / "log_history.jsonl").read_text().splitlines()
    for path in (output / "checkpoints").iterdir():
        if path.name != "checkpoint-2":
            shutil.rmtree(path)
    (output / "model.safetensors").unlink()
    run("--resume_from_checkpoint", "latest")
    actual = load_file(output / "model.safetensors")
    assert expected.keys() == actual.keys()
    different = [key for key in expected if not torch.equal(expected[key], actual[key])]
    assert not different, f"{len(different)} tensors differ after resume, e.g. {different[:3]}"
    losses = [json.loads(line)["loss"] for line in (output / "log_history.jsonl").read_text().splitlines()]
    assert losses == [json.loads(line)["loss"] for line in expected_logs]


@pytest.mark.parametrize(("task", "precision", "workers"), list(_cases()))
def test_pretraining_resumes_exactly(task, precision, workers, tmp_path, tiny_corpus):
    def run(*extra):
        return run_pretraining(
            parse_args(
                PretrainingArguments,
                [
                    *TINY,
                    "--pretext_task",
                    task,
                    "--bf16",
                    str(precision == "bf16"),
                    "--dataloader_num_workers",
                    str(workers),
                    "--dataset_root",
                    str(tiny_corpus),
                    "--output_dir",
                    str(tmp_path / "run"),
                    *extra,
                ],
            )
        )

    run()
    _interrupt_and_resume(tmp_path / "run", run)


@pytest.fixture(scope="module")
def teacher(tiny_corpus, tmp_path_factory):
    output = tmp_path_factory.mktemp("teacher") / "rspnet"
    return run_pretraining(
        parse_args(
            PretrainingArguments,
            [
                *TINY,
                "--pretext_task",
                "rspnet",
                "--max_steps",
                "1",
                "--bf16",
                "false",
                "--dataloader_num_workers",
                "0",
                "--dataset_root",
                str(tiny_corpus),
                "--output_dir",
                str(output),
            ],
        )
    )


@pytest.mark.parametrize(
    ("precision", "workers"),
    [
        pytest.param("fp32", 0, id="fp32-w0"),
        pytest.param("bf16", 2, id="bf16-w2", marks=pytest.mark.slow),
    ],
)
def test_distillation_resumes_exactly(precision, workers, teacher, tmp_path, tiny_corpus):
    def run(*extra):
        return run_distillation(
            parse_args(
                DistillationArguments,
                [
                    *TINY,
                    "--teachers",
                    str(teacher),
                    "--bf16",
                    str(precision == "bf16"),
                    "--dataloader_num_workers",
                    str(workers),
                    "--dataset_root",
                    str(tiny_corpus),
                    "--output_dir",
                    str(tmp_path / "run"),
                    *extra,
                ],
            )
        )

    run()
    _interrupt_and_resume(tmp_path / "run", run)
