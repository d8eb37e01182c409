"""Robustness of a video classifier to input noise: the evaluation re-run on noisy variants of the test set.

Each noise kind (the study's; temporal perturbations too) at severities 1-5 is applied
to the uint8 frames of every test clip, seeded per (seed, video id), then the model is tested
exactly as after finetuning (:func:`hf_vssl.training.evaluation.evaluate_classifier`, video-level
top-1). Severity 0 is the clean test set. Relative decrease / robustness come from the shipped
``relative_robustness`` evaluate metric.

The report (``robustness.json``)::

    {"dataset": str, "preset": "video-p"|"imagenet-c", "clean_top1": float,
     "cells": [{"noise", "severity", "top1", "relative_decrease", "relative_robustness"}, ...],
     "average": {noise: {"top1", "relative_decrease", "relative_robustness"}}}   # over severities >= 1

plus ``robustness.md`` (a Markdown table) and ``robustness.png`` (accuracy vs severity per noise).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hf_vssl.data.noise import MAX_SEVERITY, NOISE_KINDS, NOISE_PRESETS, PIXEL_NOISES, NoiseTransform
from hf_vssl.data.records import VideoRecord
from hf_vssl.training.arguments import check_model_reference, mixed_precision_for

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


def _check_noises(noises: Sequence[str], severities: Sequence[int], preset: str) -> None:
    unknown = [kind for kind in noises if kind not in NOISE_KINDS]
    if unknown or not noises:
        raise ValueError(f"unknown noise kind(s) {unknown or '(none given)'}; valid: {', '.join(NOISE_KINDS)}")
    bad = [s for s in severities if not 1 <= int(s) <= MAX_SEVERITY]
    if bad or not severities:
        raise ValueError(f"severities must be integers in 1..{MAX_SEVERITY} (0, the clean run, is always "
                         f"included), got {list(severities)}")
    if preset not in NOISE_PRESETS:
        raise ValueError(f"unknown noise preset {preset!r}; valid: {', '.join(NOISE_PRESETS)}")


def evaluate_robustness(
    model: torch.nn.Module,
    records: Sequence[VideoRecord],
    *,
    num_frames: int,
    image_size: int,
    frame_stride: int = 1,
    noises: Sequence[str] = PIXEL_NOISES,
    severities: Sequence[int] = tuple(range(1, MAX_SEVERITY + 1)),
    preset: str = "video-p",
    seed: int = 0,
    num_clips: int = 5,
    num_crops: int = 1,
    batch_size: int = 8,
    num_workers: int = 0,
    accelerator=None,
    dataset_name: str = "",
) -> dict[str, Any]:
    """Test ``model`` on the clean and every noisy variant of ``records``; return the report dict.

    Deterministic: the noise of a video depends only on ``(seed, video id, kind, severity)``
    and the evaluation has no other randomness, so two runs give identical numbers.
    """
    from tqdm.auto import tqdm

    from hf_vssl.training.evaluation import build_eval_dataset, evaluate_classifier

    severities = sorted({int(s) for s in severities})
    _check_noises(noises, severities, preset)

    def top1(noise, desc):
        dataset = build_eval_dataset(records, num_frames, image_size, frame_stride, num_clips, num_crops,
                                     noise=noise, seed=seed)
        result = evaluate_classifier(model, dataset, batch_size=batch_size, num_workers=num_workers,
                                     accelerator=accelerator, desc=desc)
        return result.video_top1

    clean = top1(None, "clean")
    noisy: dict[tuple[str, int], float] = {}
    cells = [(kind, severity) for kind in noises for severity in severities]
    main = accelerator is None or accelerator.is_local_main_process
    for kind, severity in tqdm(cells, desc="robustness", disable=not main, dynamic_ncols=True):
        noisy[(kind, severity)] = top1(NoiseTransform(kind, severity, preset, seed), f"{kind} s{severity}")
    report = build_report(clean, noisy, dataset=dataset_name, preset=preset)
    report.update(seed=seed, num_clips=num_clips, num_crops=num_crops, metric="video_top1")
    return report


def build_report(clean_top1: float, noisy_top1: dict[tuple[str, int], float], *, dataset: str,
                 preset: str) -> dict[str, Any]:
    """The report dict from the clean accuracy and ``{(noise, severity): top1}`` (severities >= 1).

    Every noise gets a severity-0 cell equal to the clean accuracy. Relative values are ``None``
    when the clean accuracy is 0 (undefined).
    """
    from hf_vssl.metrics import load_metric

    metric = load_metric("relative_robustness")
    defined = clean_top1 > 0
    if not defined:
        logger.warning("clean top-1 is 0: relative decrease / robustness are undefined and reported as null")

    def relative(noisy: list[float]) -> dict[str, float | None]:
        if not defined:
            return {"relative_decrease": None, "relative_robustness": None}
        return metric.compute(clean_accuracy=[clean_top1] * len(noisy), noisy_accuracy=noisy)

    noises = list(dict.fromkeys(kind for kind, _ in noisy_top1))
    cells, average = [], {}
    for kind in noises:
        cells.append({"noise": kind, "severity": 0, "top1": clean_top1, **relative([clean_top1])})
        values = []
        for (other, severity), top1 in sorted(noisy_top1.items(), key=lambda item: item[0][1]):
            if other == kind:
                values.append(top1)
                cells.append({"noise": kind, "severity": severity, "top1": top1, **relative([top1])})
        average[kind] = {"top1": sum(values) / len(values), **relative(values)}
    return {"dataset": dataset, "preset": preset, "clean_top1": clean_top1, "cells": cells, "average": average}


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def report_markdown(report: dict[str, Any]) -> str:
    """A Markdown table: one row per noise, top-1 (%) per severity, mean top-1 and relative robustness."""
    severities = sorted({cell["severity"] for cell in report["cells"]})
    header = ["noise", *[f"s{s}" if s else "clean" for s in severities], "mean (s>=1)", "rel. robustness"]
    lines = [
        (f"Top-1 accuracy (%) under noise, preset `{report['preset']}`, dataset `{report['dataset']}` "
         f"(clean: {_percent(report['clean_top1'])})."),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for kind, mean in report["average"].items():
        by_severity = {c["severity"]: c["top1"] for c in report["cells"] if c["noise"] == kind}
        row = [kind, *[_percent(by_severity.get(s)) for s in severities], _percent(mean["top1"]),
               "-" if mean["relative_robustness"] is None else f"{mean['relative_robustness']:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot_robustness(report: dict[str, Any], path: str | Path) -> Path:
    """Save a line chart of top-1 vs severity, one line per noise (severity 0 = clean)."""
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
class RobustnessArguments:
    """Settings of ``recipes/robustness.py``. Dataset settings default to the checkpoint's ``metrics.json``."""

    config: str | None = field(default=None, metadata={"help": "YAML file of these arguments (CLI flags win)"})
    model_name_or_path: str | None = field(default=None, metadata={"help": "a finetuned classification checkpoint "
                                                                           "(folder or Hub id)"})
    output_dir: str | None = field(default=None, metadata={"help": "default: the model's folder"})
    dataset: str | None = field(default=None, metadata={"help": "default: the dataset the model was finetuned on"})
    dataset_root: str | None = field(default=None, metadata={
        "help": "dataset folder (default: built in for synthetic)"})
    dataset_split: str | None = field(default=None, metadata={"help": "default: test"})
    fold: int | None = field(default=None, metadata={"help": "official fold (default: the finetuning's)"})
    label_set: str | None = field(default=None, metadata={"help": "synthetic corpus only: motion or appearance"})
    noises: list[str] = field(default_factory=lambda: list(PIXEL_NOISES),
                              metadata={"help": f"noise kinds among {', '.join(NOISE_KINDS)}"})
    severities: list[int] = field(default_factory=lambda: list(range(1, MAX_SEVERITY + 1)),
                                  metadata={"help": f"severities among 1-{MAX_SEVERITY}"})
    preset: str = field(default="video-p", metadata={"help": "video-p or imagenet-c"})
    seed: int = field(default=0, metadata={"help": "seed of the noise draws"})
    eval_clips: int | None = field(default=None, metadata={"help": "clips per video (default: as finetuning)"})
    eval_crops: int | None = field(default=None, metadata={"help": "1 or 3 spatial crops (default: as finetuning)"})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "evaluation clips per device and batch"})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})
    bf16: bool | None = field(default=None, metadata={
        "help": "bf16 autocast (faster 3D convs on CPU). Not given: the launcher decides (accelerate launch "
                "--mixed_precision, accelerate config; fp32 without any)"})
    debug: bool = field(default=False, metadata={"help": "show the full traceback of an error (also HF_VSSL_DEBUG=1)"})

    def __post_init__(self):
        check_model_reference(self.model_name_or_path, "--model_name_or_path")


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
    from accelerate import Accelerator

    import hf_vssl  # noqa: F401  (registers the Auto classes)
    from hf_vssl.models import VSSLConfig, VSSLForVideoClassification, VSSLVideoProcessor
    from hf_vssl.training.data import load_records

    if not args.model_name_or_path:
        raise ValueError("--model_name_or_path is required: a classification checkpoint from recipes/finetune.py")
    _check_noises(args.noises, args.severities, args.preset)
    config = VSSLConfig.from_pretrained(args.model_name_or_path)
    if "VSSLForVideoClassification" not in (config.architectures or []):
        raise ValueError(f"{args.model_name_or_path} is a {config.architectures} checkpoint; robustness needs a "
                         "finetuned classifier (run recipes/finetune.py first)")
    trained = _model_metrics(args.model_name_or_path)
    evaluation = trained.get("evaluation", {})
    dataset = args.dataset or trained.get("dataset") or "synthetic"
    split = args.dataset_split or "test"
    fold = args.fold if args.fold is not None else int(trained.get("fold", 1))
    label_set = args.label_set or trained.get("label_set")
    records = load_records(dataset, args.dataset_root, split, fold, label_set=label_set)
    too_high = max(r.label for r in records)
    if too_high >= config.num_labels:
        raise ValueError(f"{dataset} {split} (fold {fold}) has class index {too_high} but the model at "
                         f"{args.model_name_or_path} has {config.num_labels} labels: wrong dataset or label set?")
    try:
        frame_stride = VSSLVideoProcessor.from_pretrained(args.model_name_or_path).frame_stride
    except OSError:
        frame_stride = int(evaluation.get("frame_stride", 1))

    accelerator = Accelerator(mixed_precision=mixed_precision_for(args))
    model = VSSLForVideoClassification.from_pretrained(args.model_name_or_path).to(accelerator.device)
    report = evaluate_robustness(
        model, records, num_frames=config.num_frames, image_size=config.image_size, frame_stride=frame_stride,
        noises=args.noises, severities=args.severities, preset=args.preset, seed=args.seed,
        num_clips=args.eval_clips or int(evaluation.get("num_clips", 5)),
        num_crops=args.eval_crops or int(evaluation.get("num_crops", 1)),
        batch_size=args.per_device_eval_batch_size, num_workers=args.dataloader_num_workers,
        accelerator=accelerator, dataset_name=dataset,
    )
    report.update(dataset_split=split, fold=fold, label_set=label_set, model=str(args.model_name_or_path))
    output_dir = Path(args.output_dir) if args.output_dir else Path(args.model_name_or_path)
    if not output_dir.is_dir() and not args.output_dir:
        output_dir = Path("outputs") / f"robustness-{Path(args.model_name_or_path).name}"
    if accelerator.is_main_process:
        paths = write_report(report, output_dir)
        accelerator.print(report_markdown(report))
        accelerator.print(f"wrote {', '.join(str(p) for p in paths)}")
    accelerator.wait_for_everyone()
    return output_dir
