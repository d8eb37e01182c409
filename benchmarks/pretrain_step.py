"""Training-step throughput of every pretext task against a plain backbone step, same run.

What the ratio isolates: the cost a pretext task adds on top of the backbone work it needs
(heads, losses, the on-device rotation, PRP's decoder, the EMA update, shuffle-BN, queue
updates). The baseline does the same *backbone* work without any of that:

- the clips the query backbone trains on (forward + backward): RotNet, PRP, RSPNet 1 per
  sample, CVRL 2 (two views, two calls), TDL 2 (the anchor and, in its own forward pass with
  gradient, the same-video hard negative), VCOP N (one call of N*B clips);
- plus, for the momentum-encoder tasks, the no-grad forward of the key clips through a second
  copy of the backbone, as the task's key encoder does: TDL B (the positive), RSPNet 2B.

Throughput is counted in **backbone clips per second** (query clips + key clips), and

    ratio = task clips/s / plain clips/s        (1.0 = the pretext machinery costs nothing)

PRP's network has compute of its own beyond the backbone (its two 3x3x3 conv branches on the
last stage and its transposed-conv decoder to the 2T x H x W target). For it a second baseline,
the **equivalent** step, runs the same backbone work plus those very modules with the simplest
losses (squared error against a fixed target, cross-entropy), so

    equivalent ratio = task clips/s / equivalent clips/s

isolates what the task's code adds beyond the method's own compute (target preparation, motion
mask, loss masking). For the other tasks the equivalent step is the plain step.

The steps are timed in alternation (plain, [equivalent,] task, plain, ...) and compared by
their medians, so load changes on a shared machine hit them alike. Models are put in
channels_last_3d with the recipes' own ``to_channels_last_3d`` and compiled (``--compile``)
with their ``--torch_compile`` path, so the benchmark measures what a recipe runs.

CPU default (minutes): r21d at width 0.25, 8 x 56 x 56 clips, batch 8, fp32 and bf16 autocast.
``--tiny``: a seconds-long smoke run (the test suite's). ``--full`` on a GPU: width 1.0,
16 x 112 x 112, batch 32, fp32, bf16 autocast, and bf16 + channels_last_3d;
``torch.cuda.synchronize`` brackets every timed step. The absolute task clips/s are printed too.

Prints one line per task/mode, each followed by ``RESULT pretext_overhead_<task>_<mode>: <ratio>x
of plain backbone step`` (and, for PRP, ``RESULT pretext_overhead_prp_<mode>_vs_equivalent: ...``).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

import hf_vssl  # noqa: F401
from hf_vssl import VSSLConfig, VSSLModel
from hf_vssl.pretext import VSSLForPretraining, list_pretext_tasks
from hf_vssl.pretext.prp import PRPTask
from hf_vssl.training.loop import to_channels_last_3d
from hf_vssl.utils.fastpath import COMPILE_MODES, compile_in_place, enable_cuda_fast_path

MODES = ("fp32", "bf16", "bf16_cl3d")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--full", action="store_true", help="study size on a GPU (16x112x112, batch 32, width 1.0)"
    )
    size.add_argument("--tiny", action="store_true", help="a seconds-long CPU smoke run (fp32, one step)")
    parser.add_argument("--tasks", nargs="+", default=list_pretext_tasks(), choices=list_pretext_tasks())
    parser.add_argument("--backbone", default="r21d")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--width", type=float)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--queue_size", type=int, default=None, help="override TDL/RSPNet queue sizes")
    parser.add_argument("--modes", nargs="+", choices=MODES, help="default: fp32 bf16 (+ bf16_cl3d on CUDA)")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile every model (the recipes' path)"
    )
    parser.add_argument("--compile_mode", default="default", choices=COMPILE_MODES)
    args = parser.parse_args(argv)
    if args.full:
        full = {"batch": 32, "frames": 16, "size": 112, "width": 1.0}
    elif args.tiny:
        full = {
            "batch": 2,
            "frames": 4,
            "size": 32,
            "width": 0.125,
            "warmup": 1,
            "steps": 1,
            "modes": ["fp32"],
        }
    else:
        full = {"batch": 8, "frames": 8, "size": 56, "width": 0.25}
    for key, value in {"warmup": 2, "steps": 5, **full}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_batch(
    model: VSSLForPretraining, batch: int, size: int, device, memory_format
) -> dict[str, torch.Tensor]:
    """Random pixels shaped by the task's own sampler, labels from its plans."""
    sampler = model.sampler()
    rng = np.random.default_rng(0)
    plans = [sampler.plan(sampler.min_frames_needed() + 50, rng) for _ in range(batch)]
    clips, frames = len(plans[0].indices), len(plans[0].indices[0])
    shape = (batch, clips, frames, 3, size, size) if clips > 1 else (batch, frames, 3, size, size)
    pixels = torch.randn(shape, device=device)
    if memory_format and pixels.ndim == 5:
        # channels_last_3d for the (B, C, T, H, W) view the backbone sees after its permute.
        pixels = pixels.permute(0, 2, 1, 3, 4).contiguous(memory_format=memory_format).permute(0, 2, 1, 3, 4)
    out = {"pixel_values": pixels}
    out.update({k: torch.tensor([p.info[k] for p in plans], device=device) for k in plans[0].info})
    return out


def key_calls(task: str, batch: int) -> list[int]:
    """Clips per no-grad key-encoder call in one step (TDL: the positive, RSPNet: two keys)."""
    return {"tdl": [batch], "rspnet": [2 * batch]}.get(task, [])


def query_calls(task: str, model: VSSLForPretraining, batch: int) -> list[int]:
    """Clips per query-backbone call in one step of ``task``."""
    if task == "vcop":
        return [batch * model.num_clips]
    if task in ("cvrl", "tdl"):  # two views / the anchor and the hard negative, separate passes
        return [batch, batch]
    return [batch]


class PlainStep:
    """Backbone forward + linear head + cross-entropy + backward + SGD on the given call sizes.

    With ``prp_modules`` (the equivalent step of PRP) the query call also runs PRP's own conv
    branches, rate classifier and decoder on the backbone's last stage, with a squared error
    against a fixed target: the method's compute without the task's loss machinery.
    """

    def __init__(
        self,
        config: VSSLConfig,
        calls: list[int],
        device,
        channels_last: bool,
        key_calls: list[int] = (),
        prp_modules: PRPTask | None = None,
        compile_mode: str | None = None,
    ):
        self.model = VSSLModel(config).to(device)
        self.key_model = VSSLModel(config).to(device) if key_calls else None
        self.head = torch.nn.Linear(self.model.num_features, 10).to(device)
        self.prp = prp_modules.to(device) if prp_modules is not None else None
        modules = [m for m in (self.model, self.key_model, self.prp) if m is not None]
        for module in modules:
            if channels_last:
                to_channels_last_3d(module)
            compile_in_place(module, compile_mode is not None, compile_mode or "default")
        params = [p for m in (self.model, self.head, self.prp) if m is not None for p in m.parameters()]
        self.optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
        shape = (config.num_frames, 3, config.image_size, config.image_size)
        self.inputs = [torch.randn(n, *shape, device=device) for n in calls]
        self.labels = [torch.randint(10, (n,), device=device) for n in calls]
        self.key_inputs = [torch.randn(n, *shape, device=device) for n in key_calls]
        target_shape = (calls[0], 2 * config.num_frames, 3, config.image_size, config.image_size)
        self.target = torch.rand(target_shape, device=device) if self.prp is not None else None
        self.clips = sum(calls) + sum(key_calls)

    def _prp_loss(self, output, labels) -> torch.Tensor:
        feature_map = output.last_hidden_state
        pooled = self.prp.classification_branch(feature_map).mean(dim=(2, 3, 4))
        logits = self.prp.classifier(pooled)
        size = tuple(self.target.shape[i] for i in (1, 3, 4))
        reconstruction = self.prp.decoder(self.prp.reconstruction_branch(feature_map), size)
        recon = (reconstruction.float() - self.target).pow(2).mean()
        return recon + 0.1 * F.cross_entropy(logits.float(), labels % logits.shape[1])

    def __call__(self, autocast) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast():
            with torch.no_grad():
                for x in self.key_inputs:
                    self.key_model(x)
            loss = 0
            for x, y in zip(self.inputs, self.labels):
                output = self.model(x)
                if self.prp is not None:
                    loss = loss + self._prp_loss(output, y)
                else:
                    loss = loss + F.cross_entropy(self.head(output.pooler_output).float(), y)
        loss.backward()
        self.optimizer.step()


class TaskStep:
    def __init__(self, model: VSSLForPretraining, batch: dict[str, torch.Tensor], clips: int):
        self.model, self.batch, self.clips = model, batch, clips
        self.optimizer = torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9
        )

    def __call__(self, autocast) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = self.model(**self.batch).loss
        loss.backward()
        self.optimizer.step()


def make_autocast(device: torch.device, bf16: bool):
    """A factory of fresh autocast contexts (bf16) or no-op contexts (fp32)."""
    if not bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def time_alternating(steps: list, autocast, device, warmup: int, repeats: int) -> list[float]:
    """Median seconds per call of each step, timed in alternation."""
    for _ in range(warmup):
        for step in steps:
            step(autocast)
    synchronize(device)
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for i, step in enumerate(steps):
            synchronize(device)
            start = time.perf_counter()
            step(autocast)
            synchronize(device)
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.full and device.type != "cuda":
        raise SystemExit("--full needs a GPU (torch.cuda.is_available() is False); run without it on CPU.")
    enable_cuda_fast_path(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    all_modes = {"fp32": (False, False), "bf16": (True, False), "bf16_cl3d": (True, True)}
    chosen = args.modes or (list(MODES) if device.type == "cuda" else ["fp32", "bf16"])
    modes = {mode: all_modes[mode] for mode in chosen}
    compile_mode = args.compile_mode if args.compile else None
    print(
        f"device={device} backbone={args.backbone} width={args.width} clip={args.frames}x{args.size}x{args.size} "
        f"batch={args.batch} warmup={args.warmup} steps={args.steps} threads={torch.get_num_threads()} "
        f"compile={compile_mode or 'off'}"
    )

    suffix = "_compiled" if args.compile else ""
    for task in args.tasks:
        pretext_config = None
        if args.queue_size is not None and task in ("tdl", "rspnet"):
            pretext_config = {"queue_size": args.queue_size}
        sizes = {"width_multiplier": args.width, "num_frames": args.frames, "image_size": args.size}
        config = VSSLConfig(backbone=args.backbone, pretext_task=task, pretext_config=pretext_config, **sizes)
        plain_config = VSSLConfig(backbone=args.backbone, **sizes)
        for mode, (bf16, channels_last) in modes.items():
            torch.manual_seed(0)
            model = VSSLForPretraining(config).to(device).train()
            if channels_last:
                to_channels_last_3d(model)
            compile_in_place(model, args.compile, args.compile_mode)
            calls, keys = query_calls(task, model, args.batch), key_calls(task, args.batch)
            memory_format = torch.channels_last_3d if channels_last else None
            batch = make_batch(model, args.batch, args.size, device, memory_format)
            task_step = TaskStep(model, batch, sum(calls) + sum(keys))
            steps = [PlainStep(plain_config, calls, device, channels_last, keys, compile_mode=compile_mode)]
            if task == "prp":  # the method's own modules, freshly built like the task's
                prp = PRPTask(PRPTask.settings_class(), model.vssl.num_features).train()
                steps.append(PlainStep(plain_config, calls, device, channels_last, keys, prp, compile_mode))
            autocast = make_autocast(device, bf16)
            seconds = time_alternating([*steps, task_step], autocast, device, args.warmup, args.steps)
            rates = [step.clips / s for step, s in zip([*steps, task_step], seconds)]
            task_rate, plain_rate = rates[-1], rates[0]
            equivalent_rate = rates[1] if len(steps) > 1 else plain_rate
            equivalent = f"  equivalent {equivalent_rate:8.1f} clips/s" if len(steps) > 1 else ""
            print(
                f"{task:7s} {mode:9s} clips/step={task_step.clips:4d}  task {task_rate:8.1f} clips/s  "
                f"plain {plain_rate:8.1f} clips/s{equivalent}  ratio {task_rate / plain_rate:.2f}"
                + (f"  vs equivalent {task_rate / equivalent_rate:.2f}" if len(steps) > 1 else ""),
                flush=True,
            )
            # RESULT lines as soon as measured: a suite cut short by its time budget keeps them.
            print(
                f"RESULT pretext_overhead_{task}_{mode}{suffix}: {task_rate / plain_rate:.2f}x of plain backbone step"
            )
            if len(steps) > 1:
                print(
                    f"RESULT pretext_overhead_{task}_{mode}{suffix}_vs_equivalent: {task_rate / equivalent_rate:.2f}x "
                    "of the plain step with the method's own modules",
                    flush=True,
                )
            del model, task_step, steps


if __name__ == "__main__":
    main()
