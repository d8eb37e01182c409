"""Recipe flags: help and default for every flag, refusals at start, the launcher's precision, one-line errors."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import HfArgumentParser

from hf_vssl.analysis.cka_recipe import CKAArguments
from hf_vssl.analysis.robustness import RobustnessArguments
from hf_vssl.training.arguments import mixed_precision_for, parse_args
from hf_vssl.training.cli import configure_logging, debug_requested
from hf_vssl.training.distillation import DistillationArguments
from hf_vssl.training.finetuning import FinetuningArguments
from hf_vssl.training.pretraining import PretrainingArguments, run_pretraining

REPO = Path(__file__).resolve().parents[1]
RECIPE_ARGUMENTS = [
    PretrainingArguments,
    FinetuningArguments,
    DistillationArguments,
    RobustnessArguments,
    CKAArguments,
]


@pytest.mark.parametrize("arguments_type", RECIPE_ARGUMENTS, ids=lambda t: t.__name__)
def test_every_flag_has_a_help_text_and_shows_its_default(arguments_type):
    parser = HfArgumentParser(arguments_type)
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help and action.help.strip(), f"--{action.dest} has no help text"
        shown = formatter._get_help_string(action) % {"default": action.default}
        assert "default" in shown, f"--{action.dest}: {shown!r} shows no default"


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--max_steps", "-7", "--num_train_epochs", "0"], "--max_steps"),
        (["--max_steps", "0"], "--max_steps"),
        (["--num_train_epochs", "-1"], "--num_train_epochs"),
        (["--num_train_epochs", "0"], "--num_train_epochs"),
        (["--save_steps", "0"], "--save_steps"),
        (["--logging_steps", "0"], "--logging_steps"),
        (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size"),
        (["--learning_rate", "-0.1"], "--learning_rate"),
        (["--warmup_ratio", "1.5"], "--warmup_ratio"),
    ],
)
@pytest.mark.parametrize(
    "arguments_type",
    [PretrainingArguments, FinetuningArguments, DistillationArguments],
    ids=lambda t: t.__name__,
)
def test_impossible_loop_settings_are_refused_at_parse_time(arguments_type, flags, named):
    with pytest.raises(ValueError, match=f"^{named} must be"):
        parse_args(arguments_type, flags)


def test_max_steps_minus_one_means_train_the_epochs():
    args = parse_args(PretrainingArguments, ["--max_steps", "-1", "--num_train_epochs", "0.5"])
    assert args.max_steps == -1 and args.num_train_epochs == 0.5


@pytest.mark.parametrize(
    ("arguments_type", "flag"),
    [
        (FinetuningArguments, "--model_name_or_path"),
        (RobustnessArguments, "--model_name_or_path"),
        (CKAArguments, "--model_name_or_path"),
        (CKAArguments, "--compare_to"),
        (DistillationArguments, "--student_name_or_path"),
        (DistillationArguments, "--teachers"),
    ],
)
@pytest.mark.parametrize("missing", ["/nonexistent/model", "outputs/../nope/x", "./not-here"])
def test_a_missing_local_model_path_is_named_as_a_path(arguments_type, flag, missing):
    with pytest.raises(FileNotFoundError, match=rf"^{flag} {missing}: no such file or folder"):
        parse_args(arguments_type, [flag, missing])


def test_a_relative_path_under_an_existing_folder_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    with pytest.raises(FileNotFoundError, match="outputs/rspnet: no such file or folder"):
        parse_args(FinetuningArguments, ["--model_name_or_path", "outputs/rspnet"])
    assert (
        parse_args(FinetuningArguments, ["--model_name_or_path", "someone/model"]).model_name_or_path
        == "someone/model"
    ), "a Hub id is left to the Hub"


def test_bf16_defaults_to_the_launcher_and_an_explicit_flag_wins():
    assert parse_args(PretrainingArguments, []).bf16 is None
    assert mixed_precision_for(parse_args(PretrainingArguments, [])) is None
    assert mixed_precision_for(parse_args(PretrainingArguments, ["--bf16"])) == "bf16"
    assert mixed_precision_for(parse_args(PretrainingArguments, ["--bf16", "false"])) == "no"
    assert mixed_precision_for(parse_args(RobustnessArguments, ["--bf16", "true"])) == "bf16"


@pytest.mark.parametrize(
    ("launcher", "flag", "expected"), [("no", None, False), ("bf16", None, True), ("bf16", "false", False)]
)
def test_the_launchers_precision_is_used_and_recorded(
    tmp_path, tiny_corpus, monkeypatch, launcher, flag, expected
):
    # accelerate launch --mixed_precision X (and accelerate config) reach the recipe as this variable.
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", launcher)
    extra = ["--bf16", flag] if flag else []
    output = run_pretraining(
        parse_args(
            PretrainingArguments,
            [
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
                "--pretext_task",
                "rotnet",
                "--max_steps",
                "1",
                "--dataset_root",
                str(tiny_corpus),
                "--output_dir",
                str(tmp_path / "run"),
                *extra,
            ],
        )
    )
    assert yaml.safe_load((output / "training_args.yaml").read_text())["bf16"] is expected


def _recipe(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "recipes" / "pretrain.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **env},
    )


def test_user_errors_print_one_line_and_debug_shows_the_traceback():
    result = _recipe("--save_steps", "0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --save_steps must be >= 1, got 0 (--debug shows the traceback)"
    ], result.stderr
    for debug in (_recipe("--save_steps", "0", "--debug"), _recipe("--save_steps", "0", HF_VSSL_DEBUG="1")):
        assert (
            debug.returncode != 0 and "Traceback" in debug.stderr and "--save_steps must be" in debug.stderr
        )
    assert debug_requested(["--debug", "true"]) and debug_requested(["--debug=1"])
    assert not debug_requested(["--debug", "false", "--seed", "1"])


def test_logging_is_info_on_the_main_process_and_errors_only_elsewhere():
    configure_logging(main_process=False)
    assert logging.getLogger("hf_vssl").getEffectiveLevel() == logging.ERROR
    configure_logging(main_process=True)
    assert logging.getLogger("hf_vssl").getEffectiveLevel() == logging.INFO
