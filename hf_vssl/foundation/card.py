"""The card of a zero-shot run: the evaluated model's results as a Hub ``model-index``.

A zero-shot run folder holds ``metrics.json`` (``mode: zero_shot``) and, when
``recipes/robustness.py`` was pointed at the same folder, ``robustness.json``. Its ``README.md``
is a ``huggingface_hub.ModelCard`` whose metadata names the evaluated checkpoint as
``base_model`` and lists every number under ``model-index``, named like the checkpoint cards'
(``hf_vssl.hub.cards.eval_results``: ``metric_config`` ``zero_shot/clip_top1``, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from hf_vssl.hub.cards import LIBRARY_TAG, dataset_title, eval_results
from hf_vssl.hub.naming import hub_dataset_id, hub_id_or_none
from hf_vssl.hub.reports import RESULT_KEYS, FolderReports, validate_metrics

__all__ = ["build_zero_shot_card", "refresh_zero_shot_card", "write_zero_shot_card"]


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def _body(record: dict[str, Any], robustness: dict[str, Any] | None, model: str) -> str:
    results = record["results"]
    setting = record.get("zero_shot", {})
    evaluation = record.get("evaluation", {})
    lines = [
        f"# Zero-shot video classification: `{model}`",
        "",
        (
            f"`{model}` ({setting.get('family', '?')}) classifying {dataset_title(record['dataset'])} "
            f"(`{record['dataset']}`, split `{record.get('dataset_split')}`, fold {record.get('fold', 1)}) without "
            "training, under hf_vssl's evaluation protocol: "
            f"{evaluation.get('num_clips')} uniform clips x {evaluation.get('num_crops')} crop(s) of "
            f"{evaluation.get('num_frames')} frames at {evaluation.get('image_size')} pixels per video; "
            "video-level scores average the clips' softmax."
        ),
        "",
        "| clip top-1 | clip top-5 | video top-1 | video top-5 | videos |",
        "|---:|---:|---:|---:|---:|",
        "| "
        + " | ".join(f"{100 * results[key]:.1f}" for key in RESULT_KEYS)
        + f" | {record.get('num_videos')} |",
        "",
        f"Prompts ({len(setting.get('templates', []))} template(s), class embeddings averaged over them): "
        + ", ".join(f"`{t}`" for t in setting.get("templates", [])),
    ]
    if robustness:
        lines += [
            "",
            (
                f"Robustness to input noise (preset `{robustness.get('preset')}`, mean video top-1 over "
                "severities; `robustness.md` has every cell):"
            ),
            "",
            "| noise | top-1 | relative robustness |",
            "|---|---:|---:|",
        ]
        for noise, values in (robustness.get("average") or {}).items():
            relative = values.get("relative_robustness")
            lines.append(
                f"| {noise} | {100 * values['top1']:.1f} | {'-' if relative is None else f'{relative:.3f}'} |"
            )
    lines += [
        "",
        (
            "Made with hf_vssl's `recipes/zero_shot.py`; settings in "
            "`zero_shot_args.yaml`, per-video predictions in `predictions.json`."
        ),
        "",
    ]
    return "\n".join(lines)


def build_zero_shot_card(folder: str | Path) -> ModelCard:
    """The card of a zero-shot run folder (``metrics.json`` required, ``robustness.json`` optional)."""
    folder = Path(folder)
    metrics_path = folder / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(
            f"{folder}: no metrics.json (run recipes/zero_shot.py with --output_dir {folder})"
        )
    record = _read(metrics_path)
    validate_metrics(record)
    if record.get("mode") != "zero_shot":
        raise ValueError(f"{metrics_path}: mode {record.get('mode')!r} is not a zero-shot result")
    robustness = _read(folder / "robustness.json") if (folder / "robustness.json").is_file() else None
    model = record.get("base_model") or "model"
    reports = FolderReports(folder=folder, config={}, metrics=[record], robustness=robustness)
    family = record.get("zero_shot", {}).get("family")
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="zero-shot-classification",
        tags=[t for t in ("video", "zero-shot", family, LIBRARY_TAG) if t],
        datasets=[hub_dataset_id(record["dataset"])] if hub_dataset_id(record["dataset"]) else None,
        base_model=hub_id_or_none(model),
        model_name=f"{Path(str(model)).name} zero-shot",
        eval_results=eval_results(reports),
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(record, robustness, model)}")


def write_zero_shot_card(folder: str | Path) -> Path:
    """Build the card of ``folder`` (see :func:`build_zero_shot_card`) and save it as ``README.md``."""
    path = Path(folder) / "README.md"
    build_zero_shot_card(folder).save(path)
    return path


def refresh_zero_shot_card(folder: str | Path) -> Path | None:
    """Rewrite ``README.md`` when ``folder`` is a zero-shot run folder (e.g. after a robustness run); else None."""
    path = Path(folder) / "metrics.json"
    if not path.is_file() or _read(path).get("mode") != "zero_shot":
        return None
    return write_zero_shot_card(folder)
