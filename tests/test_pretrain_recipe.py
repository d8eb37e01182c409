"""recipes/pretrain.py end to end: every task, resume after SIGKILL, NaN guard, refusal of bad settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import hf_vssl  # noqa: F401  (registers the Auto classes)
from hf_vssl.pretext.registry import list_pretext_tasks
from hf_vssl.training.arguments import parse_args
from hf_vssl.training.pretraining import NonFiniteLossError, PretrainingArguments, run_pretraining

REPO = Path(__file__).resolve().parents[1]
TINY_FLAGS = [
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
]


def tiny_args(tmp_path: Path, corpus: Path, *extra: str) -> PretrainingArguments:
    return parse_args(
        PretrainingArguments,
        [*TINY_FLAGS, "--dataset_root", str(corpus), "--output_dir", str(tmp_path / "run"), *extra],
    )


@pytest.mark.parametrize("task", list_pretext_tasks())
def test_every_task_pretrains_and_exports(task, tmp_path, tiny_corpus):
    from transformers import AutoModel

    args = tiny_args(tmp_path, tiny_corpus, "--pretext_task", task, "--max_steps", "2", "--save_steps", "2")
    output = run_pretraining(args)
    logs = [json.loads(line) for line in (output / "log_history.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logs] == [1, 2]
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logs)
    assert {"accuracy", "lr", "clips_per_second"} <= set(logs[-1])
    config = json.loads((output / "config.json").read_text())
    assert config["pretext_task"] == task and config["pretext_config"], "resolved task settings are recorded"
    backbone = AutoModel.from_pretrained(output)
    assert type(backbone).__name__ == "VSSLModel"
    assert (output / "subset_ids.json").exists() and (output / "training_args.yaml").exists()


def test_yaml_config_and_cli_precedence(tmp_path, tiny_corpus):
    config = tmp_path / "run.yaml"
    config.write_text("pretext_task: vcop\nnum_frames: 6\npretext_config:\n  num_clips: 3\n  interval: 2\n")
    args = parse_args(PretrainingArguments, ["--config", str(config), "--num_frames", "8"])
    assert args.pretext_task == "vcop" and args.num_frames == 8
    assert json.loads(args.pretext_config) == {"num_clips": 3, "interval": 2}
    config.write_text("not_an_argument: 1\n")
    with pytest.raises(ValueError, match="not_an_argument"):
        parse_args(PretrainingArguments, ["--config", str(config)])


def test_impossible_setting_is_refused_with_a_hint(tmp_path, tiny_corpus):
    # 5 VCOP clips of 16 frames with interval 8 need 112 frames; the videos have 64.
    args = tiny_args(
        tmp_path,
        tiny_corpus,
        "--pretext_task",
        "vcop",
        "--num_frames",
        "16",
        "--pretext_config",
        '{"num_clips": 5}',
        "--max_steps",
        "1",
    )
    with pytest.raises(ValueError) as error:
        run_pretraining(args)
    message = str(error.value)
    assert "64" in message and "vcop" in message and "To make it work" in message
    assert not (tmp_path / "run" / "checkpoints").exists(), "refused before anything ran"


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_corpus, monkeypatch):
    from hf_vssl.pretext.modeling import VSSLForPretraining

    original = VSSLForPretraining.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 3:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(VSSLForPretraining, "forward", poisoned)
    args = tiny_args(
        tmp_path,
        tiny_corpus,
        "--pretext_task",
        "rotnet",
        "--max_steps",
        "8",
        "--save_steps",
        "2",
        "--logging_steps",
        "4",
    )
    with pytest.raises(NonFiniteLossError, match="NaN or inf"):
        run_pretraining(args)
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-2"], checkpoints  # step 4 was never saved: its window held a NaN


def _launch(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "recipes" / "pretrain.py"), *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, tiny_corpus):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    common = [
        *TINY_FLAGS,
        "--dataset_root",
        str(tiny_corpus),
        "--pretext_task",
        "rspnet",
        "--max_steps",
        "12",
        "--save_steps",
        "2",
        "--save_total_limit",
        "5",
        "--dataloader_num_workers",
        "1",
    ]

    reference = _launch([*common, "--output_dir", str(tmp_path / "straight")], env)
    out, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, out

    killed_dir = tmp_path / "killed"
    victim = _launch([*common, "--output_dir", str(killed_dir)], env)
    marker = killed_dir / "checkpoints" / "checkpoint-4" / "loop_state.json"
    deadline = time.time() + 600
    while not marker.exists():
        assert victim.poll() is None, victim.communicate()[0]
        assert time.time() < deadline, "no checkpoint-4 within 10 minutes"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert not (killed_dir / "model.safetensors").exists(), "killed before the end"

    resumed = _launch([*common, "--output_dir", str(killed_dir), "--resume_from_checkpoint", "latest"], env)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    assert "resuming from" in out

    expected = load_file(tmp_path / "straight" / "model.safetensors")
    actual = load_file(killed_dir / "model.safetensors")
    assert expected.keys() == actual.keys()
    for key in expected:  # weights, momentum encoder and feature queue alike
        assert torch.equal(expected[key], actual[key]), key


def test_transform_preset_override_is_used_and_recorded(tmp_path, tiny_corpus, monkeypatch):
    import yaml

    from hf_vssl.training import pretraining

    used = []
    original = pretraining.train_transforms

    def recording(preset, *args, **kwargs):
        used.append(preset)
        return original(preset, *args, **kwargs)

    monkeypatch.setattr(pretraining, "train_transforms", recording)
    args = tiny_args(
        tmp_path, tiny_corpus, "--pretext_task", "prp", "--transform_preset", "eval", "--max_steps", "1"
    )
    output = run_pretraining(args)
    assert used == ["eval"]  # not the task's own "prp" augmentation
    assert yaml.safe_load((output / "training_args.yaml").read_text())["transform_preset"] == "eval"
