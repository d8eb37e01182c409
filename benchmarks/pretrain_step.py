"""Training-step throughput of every pretext task against a plain backbone step, same run.

What the ratio isolates: the cost a pretext task adds on top of the backbone work it needs
(heads, losses, the on-device rotation, PRP's decoder, the EMA update, shuffle-BN, queue
updates). The baseline does the same *backbone* work without any of that:

- the clips the query backbone trains on (forward + backward): RotNet, TDL, PRP, RSPNet 1 per
  sample, CVRL 2 (two views, two calls), VCOP N (one call of N*B clips);
- plus, for the momentum-encoder tasks (TDL, RSPNet), one no-grad forward of the 2*B key clips
  through a second copy of the backbone, as the task's key encoder does.

Throughput is counted in **backbone clips per second** (query clips + key clips), and

    ratio = task clips/s / plain clips/s        (1.0 = the pretext machinery costs nothing)

The two steps are timed in alternation (plain, task, plain, task, ...) and compared by their
medians, so load changes on a shared machine hit both alike.

CPU default (minutes): r21d at width 0.25, 8 x 56 x 56 clips, batch 8, fp32 and bf16 autocast.
``--full`` on a GPU: width 1.0, 16 x 112 x 112, batch 32, fp32, bf16 autocast, and bf16 +
channels_last_3d; ``torch.cuda.synchronize`` brackets every timed step. The absolute task
clips/s are printed too.

Prints one line per task/mode and ``RESULT pretext_overhead_<task>_<mode>: <ratio>x of plain
backbone step``.
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--full", action="store_true", help="study size on a GPU (16x112x112, batch 32, width 1.0)"
    )
    parser.add_argument("--tasks", nargs="+", default=list_pretext_tasks(), choices=list_pretext_tasks())
    parser.add_argument("--backbone", default="r21d")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--width", type=float)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--queue_size", type=int, default=None, help="override TDL/RSPNet queue sizes")
    args = parser.parse_args()
    if args.full:
        full = {"batch": 32, "frames": 16, "size": 112, "width": 1.0}
    else:
        full = {"batch": 8, "frames": 8, "size": 56, "width": 0.25}
    for key, value in full.items():
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
    if memory_format is not None and pixels.ndim == 5:
        # channels_last_3d for the (B, C, T, H, W) view the backbone sees after its permute.
        pixels = pixels.permute(0, 2, 1, 3, 4).contiguous(memory_format=memory_format).permute(0, 2, 1, 3, 4)
    out = {"pixel_values": pixels}
    out.update({k: torch.tensor([p.info[k] for p in plans], device=device) for k in plans[0].info})
    return out


def key_calls(task: str, batch: int) -> list[int]:
    """Clips per no-grad key-encoder call in one step (TDL: positive + negative, RSPNet: two keys)."""
    return [2 * batch] if task in ("tdl", "rspnet") else []


def query_calls(task: str, model: VSSLForPretraining, batch: int) -> list[int]:
    """Clips per query-backbone call in one step of ``task``."""
    if task == "vcop":
        return [batch * model.num_clips]
    if task == "cvrl":
        return [batch, batch]
    return [batch]


class PlainStep:
    """Backbone forward + linear head + cross-entropy + backward + SGD on the given call sizes."""

    def __init__(
        self, config: VSSLConfig, calls: list[int], device, memory_format, key_calls: list[int] = ()
    ):
        self.model = VSSLModel(config).to(device)
        self.key_model = VSSLModel(config).to(device) if key_calls else None
        self.head = torch.nn.Linear(self.model.num_features, 10).to(device)
        if memory_format is not None:
            self.model.to(memory_format=memory_format)
            if self.key_model is not None:
                self.key_model.to(memory_format=memory_format)
        params = list(self.model.parameters()) + list(self.head.parameters())
        self.optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
        self.inputs = [
            torch.randn(n, config.num_frames, 3, config.image_size, config.image_size, device=device)
            for n in calls
        ]
        self.labels = [torch.randint(10, (n,), device=device) for n in calls]
        self.key_inputs = [
            torch.randn(n, config.num_frames, 3, config.image_size, config.image_size, device=device)
            for n in key_calls
        ]
        self.clips = sum(calls) + sum(key_calls)

    def __call__(self, autocast) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast():
            with torch.no_grad():
                for x in self.key_inputs:
                    self.key_model(x)
            loss = sum(
                F.cross_entropy(self.head(self.model(x).pooler_output).float(), y)
                for x, y in zip(self.inputs, self.labels)
            )
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


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.full and device.type != "cuda":
        raise SystemExit("--full needs a GPU (torch.cuda.is_available() is False); run without it on CPU.")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    modes = {"fp32": (False, None), "bf16": (True, None)}
    if device.type == "cuda":
        modes["bf16_cl3d"] = (True, torch.channels_last_3d)
    print(
        f"device={device} backbone={args.backbone} width={args.width} clip={args.frames}x{args.size}x{args.size} "
        f"batch={args.batch} warmup={args.warmup} steps={args.steps} threads={torch.get_num_threads()}"
    )

    results = {}
    for task in args.tasks:
        pretext_config = None
        if args.queue_size is not None and task in ("tdl", "rspnet"):
            pretext_config = {"queue_size": args.queue_size}
        config = VSSLConfig(
            backbone=args.backbone,
            width_multiplier=args.width,
            num_frames=args.frames,
            image_size=args.size,
            pretext_task=task,
            pretext_config=pretext_config,
        )
        plain_config = VSSLConfig(
            backbone=args.backbone, width_multiplier=args.width, num_frames=args.frames, image_size=args.size
        )
        for mode, (bf16, memory_format) in modes.items():
            torch.manual_seed(0)
            model = VSSLForPretraining(config).to(device).train()
            if memory_format is not None:
                model.to(memory_format=memory_format)
            calls, keys = query_calls(task, model, args.batch), key_calls(task, args.batch)
            task_step = TaskStep(
                model, make_batch(model, args.batch, args.size, device, memory_format), sum(calls) + sum(keys)
            )
            plain_step = PlainStep(plain_config, calls, device, memory_format, keys)

            autocast = make_autocast(device, bf16)
            plain_s, task_s = time_alternating(
                [plain_step, task_step], autocast, device, args.warmup, args.steps
            )
            plain_rate, task_rate = plain_step.clips / plain_s, task_step.clips / task_s
            ratio = task_rate / plain_rate
            results[(task, mode)] = ratio
            print(
                f"{task:7s} {mode:9s} clips/step={task_step.clips:4d}  task {task_rate:8.1f} clips/s  "
                f"plain {plain_rate:8.1f} clips/s  ratio {ratio:.2f}",
                flush=True,
            )
            del model, task_step, plain_step
    for (task, mode), ratio in results.items():
        print(f"RESULT pretext_overhead_{task}_{mode}: {ratio:.2f}x of plain backbone step")


if __name__ == "__main__":
    main()
