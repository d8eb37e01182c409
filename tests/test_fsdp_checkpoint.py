"""Checkpoints and the final export under FSDP2 (``fully_shard``): two gloo processes on CPU shard a
tiny TimeSformer pretraining model (tests/_dist_fsdp.py); the checkpoint holds the full state in
the usual format, resumes exactly in a sharded run, and loads in one plain process (and back)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _dist_fsdp import CHECKPOINT_STEP, LAST_STEP, LOOP_STATE, optimizer_and_schedule, plain_step, tiny_model
from accelerate import Accelerator
from safetensors.torch import load_file

from hf_vssl.pretext.modeling import VSSLForPretraining
from hf_vssl.training.checkpointing import (
    gathered_state_dict,
    is_sharded,
    load_checkpoint,
    read_checkpoint,
    write_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]


def _launch(*argv: str) -> None:
    """``accelerate launch --multi_gpu --num_processes 2`` of tests/_dist_fsdp.py on CPU (gloo)."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, ACCELERATE_USE_CPU="true", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
        str(REPO / "tests" / "_dist_fsdp.py"), *argv,
    ]  # fmt: skip
    result = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]


def _differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    assert a.keys() == b.keys()
    return [name for name in a if not torch.equal(a[name], b[name])]


def test_a_model_without_fsdp_is_not_gathered():
    model = tiny_model(0)
    assert not is_sharded(model)
    assert gathered_state_dict(model) is None  # the checkpoint and export read state_dict() as before


@pytest.mark.slow
def test_fsdp_checkpoint_holds_the_full_state_and_resumes_sharded_or_plain(tmp_path):
    run = tmp_path / "fsdp"
    # (a) 3 sharded steps, the checkpoint, 2 more; the script checks on every rank that the saved
    # weights are the gathered ones and match a plain replica's weights and optimiser state.
    _launch("train", str(run))
    checkpoint = run / "checkpoints" / f"checkpoint-{CHECKPOINT_STEP}"
    continued = load_file(run / "continued.safetensors")
    files = read_checkpoint(checkpoint).loop_state["files"]
    assert {"model.safetensors", "optimizer.json", "optimizer.safetensors", "custom_0.json"} <= files.keys()
    assert {"rng_state_0.safetensors", "rng_state_1.safetensors"} <= files.keys()

    # The export (save_pretrained with the gathered state) holds the full trained weights.
    exported = VSSLForPretraining.from_pretrained(run / "export").state_dict()
    assert not _differing(exported, continued)

    # (c) One plain process loads the FSDP checkpoint, re-saves it unchanged, and trains on.
    accelerator = Accelerator(cpu=True, step_scheduler_with_optimizer=False)
    model = tiny_model(7)  # other initial weights than the saved run's
    model, optimizer, schedule = accelerator.prepare(model, *optimizer_and_schedule(model))
    assert load_checkpoint(accelerator, read_checkpoint(checkpoint))["global_step"] == CHECKPOINT_STEP
    assert not _differing(model.state_dict(), load_file(checkpoint / "model.safetensors"))
    plain = write_checkpoint(accelerator, tmp_path / "plain", LOOP_STATE)
    for name in ("optimizer.json", "custom_0.json"):  # the same format with and without FSDP
        assert json.loads((plain / name).read_text()) == json.loads((checkpoint / name).read_text())
    for name in ("model.safetensors", "optimizer.safetensors", "custom_0.safetensors"):
        assert not _differing(load_file(plain / name), load_file(checkpoint / name)), name
    for step in range(CHECKPOINT_STEP + 1, LAST_STEP + 1):
        plain_step(model, optimizer, schedule, step)
    for name, tensor in model.state_dict().items():  # the same math, summed in another order
        torch.testing.assert_close(tensor, continued[name], rtol=1e-4, atol=1e-5, msg=name)

    # (b) Fresh sharded models resume from the FSDP checkpoint, and from the plain one: steps 4-5
    # give exactly the weights of the run that was never interrupted.
    _launch("resume", str(run), str(checkpoint), str(plain))
    assert not _differing(load_file(run / "resumed_0.safetensors"), continued)
    assert not _differing(load_file(run / "resumed_1.safetensors"), continued)
