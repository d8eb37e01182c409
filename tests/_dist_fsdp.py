"""Run by tests/test_fsdp_checkpoint.py under ``accelerate launch --multi_gpu --num_processes 2``
(gloo on CPU): a tiny TimeSformer pretraining model sharded with FSDP2 ``fully_shard``, trained and
checkpointed through the real :func:`write_checkpoint` / :func:`load_checkpoint`.

Accelerate turns its FSDP plugin on only for accelerators, so the model is sharded here as its
FSDP2 preparation would (each ``_no_split_modules`` block, then the root, in place) and registered
with the Accelerator without a DDP wrapper; the optimiser and schedule go through ``prepare``.

``argv``:
- ``train OUT``: 3 steps, checkpoint, 2 more steps. Checks on every rank that the checkpoint holds
  the gathered weights and optimiser state, equal to a plain (unsharded) replica trained on the
  same global batches, and that a submodule's export gathers too. Writes
  ``OUT/continued.safetensors`` (the gathered weights after step 5) and ``OUT/export``
  (``save_pretrained`` with the gathered state).
- ``resume OUT CHECKPOINT...``: for each checkpoint, a fresh sharded model (other initial weights)
  loads it and runs steps 4-5; writes ``OUT/resumed_<i>.safetensors``. Then a sharded model of
  another shape must refuse the first checkpoint with :class:`CheckpointError` on every rank.

The helpers (model, batches, one step) are imported by the test for the single-process checks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from hf_vssl.models import VSSLConfig
from hf_vssl.pretext.modeling import VSSLForPretraining
from hf_vssl.training.checkpointing import (
    CheckpointError,
    gathered_state_dict,
    load_checkpoint,
    load_state_files,
    read_checkpoint,
    write_checkpoint,
)

NUM_PROCESSES = 2
CHECKPOINT_STEP, LAST_STEP = 3, 5
TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
LOOP_STATE = {
    "global_step": CHECKPOINT_STEP,
    "epoch": 0,
    "step_in_epoch": CHECKPOINT_STEP,
    "steps_per_epoch": 10,
}


def tiny_model(seed: int, **backbone_kwargs) -> VSSLForPretraining:
    torch.manual_seed(seed)
    config = VSSLConfig(
        backbone="timesformer",
        backbone_kwargs={**TINY_VIT, **backbone_kwargs},
        num_frames=4,
        image_size=32,
        pretext_task="rotnet",
    )
    return VSSLForPretraining(config)


def decay(step: int) -> float:
    """A schedule that changes every step, so a schedule restored wrongly changes the weights."""
    return 0.8**step


def optimizer_and_schedule(
    model: nn.Module,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, decay)


def loss(model: nn.Module, step: int, rank: int) -> torch.Tensor:
    """The loss of ``rank``'s batch at ``step`` (clips and rotations fixed by both)."""
    generator = torch.Generator().manual_seed(1000 * step + rank)
    pixel_values = torch.randn(2, 4, 3, 32, 32, generator=generator)  # (batch, frames, channels, h, w)
    return model(pixel_values, generator=generator).loss


def plain_step(model: nn.Module, optimizer, schedule, step: int) -> None:
    """One step of an unsharded model on the global batch of every rank (the mean of their losses,
    which is what FSDP's averaged gradients compute)."""
    sum(loss(model, step, rank) for rank in range(NUM_PROCESSES)).div(NUM_PROCESSES).backward()
    optimizer.step()
    schedule.step()
    optimizer.zero_grad()


def shard(model: VSSLForPretraining) -> VSSLForPretraining:
    for module in model.modules():
        if type(module).__name__ in model.vssl.backbone._no_split_modules:
            fully_shard(module)
    return fully_shard(model)


def _main() -> None:
    mode, out, *checkpoints = sys.argv[1:]
    out = Path(out)
    accelerator = Accelerator(cpu=True, step_scheduler_with_optimizer=False)
    rank = accelerator.process_index
    assert accelerator.num_processes == NUM_PROCESSES

    def start(seed: int, **backbone_kwargs):
        model = shard(tiny_model(seed, **backbone_kwargs))
        assert any(isinstance(p, DTensor) for p in model.parameters())
        accelerator._models.append(model)  # as Accelerate's FSDP2 prepare leaves it: sharded in place
        optimizer, schedule = accelerator.prepare(*optimizer_and_schedule(model))
        return model, optimizer, schedule

    def sharded_step(model, optimizer, schedule, step: int) -> None:
        accelerator.backward(loss(model, step, rank))
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()

    def gathered(model) -> dict[str, torch.Tensor]:
        """Every rank's own gather of the sharded weights (DTensor.full_tensor), not the checkpoint code's."""
        return {
            k: (v.full_tensor() if isinstance(v, DTensor) else v).clone()
            for k, v in model.state_dict().items()
        }

    if mode == "train":
        plain = tiny_model(0)
        model, optimizer, schedule = start(0)
        plain_optimizer, plain_schedule = optimizer_and_schedule(plain)
        for step in range(1, CHECKPOINT_STEP + 1):
            sharded_step(model, optimizer, schedule, step)
            plain_step(plain, plain_optimizer, plain_schedule, step)
        path = write_checkpoint(accelerator, out, LOOP_STATE)
        saved, full = load_file(path / "model.safetensors"), gathered(model)
        assert saved.keys() == full.keys() == plain.state_dict().keys()
        for name, tensor in plain.state_dict().items():
            assert torch.equal(saved[name], full[name]), f"checkpoint {name} is not the gathered weight"
            torch.testing.assert_close(
                saved[name], tensor, rtol=1e-4, atol=1e-5, msg=f"{name} vs the plain model"
            )
        saved_optimizer, plain_state = load_state_files(path, "optimizer"), plain_optimizer.state_dict()
        assert saved_optimizer["param_groups"] == plain_state["param_groups"]
        assert saved_optimizer["state"].keys() == plain_state["state"].keys()
        for index, state in plain_state["state"].items():
            for key, value in state.items():
                torch.testing.assert_close(saved_optimizer["state"][index][key], value, rtol=1e-4, atol=1e-6)
        for step in range(CHECKPOINT_STEP + 1, LAST_STEP + 1):
            sharded_step(model, optimizer, schedule, step)
        continued = gathered(model)
        export = gathered_state_dict(model)  # every rank takes part, main keeps it
        # a submodule that is not itself an FSDP unit (the distillation export saves the student)
        backbone = gathered_state_dict(model.vssl)
        if accelerator.is_main_process:
            save_file(continued, str(out / "continued.safetensors"))
            model.save_pretrained(out / "export", state_dict=export)
            assert backbone.keys() == {k[len("vssl.") :] for k in continued if k.startswith("vssl.")}
            assert all(torch.equal(tensor, continued[f"vssl.{name}"]) for name, tensor in backbone.items())
        else:
            assert export == {} and backbone == {}  # gathered into the main process only
    else:
        for i, checkpoint in enumerate(checkpoints):
            for registered in (accelerator._models, accelerator._optimizers, accelerator._schedulers):
                registered.clear()
            model, optimizer, schedule = start(1 + i)  # other initial weights than the saved run's
            saved = load_file(Path(checkpoint) / "model.safetensors")
            assert not all(torch.equal(tensor, saved[name]) for name, tensor in gathered(model).items())
            state = load_checkpoint(accelerator, read_checkpoint(checkpoint))
            assert state["global_step"] == CHECKPOINT_STEP
            assert all(torch.equal(tensor, saved[name]) for name, tensor in gathered(model).items())
            for step in range(CHECKPOINT_STEP + 1, LAST_STEP + 1):
                sharded_step(model, optimizer, schedule, step)
            resumed = gathered(model)
            if accelerator.is_main_process:
                save_file(resumed, str(out / f"resumed_{i}.safetensors"))
        # A checkpoint of another model: the same one-line refusal on every rank (no rank left waiting).
        for registered in (accelerator._models, accelerator._optimizers, accelerator._schedulers):
            registered.clear()
        start(0, intermediate_size=48)
        try:
            load_checkpoint(accelerator, read_checkpoint(checkpoints[0]))
        except CheckpointError as error:
            assert "the weights do not fit this run's model" in str(error), error
            assert "\n" not in str(error), error
        else:
            raise AssertionError("a checkpoint of another model was loaded")
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    _main()
