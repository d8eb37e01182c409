"""End-to-end pretraining throughput: shards -> decode -> sample -> augment -> model step, against the step alone.

The whole step, as ``recipes/pretrain.py`` runs it: WebDataset shards written by
``hf_vssl.data.shards.build_shards`` (from the built-in synthetic corpus, re-encoded like a
published shard set), streamed by ``StreamingClipDataset`` (``load_video_dataset``), planned by
the task's own sampler, decoded with torchcodec, transformed by the recipe's
``train_transforms`` (the uint8 crop in the loader and ``BatchAugment`` on the device on CUDA,
the whole augmentation in the loader on a CPU), collated by ``collate_clips`` in DataLoader
workers with the recipe's pinned, prefetching loader options, copied non-blocking, then the
recipe's training step (the task's loss, backward, the task's optimiser with fused steps on
CUDA).

The baseline is the same model step alone on the same device, on one pre-collated, already
augmented batch kept on the device. The two are timed in alternation (rounds of ``--steps``
steps each) and

    ratio = end-to-end clips/s / model-step clips/s        (target >= 0.9 on the study's GPU)

Variants: CPU decode workers (``--workers``, each count timed against the step alone), and on
CUDA torchcodec's CUDA decoder (NVDEC, ``VideoDecoder(..., device="cuda")``) in the training
process, whose frames are resized to the loader's crop size on the device (the random crop is
replaced by a resize there) before the same ``BatchAugment``; skipped with a printed reason where
torchcodec has no CUDA support or there is no GPU.

TFLOP/s: the zoo's forward FLOP count of the backbone (``hf_vssl.utils.profiling.count_gflops``)
times 3 (forward + backward) per backbone clip; pretext heads are not counted.

``--tiny``: a seconds-long CPU smoke run (the test suite's). ``--full`` on a GPU: the study's
16x112x112 clips, batch 32, width 1.0, bf16, channels_last_3d. Prints
``RESULT pretrain_e2e_<variant>: <ratio>x of the model step alone (<clips/s>, <TFLOP/s>)``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import hf_vssl  # noqa: F401  (registers the Auto classes)
from hf_vssl import VSSLConfig
from hf_vssl.data.batch_augment import train_transforms
from hf_vssl.data.datasets import collate_clips
from hf_vssl.data.loading import load_records
from hf_vssl.data.shards import build_shards
from hf_vssl.data.shards.read import iter_shard_samples
from hf_vssl.data.shards.reencode import ReencodeOptions
from hf_vssl.data.streaming import StreamingClipDataset, load_video_dataset
from hf_vssl.data.synthetic import make_synthetic_dataset
from hf_vssl.pretext import VSSLForPretraining, list_pretext_tasks
from hf_vssl.training.loop import to_channels_last_3d
from hf_vssl.training.optim import build_optimizer, resolve_optimizer_settings, use_fused_steps
from hf_vssl.utils.fastpath import (
    COMPILE_MODES,
    compile_in_place,
    enable_cuda_fast_path,
    loader_transfer_options,
)
from hf_vssl.utils.profiling import count_gflops

SIZES = {
    "tiny": {"batch": 2, "frames": 4, "size": 32, "width": 0.125, "videos": 8, "video_size": 48, "steps": 2},
    "cpu": {"batch": 8, "frames": 8, "size": 56, "width": 0.25, "videos": 32, "video_size": 64, "steps": 3},
    "full": {
        "batch": 32,
        "frames": 16,
        "size": 112,
        "width": 1.0,
        "videos": 512,
        "video_size": 128,
        "steps": 10,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="study size on a GPU (16x112x112, batch 32, bf16)")
    size.add_argument("--tiny", action="store_true", help="a seconds-long CPU smoke run")
    parser.add_argument("--task", default="rotnet", choices=list_pretext_tasks())
    parser.add_argument("--backbone", default="r21d")
    for name in ("batch", "frames", "size", "videos", "video_size", "steps"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--width", type=float)
    parser.add_argument("--video_frames", type=int, default=64, help="frames per source video")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of --steps steps each")
    parser.add_argument(
        "--workers", type=int, nargs="+", help="DataLoader worker counts to time (default: all cores)"
    )
    parser.add_argument(
        "--bf16", action=argparse.BooleanOptionalAction, default=None, help="default: on CUDA"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (the recipes' path)")
    parser.add_argument("--compile_mode", default="default", choices=COMPILE_MODES)
    parser.add_argument("--cuda_decode", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--work_dir", help="where the corpus and shards go (default: a temporary folder)")
    args = parser.parse_args(argv)
    preset = SIZES["full" if args.full else "tiny" if args.tiny else "cpu"]
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.workers is None:
        args.workers = [0] if args.tiny else [max(1, min(os.cpu_count() or 1, 16) - 1)]
    return args


def build_shard_set(work_dir: Path, args: argparse.Namespace) -> Path:
    """The synthetic corpus, written as re-encoded WebDataset shards (one per worker at least)."""
    shards = work_dir / "shards"
    if (shards / "manifest.json").is_file():
        return shards
    classes = 4
    root = make_synthetic_dataset(
        work_dir / "corpus",
        layout="ucf101",
        seed=0,
        num_classes=classes,
        videos_per_class=max(4, math.ceil(args.videos / classes)),  # the corpus needs 2 groups of 2 per class
        clips_per_group=2,
        num_frames=args.video_frames,
        size=(args.video_size, args.video_size),
    )
    records = load_records("synthetic", str(root), "train")
    per_shard = max(1, len(records) // max(2, 2 * max(args.workers)))
    build_shards(
        records, shards, shard_size=per_shard, reencode=ReencodeOptions(short_side=None), split="train"
    )
    return shards


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Trainer:
    """The recipe's model, optimiser and step on ``device``."""

    def __init__(self, args: argparse.Namespace, device: torch.device):
        config = VSSLConfig(
            backbone=args.backbone,
            width_multiplier=args.width,
            num_frames=args.frames,
            image_size=args.size,
            pretext_task=args.task,
        )
        torch.manual_seed(0)
        self.model = VSSLForPretraining(config).to(device).train()
        if device.type == "cuda":
            to_channels_last_3d(self.model)
        compile_in_place(self.model, args.compile, args.compile_mode)
        settings = resolve_optimizer_settings(self.model.pretext.optimizer_defaults, args.batch)
        self.optimizer = build_optimizer(self.model, settings)
        use_fused_steps(self.optimizer, device)
        self.device = device
        self.generator = torch.Generator(device=device)
        bf16 = device.type == "cuda" if args.bf16 is None else args.bf16
        self.autocast = (
            (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        )
        self.clips_per_sample = self.model.num_clips
        self.gflops_per_clip = 3 * count_gflops(
            self.model.vssl.backbone, (1, 3, args.frames, args.size, args.size)
        )

    def to_device(self, batch: dict) -> dict:
        return {
            k: v.to(self.device, non_blocking=True)
            for k, v in batch.items()
            if isinstance(v, torch.Tensor) and k not in ("labels", "index")
        }

    def step(self, batch: dict) -> None:
        """The recipe's micro-batch: the task's loss with its sampler's labels, backward, optimiser step."""
        self.generator.manual_seed(0)
        with self.autocast():
            loss = self.model(generator=self.generator, **batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def loader_batches(shards: Path, trainer: Trainer, args: argparse.Namespace, workers: int):
    """Endless device batches through the recipe's streaming dataset, loader and augmentation."""
    transform, device_augment = train_transforms(
        trainer.model.transform_preset, args.size, "auto", trainer.device, seed=0
    )
    dataset = StreamingClipDataset(
        load_video_dataset(str(shards), "train"), trainer.model.sampler(args.frames), transform, seed=0
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch,
        drop_last=True,
        collate_fn=collate_clips,
        num_workers=workers,
        persistent_workers=workers > 0,
        **loader_transfer_options(workers),
    )
    epoch, index = 0, 0
    while True:
        dataset.set_epoch(epoch)
        for batch in loader:
            batch = trainer.to_device(batch)
            if device_augment is not None:
                batch["pixel_values"] = device_augment(batch["pixel_values"], epoch, index)
            index += 1
            yield batch
        epoch += 1


def cuda_decoded_batches(shards: Path, trainer: Trainer, args: argparse.Namespace):
    """Endless device batches decoded by torchcodec's CUDA decoder in this process (see the docstring)."""
    from torchcodec.decoders import VideoDecoder  # optional CUDA path: only this variant needs it

    transform, device_augment = train_transforms(
        trainer.model.transform_preset, args.size, "device", trainer.device, seed=0
    )
    crop = getattr(transform, "output_size", args.size)
    crop = crop if isinstance(crop, int) else crop[0]
    sampler, rng = trainer.model.sampler(args.frames), np.random.default_rng(0)
    samples, index = [], 0
    while True:
        for data, _meta in iter_shard_samples(shards, "train"):
            decoder = VideoDecoder(data, device="cuda", seek_mode="approximate")
            plan = sampler.plan(decoder.metadata.num_frames, rng)
            indices = np.concatenate(plan.indices)
            frames = decoder.get_frames_at(indices.tolist()).data  # (N, C, H, W) uint8 on the GPU
            frames = F.interpolate(frames.float(), size=(crop, crop), mode="bilinear", antialias=False)
            clips = frames.round().clamp(0, 255).to(torch.uint8).view(len(plan.indices), -1, 3, crop, crop)
            samples.append((clips if len(plan.indices) > 1 else clips[0], plan.info))
            if len(samples) < args.batch:
                continue
            pixels = torch.stack([clip for clip, _ in samples])
            batch = {"pixel_values": device_augment(pixels, 0, index)}
            batch.update(
                {
                    k: torch.tensor([info[k] for _, info in samples], device=trainer.device)
                    for k in samples[0][1]
                }
            )
            samples, index = [], index + 1
            yield batch


def timed(step, count: int, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(count):
        step()
    synchronize(device)
    return time.perf_counter() - start


def compare(name: str, batches, trainer: Trainer, args: argparse.Namespace) -> None:
    """Alternate ``--steps`` end-to-end steps and as many model-only steps, ``--rounds`` times."""
    fixed = next(batches)  # the model-only baseline: one augmented batch, kept on the device
    e2e = lambda: trainer.step(next(batches))  # noqa: E731
    alone = lambda: trainer.step(fixed)  # noqa: E731
    timed(e2e, 1, trainer.device), timed(alone, 1, trainer.device)  # warm-up (workers, autotuning, compile)
    seconds = {"e2e": 0.0, "alone": 0.0}
    for _ in range(args.rounds):
        seconds["e2e"] += timed(e2e, args.steps, trainer.device)
        seconds["alone"] += timed(alone, args.steps, trainer.device)
    batches.close()  # stops this variant's loader workers before the next variant runs
    clips = args.rounds * args.steps * args.batch * trainer.clips_per_sample
    e2e_rate, alone_rate = clips / seconds["e2e"], clips / seconds["alone"]
    tflops = e2e_rate * trainer.gflops_per_clip / 1e3
    print(
        f"{name:14s} end-to-end {e2e_rate:9.1f} clips/s ({tflops:8.3g} TFLOP/s)  model step alone "
        f"{alone_rate:9.1f} clips/s ({alone_rate * trainer.gflops_per_clip / 1e3:8.3g} TFLOP/s)  "
        f"ratio {e2e_rate / alone_rate:.2f}",
        flush=True,
    )
    suffix = "_compiled" if args.compile else ""
    print(
        f"RESULT pretrain_e2e_{name}{suffix}: {e2e_rate / alone_rate:.2f}x of the model step alone "
        f"({e2e_rate:.1f} clips/s, {tflops:.3g} TFLOP/s)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.full and device.type != "cuda":
        raise SystemExit("--full needs a GPU (torch.cuda.is_available() is False); run without it on CPU.")
    if args.tiny:
        torch.set_num_threads(1)
    enable_cuda_fast_path(device)
    with contextlib.ExitStack() as stack:
        work_dir = Path(
            args.work_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="pretrain_e2e_"))
        )
        started = time.perf_counter()
        shards = build_shard_set(work_dir, args)
        trainer = Trainer(args, device)
        print(
            f"device={device} task={args.task} backbone={args.backbone} width={args.width} "
            f"clip={args.frames}x{args.size}x{args.size} batch={args.batch} bf16={trainer.autocast is not contextlib.nullcontext} "
            f"compile={args.compile_mode if args.compile else 'off'} videos={args.videos} "
            f"({args.video_size}px, {args.video_frames} frames; shards built in {time.perf_counter() - started:.0f}s)",
            flush=True,
        )
        for workers in args.workers:
            compare(f"cpu_workers{workers}", loader_batches(shards, trainer, args, workers), trainer, args)
        if not args.cuda_decode:
            print("SKIP cuda_decode: --no-cuda_decode")
        elif device.type != "cuda":
            print("SKIP cuda_decode: no CUDA device (torchcodec's CUDA decoder needs one)")
        else:
            try:
                compare("cuda_decode", cuda_decoded_batches(shards, trainer, args), trainer, args)
            except (
                RuntimeError,
                ValueError,
                ImportError,
            ) as error:  # no NVDEC support in this torchcodec build
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                print(f"SKIP cuda_decode: torchcodec's CUDA decoder failed: {reason}")


if __name__ == "__main__":
    main()
