"""Training-step throughput of hf_vssl's r3d-18 / r21d-18 against torchvision's r3d_18 / r2plus1d_18.

Same input, same step (forward, backward, SGD step), measured in one process with the two
implementations interleaved round by round, so machine load affects both alike. Modes: fp32,
bf16 autocast, each with and without channels_last_3d. Each row prints clips/s of both and the
ratio ours / torchvision (target >= 0.95); the last lines are

    RESULT backbones_<name>_<mode>: <ratio>x of torchvision clips/s

Defaults are CPU-sized (batch 4, 8x64x64). On a GPU use ``--device cuda --batch 32 --frames 16
--size 112`` (the study's clip).

``--study``: instead, the training-step clips/s of every study backbone (and the aligned
R(2+1)D) in bf16 + channels_last_3d, eager and with ``torch.compile`` (``--compile_for``),
against the issue's targets (:data:`STUDY_TARGETS`: the reference code's best mode, R(2+1)D
1.1x of it), with the TFLOP/s the zoo's FLOP count gives (3 x forward per clip):

    RESULT study_backbone_<name>_<eager|compiled>: <clips/s> clips/s = <ratio>x of target <target> (<TFLOP/s> TFLOP/s)

``--tiny``: a seconds-long CPU smoke run of ``--study`` (fp32, 1/8 width, tiny clips).
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch
from torch import nn
from torchvision.models.video import r2plus1d_18, r3d_18

from hf_vssl import VSSLConfig, VSSLModel
from hf_vssl.training.loop import to_channels_last_3d
from hf_vssl.utils.fastpath import compile_in_place, enable_cuda_fast_path
from hf_vssl.utils.profiling import count_gflops

#: Training-step clips/s targets on one H200 (batch 32, 16x112x112, bf16): the study's reference
#: code in its best mode, 1.1x that for R(2+1)D, and the aligned variant's own target.
STUDY_TARGETS = {
    "r21d": 1250.0,
    "r21d-aligned": 1600.0,
    "r3d": 1567.0,
    "c3d": 927.0,
    "shufflenet": 1632.0,
    "mobilenet": 732.0,
    "squeezenet": 3175.0,
}

PAIRS = {"r3d-18": r3d_18, "r21d-18": r2plus1d_18}
MODES = ("fp32", "fp32+cl3d", "bf16", "bf16+cl3d")


class OursWithHead(nn.Module):
    """hf_vssl backbone + the same 400-way linear head torchvision's models carry."""

    def __init__(self, name: str, **config):
        super().__init__()
        self.backbone = VSSLModel(VSSLConfig(backbone=name, **config)).backbone
        self.fc = nn.Linear(self.backbone.num_features, 400)

    def forward(self, x):
        return self.fc(self.backbone(x).pooled)


def make_step(model: nn.Module, device: torch.device, mode: str):
    channels_last = mode.endswith("+cl3d")
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if mode.startswith("bf16")
        else nullcontext()
    )

    def step(x, y):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with autocast:
            loss = nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed(step, x, y, iters: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def study(args, device: torch.device) -> None:
    """Clips/s of every study backbone's training step against :data:`STUDY_TARGETS` (see the docstring)."""
    mode = "fp32" if args.tiny else "bf16+cl3d"
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device)
    y = torch.randint(0, 400, (args.batch,), device=device)
    print(f"device={device} input={tuple(x.shape)} mode={mode} iters={args.iters} rounds={args.rounds}")
    for name in args.backbones:
        sizes = {"num_frames": args.frames, "image_size": args.size}
        if args.tiny:
            sizes["width_multiplier"] = 0.125
        gflops = count_gflops(OursWithHead(name, **sizes).backbone, (1, 3, args.frames, args.size, args.size))
        for compiled in ("eager", "compiled") if name in args.compile_for else ("eager",):
            torch.manual_seed(0)
            model = OursWithHead(name, **sizes).to(device)
            to_channels_last_3d(model)
            compile_in_place(model, compiled == "compiled")
            step = make_step(model, device, mode)
            timed(step, x, y, 3, device)  # warm-up: compilation, cuDNN autotuning
            seconds = sum(timed(step, x, y, args.iters, device) for _ in range(args.rounds))
            rate = args.batch * args.iters * args.rounds / seconds
            target = STUDY_TARGETS.get(name)
            tflops = rate * 3 * gflops / 1e3
            versus = f"{rate / target:.2f}x of target {target:.0f}" if target else "no target"
            # Printed as soon as measured: a suite cut short by its time budget keeps what is done.
            print(
                f"RESULT study_backbone_{name}_{compiled}: {rate:.1f} clips/s = {versus} ({tflops:.3g} TFLOP/s)",
                flush=True,
            )
            del model, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iters", type=int, default=3, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per implementation")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--backbones", nargs="*", help="default: the pairs (or every STUDY_TARGETS row with --study)"
    )
    parser.add_argument(
        "--study", action="store_true", help="study backbones against the issue's clips/s targets"
    )
    parser.add_argument("--tiny", action="store_true", help="a seconds-long CPU smoke run of --study")
    parser.add_argument(
        "--compile_for", nargs="*", default=list(STUDY_TARGETS), help="--study: backbones also timed compiled"
    )
    args = parser.parse_args()

    device = torch.device(args.device)
    enable_cuda_fast_path(device)
    if args.study or args.tiny:
        if args.tiny:
            args.batch, args.frames, args.size, args.iters, args.rounds = 2, 8, 32, 1, 1
            torch.set_num_threads(1)
        args.backbones = args.backbones or list(STUDY_TARGETS)
        study(args, device)
        return
    args.backbones = args.backbones or list(PAIRS)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device)
    y = torch.randint(0, 400, (args.batch,), device=device)
    print(f"device={device} input={tuple(x.shape)} iters={args.iters} rounds={args.rounds}")
    print(f"{'backbone':<9} {'mode':<10} {'ours clips/s':>13} {'tv clips/s':>11} {'ratio':>6}")

    results = []
    for name in args.backbones:
        for mode in args.modes:
            steps = {
                "ours": make_step(OursWithHead(name).to(device), device, mode),
                "torchvision": make_step(PAIRS[name](num_classes=400).to(device), device, mode),
            }
            for step in steps.values():  # warm-up (allocator, cuDNN autotune, oneDNN primitives)
                timed(step, x, y, 2, device)
            seconds = dict.fromkeys(steps, 0.0)
            for _ in range(args.rounds):
                for key, step in steps.items():
                    seconds[key] += timed(step, x, y, args.iters, device)
            clips = args.batch * args.iters * args.rounds
            ours, theirs = clips / seconds["ours"], clips / seconds["torchvision"]
            results.append((name, mode, ours / theirs))
            print(f"{name:<9} {mode:<10} {ours:>13.1f} {theirs:>11.1f} {ours / theirs:>6.3f}", flush=True)
    for name, mode, ratio in results:
        print(f"RESULT backbones_{name}_{mode}: {ratio:.3f}x of torchvision clips/s")


if __name__ == "__main__":
    main()
