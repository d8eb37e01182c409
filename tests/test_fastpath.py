"""The fast path (docs/performance.md): --torch_compile in every recipe, fused/foreach optimiser steps,
pinned prefetching loaders and cuDNN autotuning on CUDA, the aligned R(2+1)D."""

from __future__ import annotations

import json

import pytest
import torch
from _tiny_runs import tiny_pretraining
from safetensors.torch import load_file

from hf_vssl.training.arguments import CompileArguments, LoopArguments, parse_args
from hf_vssl.training.optim import build_optimizer, use_fused_steps
from hf_vssl.utils import fastpath
from hf_vssl.utils.fastpath import compile_in_place, enable_cuda_fast_path, loader_transfer_options


def test_compile_flags_default_off_and_a_bad_mode_is_refused():
    args = parse_args(LoopArguments, [])
    assert args.torch_compile is False and args.torch_compile_mode == "default"
    args = parse_args(LoopArguments, ["--torch_compile", "--torch_compile_mode", "max-autotune"])
    assert args.torch_compile is True and args.torch_compile_mode == "max-autotune"
    with pytest.raises(ValueError, match="--torch_compile_mode must be one of"):
        parse_args(LoopArguments, ["--torch_compile_mode", "fastest"])
    with pytest.raises(ValueError, match="--torch_compile_mode"):
        CompileArguments(torch_compile_mode="fastest")


def test_eval_recipes_take_the_compile_flags():
    from hf_vssl.analysis.cka_recipe import CKAArguments
    from hf_vssl.analysis.robustness import RobustnessArguments
    from hf_vssl.foundation.run import ZeroShotArguments

    for cls in (CKAArguments, RobustnessArguments, ZeroShotArguments):
        assert issubclass(cls, CompileArguments), cls
        names = {field.name for field in __import__("dataclasses").fields(cls)}
        assert {"torch_compile", "torch_compile_mode"} <= names, cls


def test_compile_in_place_keeps_the_module_and_its_keys():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    keys = list(model.state_dict())
    assert compile_in_place(model, False) is model and model._compiled_call_impl is None
    assert compile_in_place(model, True, "default") is model
    assert model._compiled_call_impl is not None  # the call is compiled ...
    assert list(model.state_dict()) == keys  # ... the module and its keys are not wrapped
    with pytest.raises(ValueError, match="--torch_compile_mode"):
        compile_in_place(torch.nn.Linear(1, 1), True, "turbo")


def test_optimizers_step_foreach_and_switch_to_fused_on_cuda_only():
    model = torch.nn.Linear(4, 2)
    for name in ("sgd", "adamw"):
        optimizer = build_optimizer(
            model, {"optimizer": name, "learning_rate": 0.1, "weight_decay": 0.0, "momentum": 0.9}
        )
        assert all(group["foreach"] for group in optimizer.param_groups)
        assert use_fused_steps(optimizer, "cpu") is False
        assert not any(group["fused"] for group in optimizer.param_groups)
        assert use_fused_steps(optimizer, torch.device("cuda")) is True
        assert all(group["fused"] and not group["foreach"] for group in optimizer.param_groups)
    other = torch.optim.Adagrad(model.parameters())
    assert use_fused_steps(other, "cuda") is False


def test_loaders_pin_and_prefetch_on_cuda_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loader_transfer_options(2) == {"pin_memory": False, "prefetch_factor": None}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loader_transfer_options(2) == {"pin_memory": True, "prefetch_factor": fastpath.CUDA_PREFETCH_FACTOR}
    assert loader_transfer_options(0) == {"pin_memory": True, "prefetch_factor": None}  # no workers: none


def test_cudnn_autotuning_only_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    enable_cuda_fast_path("cpu")
    assert torch.backends.cudnn.benchmark is False
    enable_cuda_fast_path(torch.device("cuda"))
    assert torch.backends.cudnn.benchmark is True


@pytest.mark.slow
def test_compiled_pretraining_matches_eager_and_exports_plain_keys(tmp_path, tiny_corpus, one_thread):
    """A few fp32 steps with --torch_compile: the same losses and weights as eager (inductor reorders
    floating-point sums only), and checkpoints / the export hold the uncompiled module's keys."""
    from torch._dynamo.utils import counters

    runs, graphs = {}, {}
    for name, extra in {"eager": [], "compiled": ["--torch_compile"]}.items():
        counters.clear()
        output = tiny_pretraining(
            tmp_path / name,
            tiny_corpus,
            "--bf16", "false", "--logging_steps", "1", "--save_steps", "3", "--channels_last", "false",
            *extra,
            max_steps=3,
        )  # fmt: skip
        logs = [json.loads(line) for line in (output / "log_history.jsonl").read_text().splitlines()]
        graphs[name] = counters["stats"]["unique_graphs"]
        runs[name] = ([entry["loss"] for entry in logs], load_file(output / "model.safetensors"), output)
    (eager_losses, eager_weights, _), (losses, weights, output) = runs["eager"], runs["compiled"]
    assert graphs == {"eager": 0, "compiled": graphs["compiled"]} and graphs["compiled"] > 0  # it did compile
    assert len(losses) == 3 and losses == pytest.approx(eager_losses, rel=1e-4, abs=1e-5)
    assert sorted(weights) == sorted(eager_weights)
    assert not [key for key in weights if "_orig_mod" in key]
    for key, value in eager_weights.items():
        torch.testing.assert_close(weights[key], value, rtol=1e-3, atol=1e-4, msg=key)
    checkpoint_files = list((output / "checkpoints").rglob("*.safetensors"))
    assert checkpoint_files
    for path in checkpoint_files:
        assert not [key for key in load_file(path) if "_orig_mod" in key], path
