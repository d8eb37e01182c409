"""Supervised probe of each pretext task's cue on the synthetic corpus: can the data show it at all?

A pretext objective that stays at chance may be limited by its method, its optimiser or by the
data: if the corpus cannot show the cue at the default clip shape, no objective built on it can
learn. This script trains the pretraining backbone (R(2+1)D, 1/4 width, 8x56x56 clips, batch 8,
bf16 autocast) plus a *linear* head with cross-entropy on the cue's label itself, for a fixed
number of steps, and reports the training accuracy (mean of the last 50 steps) and the accuracy
on the held-out split (fold 1's test videos, deterministic eval crop, a fixed number of samples
per video). Every cue reads its clips with its task's own sampler and augmentation preset:

- ``rotation`` (RotNet, the control): one clip, rotated by 0/90/180/270 degrees, 4 classes;
- ``speed`` (RSPNet): the query clip cut from the sampler's speed window at 1x or 2x, 2 classes;
- ``rate`` (PRP): the model input of the playback-rate sampler (every other frame of its
  ``2 * num_frames`` clip), rates 1/2/4/8, 4 classes;
- ``order`` (VCOP): the sampler's 3 shuffled clips, their features concatenated, 6 orders;
- ``segment`` (TDL): a pair classifier -- the anchor against either its positive (the same
  frames, separately augmented) or its negative (2+ frames away), features combined as
  ``[|a - b|, a * b]``, 2 classes.

The optimiser is AdamW 1e-3 (weight decay 1e-4, 5 % linear warm-up) for every cue, so that only
the cue differs. Runs are seeded and deterministic on one thread. Writes ``cue_probe.json`` and
``cue_probe.md`` to ``--out``::

    OMP_NUM_THREADS=1 python scripts/cue_probe.py --out /tmp/probe --steps 300
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hf_vssl.data.datasets import VideoClipDataset, collate_clips
from hf_vssl.data.loading import load_records
from hf_vssl.data.synthetic import get_default_corpus, read_metadata
from hf_vssl.data.transforms.presets import build_transform
from hf_vssl.models import VSSLConfig, VSSLModel
from hf_vssl.pretext.registry import get_pretext_task_class
from hf_vssl.pretext.rotnet import ROTATION_SETS, rotate_clips
from hf_vssl.pretext.rspnet import speed_window, window_clip_length


@dataclass(frozen=True)
class Cue:
    """One probe: the task whose sampler and preset it uses, its classes and how a batch becomes
    ``(features, labels)``: ``inputs(model, batch, generator) -> (head input, label)``."""

    task: str
    num_classes: int
    feature_factor: int  # head input = feature_factor * backbone features
    inputs: Callable[[nn.Module, dict, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def _pooled(model: nn.Module, clips: torch.Tensor) -> torch.Tensor:
    return model(clips, return_dict=True).pooler_output.float()


def _rotation(model, batch, generator):
    clips = batch["pixel_values"]
    label = torch.randint(4, (clips.shape[0],), generator=generator)
    return _pooled(model, rotate_clips(clips, label, ROTATION_SETS[4])), label


def _speed_clip(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """RSPNet's query clip (1x or 2x, cut from the query window as the task cuts it) and its speed."""
    windows, label = batch["pixel_values"], batch["query_speed"].long()
    speeds = (1, 2)
    positions = torch.as_tensor(speed_window(window_clip_length(windows.shape[2], speeds), speeds)[1])
    rows = torch.arange(windows.shape[0])[:, None]
    return windows[:, 0][rows, positions[label]], label


def _rate_clip(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """PRP's model input (every other frame of the sampler's clip) and its rate class."""
    return batch["pixel_values"][:, 0::2], batch["rate"].long()


def _speed(model, batch, generator):
    clip, label = _speed_clip(batch)
    return _pooled(model, clip), label


def _rate(model, batch, generator):
    clip, label = _rate_clip(batch)
    return _pooled(model, clip), label


def _order(model, batch, generator):
    clips = batch["pixel_values"]  # one backbone pass per tuple position, as VCOP does
    return torch.cat([_pooled(model, clips[:, i]) for i in range(clips.shape[1])], 1), batch[
        "permutation"
    ].long()


def _segment(model, batch, generator):
    clips = batch["pixel_values"]  # anchor, positive (same frames), negative (2+ frames away)
    label = torch.randint(2, (clips.shape[0],), generator=generator)  # 1: same segment
    partner = torch.where(label.view(-1, 1, 1, 1, 1).bool(), clips[:, 1], clips[:, 2])
    both = _pooled(model, torch.cat([clips[:, 0], partner]))
    a, b = both.chunk(2)
    return torch.cat([(a - b).abs(), a * b], 1), label


CUES: dict[str, Cue] = {
    "rotation": Cue("rotnet", 4, 1, _rotation),
    "speed": Cue("rspnet", 2, 1, _speed),
    "rate": Cue("prp", 4, 1, _rate),
    "order": Cue("vcop", 6, 3, _order),
    "segment": Cue("tdl", 2, 2, _segment),
}


def _dataset(records, cue: Cue, args, train: bool, seed: int) -> VideoClipDataset:
    task_class = get_pretext_task_class(cue.task)
    task = task_class(task_class.settings_class(), num_features=64)  # default settings: the task's sampler
    transform = build_transform(task.transform_preset, args.image_size, train=train)
    return VideoClipDataset(records, task.sampler(args.num_frames), transform=transform, seed=seed)


def _batches(dataset: VideoClipDataset, batch_size: int, rng: np.random.Generator, epochs: int):
    """Shuffled (training) or ordered (``rng=None``) batches over ``epochs`` epochs."""
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        order = rng.permutation(len(dataset)) if rng is not None else np.arange(len(dataset))
        stop = len(order) - len(order) % batch_size if rng is not None else len(order)
        for i in range(0, stop, batch_size):
            yield collate_clips([dataset[int(j)] for j in order[i : i + batch_size]])


#: cues whose label is a playback speed: a hand-made motion-energy baseline is measured too.
SPEED_CLIPS: dict[str, Callable[[dict], tuple[torch.Tensor, torch.Tensor]]] = {
    "speed": _speed_clip,
    "rate": _rate_clip,
}


def motion_energy(clips: torch.Tensor) -> torch.Tensor:
    """``(B, T, C, H, W)`` -> ``(B, 5)`` log motion-energy features: mean absolute frame difference
    at lags 1 and 2, mean spatial gradient, and the two ratios that make them contrast-free."""
    grey = clips.float().mean(2)
    lag1 = (grey[:, 1:] - grey[:, :-1]).abs().mean((1, 2, 3))
    lag2 = (grey[:, 2:] - grey[:, :-2]).abs().mean((1, 2, 3))
    gradient = (grey[..., 1:, :] - grey[..., :-1, :]).abs().mean((1, 2, 3)) + (
        grey[..., 1:] - grey[..., :-1]
    ).abs().mean((1, 2, 3))
    return torch.stack([lag1, lag2, gradient, lag1 / gradient, lag2 / lag1], 1).clamp_min(1e-6).log()


def ridge_fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, classes: int
) -> np.ndarray:
    """Class predictions of a ridge classifier (one-hot targets, standardised features)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    design = np.c_[(x_train - mean) / std, np.ones(len(x_train))]
    weights = np.linalg.solve(
        design.T @ design + 1e-3 * np.eye(design.shape[1]), design.T @ np.eye(classes)[y_train]
    )
    return (np.c_[(x_test - mean) / std, np.ones(len(x_test))] @ weights).argmax(1)


def energy_baseline(name: str, args) -> dict:
    """Accuracy of :func:`motion_energy` + ridge on cue ``name``'s clips (no network): whether the
    clips' frame differences alone tell the speeds apart, on the held-out split."""
    cue, clip_of = CUES[name], SPEED_CLIPS[name]

    def features(split: str, train: bool, seed: int, epochs: int) -> tuple[np.ndarray, np.ndarray]:
        dataset = _dataset(load_records("synthetic", args.dataset_root, split, 1), cue, args, train, seed)
        xs, ys = [], []
        for batch in _batches(dataset, 16, None, epochs):
            clip, label = clip_of(batch)
            xs.append(motion_energy(clip).numpy())
            ys.append(label.numpy())
        return np.concatenate(xs), np.concatenate(ys)

    x_train, y_train = features("train", True, args.seed, args.eval_samples_per_video)
    x_test, y_test = features("test", False, args.seed + 1000, args.eval_samples_per_video)
    accuracy = float((ridge_fit_predict(x_train, y_train, x_test, cue.num_classes) == y_test).mean())
    return {"energy_baseline_accuracy": accuracy, "energy_baseline_train_samples": len(y_train)}


def binomial_threshold(chance: float, n: int) -> float:
    """Chance + 3 binomial standard deviations of a mean of ``n`` independent guesses."""
    return chance + 3 * math.sqrt(chance * (1 - chance) / max(n, 1))


def probe(name: str, args) -> dict:
    """Train backbone + linear head on cue ``name``; return its measurements."""
    cue = CUES[name]
    torch.manual_seed(args.seed)
    config = VSSLConfig(
        backbone="r21d", width_multiplier=0.25, num_frames=args.num_frames, image_size=args.image_size
    )
    model = VSSLModel(config)
    head = nn.Linear(cue.feature_factor * model.num_features, cue.num_classes)
    params = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    train_records = load_records("synthetic", args.dataset_root, "train", 1)
    test_records = load_records("synthetic", args.dataset_root, "test", 1)
    train_set = _dataset(train_records, cue, args, True, args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    epochs = math.ceil(args.steps * args.batch_size / (len(train_set) - len(train_set) % args.batch_size)) + 1
    batches = _batches(train_set, args.batch_size, np.random.default_rng(args.seed), epochs)
    correct, losses, start = [], [], time.perf_counter()
    model.train()
    for _step, batch in zip(range(args.steps), batches):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            features, label = cue.inputs(model, batch, generator)
            logits = head(features).float()
        loss = F.cross_entropy(logits, label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        correct.append((logits.argmax(1) == label).float().mean().item())
        losses.append(loss.item())
        if len(correct) % 50 == 0:
            print(f"{name} step {len(correct)}: train accuracy {np.mean(correct[-50:]):.3f}", flush=True)
    train_seconds = time.perf_counter() - start

    model.eval()
    test_set = _dataset(test_records, cue, args, False, args.seed + 1000)
    eval_generator = torch.Generator().manual_seed(args.seed + 1000)
    hits, seen = 0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
        for batch in _batches(test_set, 16, None, args.eval_samples_per_video):
            features, label = cue.inputs(model, batch, eval_generator)
            hits += int((head(features).float().argmax(1) == label).sum())
            seen += len(label)
    chance = 1 / cue.num_classes
    tail = min(50, len(correct))
    heldout = hits / seen
    return {
        "cue": name,
        "task": cue.task,
        "classes": cue.num_classes,
        "chance": chance,
        "steps": len(correct),
        "train_accuracy_last50": float(np.mean(correct[-tail:])),
        "train_threshold": binomial_threshold(chance, tail * args.batch_size),
        "heldout_accuracy": heldout,
        "heldout_samples": seen,
        "heldout_threshold": binomial_threshold(chance, seen),
        "learns": heldout > binomial_threshold(chance, seen),
        "loss_first50": float(np.mean(losses[:tail])),
        "loss_last50": float(np.mean(losses[-tail:])),
        "accuracy_every_50": [
            round(float(np.mean(correct[i : i + 50])), 3) for i in range(0, len(correct), 50)
        ],
        "train_seconds": round(train_seconds, 1),
    }


def markdown(results: list[dict], args) -> str:
    lines = [
        f"Cue probe (corpus v{args.corpus_version}, {args.num_frames}x{args.image_size}x{args.image_size}, "
        f"r21d 1/4 width, batch {args.batch_size}, {args.steps} steps, AdamW {args.lr}, seed {args.seed})",
        "",
        "| cue | chance | train acc (last 50 steps) | held-out acc | held-out threshold | learns | "
        "loss first -> last 50 | train acc per 50 steps | motion-energy baseline (held-out) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        baseline = f"{r['energy_baseline_accuracy']:.3f}" if "energy_baseline_accuracy" in r else "-"
        if "heldout_accuracy" not in r:  # --baseline_only
            lines.append(
                f"| {r['cue']} | {1 / CUES[r['cue']].num_classes:.3f} | - | - | - | - | - | - | {baseline} |"
            )
            continue
        lines.append(
            f"| {r['cue']} ({r['task']}) | {r['chance']:.3f} | {r['train_accuracy_last50']:.3f} | "
            f"{r['heldout_accuracy']:.3f} (n={r['heldout_samples']}) | {r['heldout_threshold']:.3f} | "
            f"{'yes' if r['learns'] else 'no'} | {r['loss_first50']:.3f} -> {r['loss_last50']:.3f} | "
            f"{' '.join(f'{a:.2f}' for a in r['accuracy_every_50'])} | {baseline} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for cue_probe.json and cue_probe.md")
    parser.add_argument("--cues", nargs="+", default=list(CUES), choices=list(CUES))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--image_size", type=int, default=56)
    parser.add_argument("--eval_samples_per_video", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", type=lambda s: s.lower() in ("1", "true", "yes"), default=True)
    parser.add_argument(
        "--dataset_root", default=None, help="a synthetic corpus folder (default: the built-in corpus)"
    )
    parser.add_argument(
        "--baseline_only", action="store_true", help="only the motion-energy baseline of the speed cues"
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    args.corpus_version = read_metadata(args.dataset_root or get_default_corpus())["version"]
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.cues:  # one after another: the probes share the machine
        result = {} if args.baseline_only else probe(name, args)
        if name in SPEED_CLIPS:
            result |= energy_baseline(name, args)
        result.setdefault("cue", name)
        results.append(result)
        print(json.dumps(results[-1]), flush=True)
        settings = {k: v for k, v in vars(args).items() if k != "out"}
        (out / "cue_probe.json").write_text(json.dumps({"settings": settings, "results": results}, indent=1))
        (out / "cue_probe.md").write_text(markdown(results, args))


if __name__ == "__main__":
    main()
