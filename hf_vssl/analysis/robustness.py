"""The robustness recipe: score a finetuned classifier on noisy test sets and write the report files.

The scoring itself is :func:`hf_vssl.evaluation.robustness.evaluate_robustness` (the finetuning
test re-run on every noise kind and severity); this module reads the checkpoint's settings, runs
it, and writes the report.

The report (``robustness.json``)::

    {"dataset": str, "preset": "video-p"|"imagenet-c", "clean_top1": float,
     "cells": [{"noise", "severity", "top1", "relative_decrease", "relative_robustness"}, ...],
     "average": {noise: {"top1", "relative_decrease", "relative_robustness"}}}   # over severities >= 1

plus ``robustness.md`` (a Markdown table) and ``robustness.png`` (accuracy vs severity per noise).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from hf_vssl.data.eval_data import ShardSplit, load_eval_videos
from hf_vssl.data.noise import MAX_SEVERITY, NOISE_KINDS, PIXEL_NOISES
from hf_vssl.evaluation.robustness import build_report, check_noises, evaluate_robustness
from hf_vssl.foundation.arguments import (
    FoundationModelArguments,
    build_zero_shot_classifier,
    dataset_class_names,
)
from hf_vssl.foundation.loading import foundation_family
from hf_vssl.models import VSSLConfig, VSSLForVideoClassification, VSSLVideoProcessor
from hf_vssl.models.loading import load_checked
from hf_vssl.training.arguments import (
    CompileArguments,
    ShortVideoArguments,
    check_model_reference,
    check_short_video,
    mixed_precision_for,
)
from hf_vssl.utils.fastpath import compile_in_place

logger = logging.getLogger(__name__)

__all__ = [
    "RobustnessArguments",
    "build_report",
    "evaluate_robustness",
    "plot_robustness",
    "report_markdown",
    "run_robustness",
    "write_report",
]

REPORT_FILES = ("robustness.json", "robustness.md", "robustness.png")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def report_markdown(report: dict[str, Any]) -> str:
    """A Markdown table: one row per noise, top-1 (%) per severity, mean top-1 and relative robustness."""
    severities = sorted({cell["severity"] for cell in report["cells"]})
    header = ["noise", *[f"s{s}" if s else "clean" for s in severities], "mean (s>=1)", "rel. robustness"]
    lines = [
        (
            f"Top-1 accuracy (%) under noise, preset `{report['preset']}`, dataset `{report['dataset']}` "
            f"(clean: {_percent(report['clean_top1'])})."
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for kind, mean in report["average"].items():
        by_severity = {c["severity"]: c["top1"] for c in report["cells"] if c["noise"] == kind}
        row = [
            kind,
            *[_percent(by_severity.get(s)) for s in severities],
            _percent(mean["top1"]),
            "-" if mean["relative_robustness"] is None else f"{mean['relative_robustness']:.3f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot_robustness(report: dict[str, Any], path: str | Path) -> Path:
    """Save a line chart of top-1 vs severity, one line per noise (severity 0 = clean)."""
    # matplotlib only when a figure is drawn (an optional, slow-to-import dependency)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for kind in report["average"]:
        cells = sorted((c for c in report["cells"] if c["noise"] == kind), key=lambda c: c["severity"])
        axes.plot([c["severity"] for c in cells], [100 * c["top1"] for c in cells], marker="o", label=kind)
    axes.axhline(100 * report["clean_top1"], color="gray", linestyle="--", linewidth=1, label="clean")
    axes.set_xlabel("severity")
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_ylim(0, 100)
    axes.set_title(f"robustness ({report['preset']}, {report['dataset']})")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def write_report(report: dict[str, Any], output_dir: str | Path) -> list[Path]:
    """Write ``robustness.json``, ``robustness.md`` and ``robustness.png`` into ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (output_dir / name for name in REPORT_FILES)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(report_markdown(report))
    plot_robustness(report, png_path)
    return [json_path, md_path, png_path]


# -- the recipe ---------------------------------------------------------------------------------


@dataclass
class RobustnessArguments(CompileArguments, FoundationModelArguments, ShortVideoArguments):
    """Settings of ``recipes/robustness.py``. Dataset settings default to the checkpoint's ``metrics.json``.

    A foundation model (X-CLIP, CLIP, SigLIP) is tested as a zero-shot classifier of the dataset's
    classes, prompted by the ``FoundationModelArguments`` settings (docs/foundation_models.md).
    """

    config: str | None = field(
        default=None, metadata={"help": "YAML file of these arguments (CLI flags win)"}
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "a finetuned classification checkpoint or a foundation model (folder or Hub id)"},
    )
    output_dir: str | None = field(default=None, metadata={"help": "default: the model's folder"})
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "a built-in source (with --dataset_root), a shard folder or a Hub dataset repo of shards "
            "(org/name); default: the dataset the model was finetuned on"
        },
    )
    dataset_root: str | None = field(
        default=None, metadata={"help": "dataset folder (default: built in for synthetic)"}
    )
    dataset_revision: str | None = field(
        default=None, metadata={"help": "Hub shard datasets: the branch, tag or commit to read"}
    )
    dataset_split: str | None = field(
        default=None,
        metadata={
            "help": "default: the finetuning's test split, else the dataset's labelled held-out split (val for "
            "kinetics400 and ssv2, test elsewhere)"
        },
    )
    fold: int | None = field(default=None, metadata={"help": "official fold (default: the finetuning's)"})
    label_set: str | None = field(
        default=None, metadata={"help": "synthetic corpus only: motion or appearance"}
    )
    noises: list[str] = field(
        default_factory=lambda: list(PIXEL_NOISES),
        metadata={"help": f"noise kinds among {', '.join(NOISE_KINDS)}"},
    )
    severities: list[int] = field(
        default_factory=lambda: list(range(1, MAX_SEVERITY + 1)),
        metadata={"help": f"severities among 1-{MAX_SEVERITY}"},
    )
    preset: str = field(default="video-p", metadata={"help": "video-p or imagenet-c"})
    seed: int = field(default=0, metadata={"help": "seed of the noise draws"})
    eval_clips: int | None = field(
        default=None, metadata={"help": "clips per video (default: as finetuning)"}
    )
    eval_crops: int | None = field(
        default=None, metadata={"help": "1 or 3 spatial crops (default: as finetuning)"}
    )
    per_device_eval_batch_size: int = field(
        default=8, metadata={"help": "evaluation clips per device and batch"}
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})
    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "bf16 autocast (faster 3D convs on CPU). Not given: the launcher decides (accelerate launch "
            "--mixed_precision, accelerate config; fp32 without any)"
        },
    )
    max_bad_fraction: float = field(
        default=0.01,
        metadata={
            "help": "stop if more than this fraction of the test videos fail to decode (the rest are reported)"
        },
    )
    short_video: str = field(
        default="loop",
        metadata={
            "help": "a test video shorter than a clip: loop or pad its frames, skip it (reported), or refuse"
        },
    )
    debug: bool = field(
        default=False, metadata={"help": "show the full traceback of an error (also HF_VSSL_DEBUG=1)"}
    )

    def __post_init__(self):
        check_model_reference(self.model_name_or_path, "--model_name_or_path")
        check_short_video(self.short_video)
        if not 0 <= self.max_bad_fraction <= 1:
            raise ValueError(f"--max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")


def _model_metrics(model_path: str) -> dict[str, Any]:
    path = Path(model_path) / "metrics.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def run_robustness(args: RobustnessArguments) -> Path:
    """Run the robustness evaluation of ``args``; write the report files; return the output folder."""
    if not args.model_name_or_path:
        raise ValueError(
            "--model_name_or_path is required: a classification checkpoint from recipes/finetune.py"
        )
    check_noises(args.noises, args.severities, args.preset)
    zero_shot = foundation_family(args.model_name_or_path) is not None
    config = None if zero_shot else VSSLConfig.from_pretrained(args.model_name_or_path)
    if config is not None and "VSSLForVideoClassification" not in (config.architectures or []):
        raise ValueError(
            f"{args.model_name_or_path} is a {config.architectures} checkpoint; robustness needs a "
            "finetuned classifier (run recipes/finetune.py first) or a foundation model"
        )
    trained = _model_metrics(args.model_name_or_path)
    evaluation = trained.get("evaluation", {})
    dataset = args.dataset or trained.get("dataset") or "synthetic"
    same_data = args.dataset is None or args.dataset == trained.get("dataset")
    fold = args.fold if args.fold is not None else int(trained.get("fold", 1))
    label_set = args.label_set or trained.get("label_set")
    videos, id2label, split = load_eval_videos(
        dataset,
        args.dataset_root,
        args.dataset_split or (trained.get("dataset_split") if same_data else None),
        fold,
        revision=args.dataset_revision,
        label_set=label_set,
    )
    accelerator = Accelerator(mixed_precision=mixed_precision_for(args))
    if zero_shot:
        class_names = dataset_class_names(
            args,
            id2label if isinstance(videos, ShardSplit) else videos,
            dataset=dataset,
            dataset_root=args.dataset_root,
            fold=fold,
            label_set=label_set,
        )
        model = build_zero_shot_classifier(
            args, args.model_name_or_path, class_names, device=accelerator.device
        )
        num_frames, image_size, frame_stride = model.num_frames, model.image_size, args.frame_stride
    else:
        too_high = max(id2label) if isinstance(videos, ShardSplit) else max(r.label for r in videos)
        if too_high >= config.num_labels:
            raise ValueError(
                f"{dataset} {split} (fold {fold}) has class index {too_high} but the model at "
                f"{args.model_name_or_path} has {config.num_labels} labels: wrong dataset or label set?"
            )
        try:
            frame_stride = VSSLVideoProcessor.from_pretrained(args.model_name_or_path).frame_stride
        except OSError:
            frame_stride = int(evaluation.get("frame_stride", 1))
        model = load_checked(VSSLForVideoClassification, args.model_name_or_path)[0].to(accelerator.device)
        num_frames, image_size = config.num_frames, config.image_size
    compile_in_place(model, args.torch_compile, args.torch_compile_mode)
    report = evaluate_robustness(
        model,
        videos,
        num_frames=num_frames,
        image_size=image_size,
        frame_stride=frame_stride,
        noises=args.noises,
        severities=args.severities,
        preset=args.preset,
        seed=args.seed,
        num_clips=args.eval_clips or int(evaluation.get("num_clips", 5)),
        num_crops=args.eval_crops or int(evaluation.get("num_crops", 1)),
        batch_size=args.per_device_eval_batch_size,
        num_workers=args.dataloader_num_workers,
        accelerator=accelerator,
        dataset_name=dataset,
        short_video=args.short_video,
        max_bad_fraction=args.max_bad_fraction,
    )
    report.update(dataset_split=split, fold=fold, label_set=label_set, model=str(args.model_name_or_path))
    output_dir = Path(args.output_dir) if args.output_dir else Path(args.model_name_or_path)
    if (
        zero_shot or not output_dir.is_dir()
    ) and not args.output_dir:  # never into a foundation model's folder
        output_dir = Path("outputs") / f"robustness-{Path(args.model_name_or_path).name}"
    if accelerator.is_main_process:
        paths = write_report(report, output_dir)
        accelerator.print(report_markdown(report))
        accelerator.print(f"wrote {', '.join(str(p) for p in paths)}")
    accelerator.wait_for_everyone()
    return output_dir
