"""The fast path (docs/performance.md): --torch_compile in every recipe, fused/foreach optimiser steps,
pinned prefetching loaders and cuDNN autotuning on CUDA, the aligned R(2+1)D."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import math
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _tiny_runs import tiny_pretraining
from safetensors.torch import load_file
from torch._dynamo.utils import counters

from hf_vssl import VSSLConfig, VSSLModel
from hf_vssl.analysis.cka_recipe import CKAArguments, run_cka
from hf_vssl.analysis.robustness import RobustnessArguments
from hf_vssl.foundation.run import ZeroShotArguments
from hf_vssl.models.backbone_resnet3d import Conv2Plus1DPerConvAligned, aligned
from hf_vssl.pretext.prp import chunk_motion_weights
from hf_vssl.training.arguments import CompileArguments, LoopArguments, parse_args
from hf_vssl.training.loop import to_channels_last_3d
from hf_vssl.training.optim import build_optimizer, use_fused_steps
from hf_vssl.utils import fastpath
from hf_vssl.utils.fastpath import compile_in_place, enable_cuda_fast_path, loader_transfer_options
from hf_vssl.utils.profiling import count_parameters
from hf_vssl.zoo import main as zoo_main


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

    for cls in (CKAArguments, RobustnessArguments, ZeroShotArguments):
        assert issubclass(cls, CompileArguments), cls
        names = {field.name for field in dataclasses.fields(cls)}
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
    assert loader_transfer_options(2) == {
        "pin_memory": True,
        "prefetch_factor": fastpath.CUDA_PREFETCH_FACTOR,
    }
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
    floating-point sums only: differences grow over steps, still far inside bf16 tolerance), and checkpoints / the export hold the uncompiled module's keys."""
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
    assert len(losses) == 3 and losses == pytest.approx(eager_losses, rel=1e-3, abs=1e-5)
    assert sorted(weights) == sorted(eager_weights)
    assert not [key for key in weights if "_orig_mod" in key]
    for key, value in eager_weights.items():
        torch.testing.assert_close(
            weights[key], value, rtol=1e-3, atol=5e-4, msg=lambda detail, key=key: f"{key}: {detail}"
        )
    checkpoint_files = list((output / "checkpoints").rglob("*.safetensors"))
    assert checkpoint_files
    for path in checkpoint_files:
        assert not [key for key in load_file(path) if "_orig_mod" in key], path


def _mid_channels(backbone: torch.nn.Module) -> list[int]:
    """Output channels of every (2+1)D factorisation's first conv: the mid channels."""
    mids = []
    for module in backbone.modules():
        if isinstance(module, torch.nn.Sequential):
            convs = [m for m in module if isinstance(m, torch.nn.Conv3d)]
            if len(convs) == 2:  # spatial (or strided 1x1) conv, then temporal conv
                mids.append(convs[0].out_channels)
    return mids


def test_aligned_r21d_rounds_mid_channels_and_the_default_is_unchanged():

    default = VSSLModel(VSSLConfig(backbone="r21d")).backbone
    assert count_parameters(default) == 14_365_303  # the study's network, to the parameter
    assert 230 in _mid_channels(default) and any(m % 8 for m in _mid_channels(default))
    variant = VSSLModel(VSSLConfig(backbone="r21d-aligned")).backbone
    mids = _mid_channels(variant)
    assert len(mids) == len(_mid_channels(default)) == 12  # stem, 4 blocks x 2 convs, 3 shortcuts
    assert all(m % 8 == 0 for m in mids), mids
    assert variant.conv_builder is Conv2Plus1DPerConvAligned
    assert abs(count_parameters(variant) / count_parameters(default) - 1) < 0.01
    assert [aligned(c) for c in (3, 42, 83, 85, 230, 921)] == [8, 40, 80, 88, 232, 920]
    with torch.no_grad():
        assert variant(torch.randn(1, 3, 4, 32, 32)).pooled.shape == (1, 512)


def test_zoo_prints_the_aligned_variants_change():

    out = io.StringIO()
    with redirect_stdout(out):
        assert zoo_main(["--backbones", "r21d-aligned"]) == 0
    line = out.getvalue().strip().splitlines()[-1]
    assert line.startswith(
        "r21d-aligned vs r21d: params 14.369M vs 14.365M (+0.03%), GFLOPs 42.67 vs 42.72 (-0.12%)"
    ), line


def test_channels_last_3d_covers_transposed_3d_convolutions():
    """PRP's decoder is transposed 3D convolutions: left contiguous, each would convert its
    full-resolution activations between layouts every step."""
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3), torch.nn.ConvTranspose3d(4, 4, 2, stride=2))
    to_channels_last_3d(model)
    for layer in model:
        assert layer.weight.is_contiguous(memory_format=torch.channels_last_3d), layer


def _per_sample_motion_mask(target, label, rates, low, high):
    """The motion mask as the original builds it: sample by sample, each chunk's pooled map resized
    trilinearly to the whole chunk (the reference the batched version must reproduce)."""
    masks = []
    for clip, rate in zip(target, (rates[i] for i in label.tolist())):
        length, channels, height, width = clip.shape
        chunks = math.gcd(rate, length)
        chunk_frames = clip.reshape(chunks, length // chunks, channels, height, width)
        positions = [
            round(j) * (length // chunks) // (length // 2) for j in np.linspace(0, length // 2 - 1, 4)
        ]
        squared = torch.stack(
            [(chunk_frames[:, b] - chunk_frames[:, a]).pow(2) for a, b in itertools.pairwise(positions)],
            dim=2,
        )  # (chunks, C, 3, H, W)
        pooled = F.avg_pool3d(squared, (3, height // 4, width // 4), (3, height // 16, width // 16))
        span = pooled.amax(dim=(2, 3, 4), keepdim=True) - pooled.amin(dim=(2, 3, 4), keepdim=True)
        scaled = low + (high - low) * (pooled - pooled.amin(dim=(2, 3, 4), keepdim=True) + 1e-6) / (
            span + 1e-6
        )
        scaled = torch.where((span <= 0).all(dim=1, keepdim=True), torch.ones_like(scaled), scaled)
        resized = F.interpolate(scaled, size=(length // chunks, height, width), mode="trilinear")
        masks.append(resized.transpose(1, 2).reshape(length, channels, height, width))
    return torch.stack(masks)


@pytest.mark.parametrize(
    ("shape", "rates"),
    [((5, 32, 3, 112, 112), (1, 2, 4, 8)), ((4, 16, 3, 56, 48), (1, 2, 4, 8)), ((3, 8, 3, 32, 32), (2, 4))],
)
def test_prp_motion_mask_batched_equals_the_per_sample_original(shape, rates):
    target = torch.rand(shape)
    target[0] = 0.5  # a still clip: all ones
    label = torch.arange(shape[0]) % len(rates)
    batched = chunk_motion_weights(target, label, rates, 0.8, 2.0)
    torch.testing.assert_close(
        batched, _per_sample_motion_mask(target, label, rates, 0.8, 2.0), rtol=0, atol=1e-5
    )
    torch.testing.assert_close(batched[0], torch.ones_like(batched[0]), rtol=0, atol=1e-6)  # still: ones


@pytest.mark.slow
def test_cka_recipe_compiled_gives_the_eager_map(tmp_path, tiny_corpus, one_thread):
    """An evaluation recipe with --torch_compile: the compiled model, hooked by the capture, gives the
    same CKA map as the eager one."""
    model_dir = tmp_path / "model"
    VSSLModel(
        VSSLConfig(backbone="r21d", width_multiplier=0.125, num_frames=8, image_size=32)
    ).save_pretrained(model_dir)
    maps = {}
    for name, extra in {"eager": [], "compiled": ["--torch_compile"]}.items():
        counters.clear()
        flags = [
            "--model_name_or_path",
            str(model_dir),
            "--dataset_root",
            str(tiny_corpus),
            "--output_dir",
            str(tmp_path / name),
        ]
        flags += ["--per_device_eval_batch_size", "4", "--dataloader_num_workers", "0", *extra]
        output = run_cka(parse_args(CKAArguments, flags))
        maps[name] = torch.tensor(
            json.loads((output / "cka.json").read_text())["matrix"], dtype=torch.float64
        )
        assert (counters["stats"]["unique_graphs"] > 0) == (name == "compiled")
    assert maps["eager"].shape == (4, 4)
    torch.testing.assert_close(maps["compiled"], maps["eager"], rtol=0, atol=1e-5)
