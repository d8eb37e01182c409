"""Checkpoints: no pickle on resume, atomic writes, fallback past broken checkpoints, one run per folder."""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from hf_vssl.training import checkpointing as ckpt
from hf_vssl.training.arguments import parse_args
from hf_vssl.training.pretraining import PretrainingArguments, run_pretraining

REPO = Path(__file__).resolve().parents[1]
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
    "4",
    "--dataloader_num_workers",
    "0",
    "--report_to",
    "none",
    "--logging_steps",
    "1",
    "--pretext_task",
    "rotnet",
    "--bf16",
    "false",
]


def _pretrain(corpus: Path, output: Path, *extra: str) -> Path:
    return run_pretraining(
        parse_args(
            PretrainingArguments, [*TINY, "--dataset_root", str(corpus), "--output_dir", str(output), *extra]
        )
    )


class _Payload:
    """Unpickling this writes a marker file: what a planted pickle could do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pickle ran"))


def _plant_pickles(folder: Path, marker: Path) -> None:
    for name in (
        "custom_checkpoint_0.pkl",
        "random_states_0.pkl",
        "optimizer.bin",
        "scheduler.bin",
        "pytorch_model.bin",
        "sampler.bin",
        "scaler.pt",
    ):
        (folder / name).write_bytes(pickle.dumps(_Payload(marker)))


def test_split_and_join_state_round_trip():
    state = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 3)}, 5: {"momentum_buffer": None}},
        "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 5], "name": None}],
        "nested": [torch.arange(4), {"flag": True}],
    }
    tree, tensors = ckpt.split_state(state)
    json.dumps(tree)  # the non-tensor part is plain JSON
    back = ckpt.join_state(json.loads(json.dumps(tree)), tensors)
    assert set(back["state"]) == {0, 5}, "integer parameter ids keep their type"
    assert (
        torch.equal(back["state"][0]["exp_avg"], torch.ones(2, 3))
        and back["state"][5]["momentum_buffer"] is None
    )
    assert back["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(back["nested"][0], torch.arange(4)) and back["nested"][1] == {"flag": True}
    with pytest.raises(TypeError, match="without pickle"):
        ckpt.split_state({"fn": print})


def _tiny_training(output_dir: Path, steps: int):
    """An Accelerator with a model, AdamW and a registered schedule, trained ``steps`` steps."""
    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    model, optimizer = accelerator.prepare(model, optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    accelerator.register_for_checkpointing(scheduler)
    for _ in range(steps):
        model(torch.randn(6, 4)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    return accelerator, model, optimizer, scheduler


def test_checkpoint_round_trip_restores_model_optimizer_schedule_and_rng(tmp_path):
    accelerator, model, optimizer, scheduler = _tiny_training(tmp_path, 3)
    path = ckpt.write_checkpoint(
        accelerator, tmp_path, {"global_step": 3, "epoch": 0, "step_in_epoch": 3, "steps_per_epoch": 10}
    )
    assert path == tmp_path / "checkpoints" / "checkpoint-3" and not any(
        (tmp_path / ckpt.STAGING_DIR).iterdir()
    )
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved_optim = optimizer.state_dict()
    saved_lr, expected_draw = scheduler.get_last_lr(), torch.rand(3)

    accelerator2, model2, optimizer2, scheduler2 = _tiny_training(tmp_path / "other", 1)
    state = ckpt.load_checkpoint(accelerator2, ckpt.read_checkpoint(path))
    assert state["global_step"] == 3
    for key, value in saved_model.items():
        assert torch.equal(model2.state_dict()[key], value), key
    restored = optimizer2.state_dict()
    for pid, entry in saved_optim["state"].items():
        for name, value in entry.items():
            assert torch.equal(torch.as_tensor(restored["state"][pid][name]), torch.as_tensor(value)), name
    assert scheduler2.get_last_lr() == saved_lr and scheduler2.last_epoch == 3
    assert torch.equal(torch.rand(3), expected_draw), "torch's RNG continues where the checkpoint left it"


def test_resume_never_unpickles_a_planted_file(tmp_path, tiny_corpus):
    output = _pretrain(tiny_corpus, tmp_path / "run", "--max_steps", "2", "--save_steps", "1")
    marker = tmp_path / "pwned"
    checkpoint = output / "checkpoints" / "checkpoint-2"
    _plant_pickles(checkpoint, marker)
    before = load_file(output / "model.safetensors")
    (output / "model.safetensors").unlink()
    _pretrain(
        tiny_corpus, output, "--max_steps", "3", "--save_steps", "1", "--resume_from_checkpoint", "latest"
    )
    assert not marker.exists(), "a planted pickle ran on resume"
    assert (output / "checkpoints" / "checkpoint-3").is_dir()
    assert load_file(output / "model.safetensors").keys() == before.keys()
    # The checkpoint folder holds only JSON and safetensors that hf_vssl wrote (plus what was planted).
    written = json.loads((checkpoint / ckpt.STATE_FILE).read_text())["files"]
    assert all(name.endswith((".json", ".safetensors")) for name in written)


@pytest.mark.parametrize("damage", ["truncated_safetensors", "bad_json", "missing_file", "no_loop_state"])
def test_latest_skips_a_broken_newest_checkpoint(tmp_path, damage, caplog):
    accelerator, *_ = _tiny_training(tmp_path, 1)
    for step in (1, 2):
        ckpt.write_checkpoint(
            accelerator,
            tmp_path,
            {"global_step": step, "epoch": 0, "step_in_epoch": step, "steps_per_epoch": 10},
        )
    newest = tmp_path / "checkpoints" / "checkpoint-2"
    if damage == "truncated_safetensors":
        data = (newest / "model.safetensors").read_bytes()
        (newest / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "bad_json":
        (newest / "optimizer.json").write_text("{not json")
    elif damage == "missing_file":
        (newest / "custom_0.safetensors").unlink()
    else:
        (newest / ckpt.STATE_FILE).unlink()
    with caplog.at_level(logging.WARNING, logger="hf_vssl.training.checkpointing"):
        path, contents = ckpt.resolve_checkpoint(tmp_path, "latest")
    assert path == tmp_path / "checkpoints" / "checkpoint-1" and contents.loop_state["global_step"] == 1
    assert "checkpoint-2" in caplog.text, "the skipped checkpoint is named"
    with pytest.raises(ckpt.CheckpointError, match="checkpoint-2"):  # named explicitly: refused, not replaced
        ckpt.resolve_checkpoint(tmp_path, str(newest))


def test_same_size_corruption_of_a_json_file_is_caught(tmp_path):
    accelerator, *_ = _tiny_training(tmp_path, 1)
    path = ckpt.write_checkpoint(
        accelerator, tmp_path, {"global_step": 1, "epoch": 0, "step_in_epoch": 1, "steps_per_epoch": 10}
    )
    text = (path / "custom_0.json").read_text()
    (path / "custom_0.json").write_text("]" + text[1:])
    assert ckpt.resolve_checkpoint(tmp_path, "latest") == (None, None)


def test_fresh_run_into_a_used_folder_refuses_unless_resuming_or_overwriting(tmp_path, tiny_corpus):
    output = _pretrain(tiny_corpus, tmp_path / "run", "--max_steps", "1", "--save_steps", "1")
    with pytest.raises(FileExistsError, match=r"--output_dir .* holds another run"):
        _pretrain(tiny_corpus, output, "--max_steps", "1", "--save_steps", "1")
    _pretrain(tiny_corpus, output, "--max_steps", "1", "--save_steps", "1", "--overwrite_output_dir")
    logs = (output / "log_history.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in logs] == [1], (
        "the earlier run's log was deleted, not appended to"
    )


def _lock_in_subprocess(output_dir: Path, then: str) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import os, sys, time
        from hf_vssl.training.checkpointing import acquire_output_lock
        acquire_output_lock({str(output_dir)!r})
        print("locked", flush=True)
        {then}
    """)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )


def test_a_second_live_run_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path, caplog):
    holder = _lock_in_subprocess(tmp_path, "time.sleep(60)")
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ckpt.OutputDirInUseError, match=rf"in use by another run \(pid {holder.pid} "):
            ckpt.acquire_output_lock(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    # Killed without releasing: the flock died with it, its note stays; the next run takes over.
    with caplog.at_level(logging.WARNING, logger="hf_vssl.training.checkpointing"):
        ckpt.acquire_output_lock(tmp_path)
    try:
        assert f"pid {holder.pid}" in caplog.text and "did not exit cleanly" in caplog.text
    finally:
        ckpt.release_output_lock(tmp_path)
    # A run that exits normally leaves a released lock: no warning for the next one.
    clean = _lock_in_subprocess(tmp_path, "sys.exit(0)")
    clean.communicate(timeout=60)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_vssl.training.checkpointing"):
        ckpt.acquire_output_lock(tmp_path)
    ckpt.release_output_lock(tmp_path)
    assert "did not exit cleanly" not in caplog.text


def test_recipe_refuses_a_locked_output_dir_in_one_line(tmp_path, tiny_corpus):
    holder = _lock_in_subprocess(tmp_path / "run", "time.sleep(60)")
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "recipes" / "pretrain.py"),
                *TINY,
                "--max_steps",
                "1",
                "--dataset_root",
                str(tiny_corpus),
                "--output_dir",
                str(tmp_path / "run"),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=600,
            check=False,
            env=dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1"),
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "in use by another run" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_recipe_releases_its_lock_when_it_ends(tmp_path, tiny_corpus):
    import importlib.util

    spec = importlib.util.spec_from_file_location("pretrain_recipe", REPO / "recipes" / "pretrain.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    output = recipe.main(
        [*TINY, "--max_steps", "1", "--dataset_root", str(tiny_corpus), "--output_dir", str(tmp_path / "run")]
    )
    assert (output / ckpt.LOCK_FILE).read_text() == "", "released: the next run takes it without a warning"
    assert output.resolve() not in ckpt._held_locks


def test_the_lock_and_staging_folder_are_never_published(tmp_path):
    from hf_vssl.hub.publish import DEFAULT_IGNORE_PATTERNS, _folder_operations

    ckpt.acquire_output_lock(tmp_path)  # holds the host name and pid while the run lives
    try:
        (tmp_path / ckpt.STAGING_DIR / "checkpoint-3").mkdir(parents=True)
        (tmp_path / ckpt.STAGING_DIR / "checkpoint-3" / "model.safetensors").write_bytes(b"x")
        (tmp_path / "config.json").write_text("{}")
        uploaded = [op.path_in_repo for op in _folder_operations(tmp_path, DEFAULT_IGNORE_PATTERNS, set())]
    finally:
        ckpt.release_output_lock(tmp_path)
    assert uploaded == ["config.json"]
