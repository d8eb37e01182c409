"""The CKA recipe behind ``recipes/cka.py``: one model, two models, or a model against a run's checkpoints.

Loads the models (:func:`load_model`: saved folders, Hub ids or Accelerate checkpoint folders of
hf_vssl models, and the vision towers of foundation models), builds the evaluation clips, runs
:func:`hf_vssl.analysis.cka_maps.compare_models` and writes ``cka*.json`` / ``cka*.png``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from hf_vssl.data.clips import UniformClipSampler
from hf_vssl.data.datasets import collate_clips
from hf_vssl.data.eval_data import eval_clip_dataset, expected_videos, load_eval_videos
from hf_vssl.data.sources import SOURCES
from hf_vssl.data.transforms import build_transform
from hf_vssl.foundation.loading import foundation_family
from hf_vssl.foundation.vision import load_vision_backbone
from hf_vssl.models import VSSLModel
from hf_vssl.models.loading import load_vssl_model
from hf_vssl.training.arguments import (
    CompileArguments,
    ShortVideoArguments,
    check_model_reference,
    check_short_video,
)
from hf_vssl.utils.fastpath import compile_in_place

from .cka_maps import compare_models

logger = logging.getLogger(__name__)

__all__ = ["CKAArguments", "find_checkpoints", "run_cka"]


def _step_key(path: Path) -> tuple[int, str]:
    numbers = re.findall(r"\d+", path.name)
    return (int(numbers[-1]) if numbers else -1, path.name)


def find_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoints of one run, oldest first.

    ``directory`` is a run folder (its ``checkpoints/checkpoint-N``), that ``checkpoints`` folder
    itself, or a folder of exported model folders (each with ``config.json``), ordered by the
    last number in their names.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"--checkpoints {directory}: not a folder")
    root = directory / "checkpoints" if (directory / "checkpoints").is_dir() else directory
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and ((p / "model.safetensors").is_file() or (p / "config.json").is_file())
    ]
    if not found:
        raise FileNotFoundError(
            f"--checkpoints {directory}: no checkpoint folders (with model.safetensors or config.json) found"
        )
    return sorted(found, key=_step_key)


@dataclass
class CKAArguments(CompileArguments, ShortVideoArguments):
    """Settings of ``recipes/cka.py``."""

    config: str | None = field(
        default=None, metadata={"help": "YAML file of these arguments (CLI flags win)"}
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "model A: a local folder or a Hub id (default with --checkpoints: that run's final model)"
        },
    )
    compare_to: str | None = field(default=None, metadata={"help": "model B: map A's stages against B's"})
    checkpoints: str | None = field(
        default=None,
        metadata={"help": "a run folder (or a folder of exports): map A against every checkpoint"},
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "default: A's folder (with --compare_to: A's folder/cka-vs-<B>)"}
    )
    dataset: str = field(
        default="synthetic",
        metadata={
            "help": "ucf101, hmdb51, kinetics400, ssv2, diving48, videofolder, synthetic, a shard folder or a Hub "
            "dataset repo of shards (org/name)"
        },
    )
    dataset_root: str | None = field(default=None, metadata={"help": "dataset folder (synthetic: built in)"})
    dataset_revision: str | None = field(
        default=None, metadata={"help": "Hub shard datasets: the branch, tag or commit to read"}
    )
    dataset_split: str | None = field(
        default=None,
        metadata={
            "help": "split of --dataset whose videos are compared (default: its held-out evaluation split: val for "
            "kinetics400 and ssv2, test elsewhere)"
        },
    )
    fold: int = field(default=1, metadata={"help": "official fold (UCF101 / HMDB51: 1-3)"})
    label_set: str | None = field(
        default=None, metadata={"help": "synthetic corpus only: motion or appearance"}
    )
    num_videos: int | None = field(
        default=256,
        metadata={
            "help": "class-balanced subset of this many videos (shards: the first ones in manifest order)"
        },
    )
    per_device_eval_batch_size: int = field(default=16, metadata={"help": "clips per CKA minibatch (> 3)"})
    num_frames: int | None = field(default=None, metadata={"help": "default: model A's"})
    image_size: int | None = field(default=None, metadata={"help": "default: model A's"})
    frame_stride: int = field(default=1, metadata={"help": "temporal stride of the clips"})
    short_video: str = field(
        default="loop",
        metadata={
            "help": "a video shorter than a clip: loop or pad its frames, skip it (the next video is used, the same "
            "for every model), or refuse"
        },
    )
    kernel: str = field(default="linear", metadata={"help": "linear or rbf"})
    rbf_threshold: float = field(
        default=0.5,
        metadata={"help": "rbf kernel: bandwidth as this fraction of the median pairwise distance"},
    )
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast for the forward passes"})
    device: str | None = field(default=None, metadata={"help": "default: cuda if available, else cpu"})
    dataloader_num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes"})
    seed: int = field(default=0, metadata={"help": "seed of the video subset"})
    debug: bool = field(
        default=False, metadata={"help": "show the full traceback of an error (also HF_VSSL_DEBUG=1)"}
    )

    def __post_init__(self):
        check_model_reference(self.model_name_or_path, "--model_name_or_path")
        check_model_reference(self.compare_to, "--compare_to")
        check_short_video(self.short_video)


def _display_name(path_or_id: str) -> str:
    path = Path(path_or_id)
    return path.name if path.exists() else str(path_or_id)


def _build_loader(args: CKAArguments, num_frames: int, image_size: int):
    if args.per_device_eval_batch_size <= 3:
        raise ValueError(
            f"--per_device_eval_batch_size must be > 3 (the unbiased CKA estimator needs n > 3), "
            f"got {args.per_device_eval_batch_size}"
        )
    from_source = args.dataset.lower() in SOURCES
    videos, _, _ = load_eval_videos(
        args.dataset,
        args.dataset_root,
        args.dataset_split,
        args.fold,
        revision=args.dataset_revision,
        label_set=args.label_set,
        subset_size=args.num_videos if from_source else None,
        subset_seed=args.seed,
        limit=None if from_source else args.num_videos,
    )
    # Every model must see the same clips: a video is looped/padded/refused per --short_video, or
    # (skip) replaced by the next one (a stream: left out) in the same way for every model.
    dataset = eval_clip_dataset(
        videos,
        UniformClipSampler(num_frames, args.frame_stride, mode="center", short_video="error"),
        transform=build_transform("eval", image_size, train=False),
        seed=args.seed,
        short_video=args.short_video,
        substitute=True,
    )
    # A last batch of <= 3 clips cannot enter the unbiased estimator: drop it rather than warn.
    drop_last = 0 < expected_videos(dataset) % args.per_device_eval_batch_size <= 3
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=args.per_device_eval_batch_size,
        shuffle=False,
        drop_last=drop_last,
        collate_fn=collate_clips,
        num_workers=args.dataloader_num_workers,
        pin_memory=torch.cuda.is_available(),
    )


def load_model(path_or_id: str | Path) -> VSSLModel:
    """The :class:`VSSLModel` to map: an hf_vssl model (:func:`hf_vssl.models.loading.load_vssl_model`),
    or a foundation model's vision tower (X-CLIP, CLIP, SigLIP; one stage per encoder layer)."""
    if foundation_family(path_or_id) is not None:
        return load_vision_backbone(path_or_id)
    return load_vssl_model(path_or_id)


def run_cka(args: CKAArguments) -> Path:
    """Compute and save the CKA map(s) described by ``args``; return the output folder.

    - ``--model_name_or_path A``: A's stages against themselves -> ``cka.json`` + ``cka.png``;
    - ``--compare_to B``: A's stages (rows) against B's (columns) -> ``cka.json`` + ``cka.png``;
    - ``--checkpoints DIR``: A against every checkpoint of the run -> ``cka_<checkpoint>.json/png``
      per checkpoint, plus ``cka_checkpoints.json`` (per-stage diagonal CKA by checkpoint) and
      ``cka_checkpoints.png`` (those curves).
    """
    if args.compare_to and args.checkpoints:
        raise ValueError("pass --compare_to or --checkpoints, not both")
    if args.kernel not in ("linear", "rbf"):
        raise ValueError(f"--kernel must be 'linear' or 'rbf', got {args.kernel!r}")
    model_path = args.model_name_or_path or args.checkpoints
    if model_path is None:
        raise ValueError(
            "--model_name_or_path is required (or --checkpoints, whose run folder is then model A)"
        )
    checkpoints = find_checkpoints(args.checkpoints) if args.checkpoints else []
    if not args.model_name_or_path and not (Path(model_path) / "config.json").is_file():
        raise FileNotFoundError(
            f"--checkpoints {model_path}: the run has no final model (config.json) yet; pass "
            "--model_name_or_path (e.g. its newest checkpoint folder) as model A"
        )
    model_a = load_model(model_path)
    name_a = _display_name(model_path)
    others: dict[str, nn.Module] = {}
    if args.compare_to:
        name_b = _display_name(args.compare_to)
        if name_b == name_a:
            name_b = f"{name_b} (B)"
        others[name_b] = load_model(args.compare_to)
    for path in checkpoints:
        others[path.name] = load_model(path)

    local_a = Path(model_path).is_dir()
    if args.output_dir:
        output_dir = Path(args.output_dir)
    else:
        output_dir = Path(model_path) if local_a else Path("outputs") / "cka" / name_a.replace("/", "--")
        if args.compare_to:
            output_dir = output_dir / f"cka-vs-{next(iter(others)).replace('/', '--').replace(' ', '')}"
    for model in (model_a, *others.values()):  # in place: the capture's hooks still see every layer
        compile_in_place(model, args.torch_compile, args.torch_compile_mode)
    loader = _build_loader(
        args, args.num_frames or model_a.config.num_frames, args.image_size or model_a.config.image_size
    )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    maps = compare_models(
        model_a,
        loader,
        others,
        name_a=name_a,
        device=device,
        kernel=args.kernel,
        threshold=args.rbf_threshold,
        autocast_dtype=torch.bfloat16 if args.bf16 else None,
    )
    if not checkpoints:
        (cka_map,) = maps.values()
        json_path, png_path = cka_map.save(output_dir)
        logger.info("wrote %s and %s", json_path, png_path)
        return output_dir
    summary = {"model_a": name_a, "layers": maps[checkpoints[0].name].layers_a, "checkpoints": []}
    for path in checkpoints:
        cka_map = maps[path.name]
        stem = f"cka_{path.name}"
        cka_map.save(output_dir, stem, title=f"CKA: {name_a} (y) vs {path.name} (x)")
        summary["checkpoints"].append(
            {
                "name": path.name,
                "step": _step_key(path)[0],
                "file": f"{stem}.json",
                "diagonal": cka_map.diagonal,
            }
        )
    (output_dir / "cka_checkpoints.json").write_text(json.dumps(summary, indent=2))
    _plot_sweep(summary, output_dir / "cka_checkpoints.png")
    return output_dir


def _plot_sweep(summary: dict, path: Path) -> Path:
    """One line per stage: CKA between the stage at each checkpoint and the same stage of model A."""
    # matplotlib (optional, slow to import) only when a figure is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    steps = [entry["step"] for entry in summary["checkpoints"]]
    for index, layer in enumerate(summary["layers"]):
        axes.plot(
            steps, [entry["diagonal"][index] for entry in summary["checkpoints"]], marker="o", label=layer
        )
    axes.set_xlabel("checkpoint step")
    axes.set_ylabel(f"CKA with {summary['model_a']}")
    axes.set_ylim(0, 1.05)
    axes.set_title("Stage similarity across training")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path
