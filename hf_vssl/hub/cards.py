"""Model cards for hf_vssl checkpoints, built with huggingface_hub's ``ModelCard``.

The metadata (``ModelCardData``: library, pipeline tag, tags, datasets, base model and a
``model-index`` of ``EvalResult``s) is serialised by huggingface_hub; the body comes from the
Jinja templates ``templates/pretrained.md`` and ``templates/finetuned.md`` of this package
(mirrored in the repository's ``model_cards/``).

Eval results, all values fractions in [0, 1] as the recipes write them:

- downstream classification (``metrics*.json``): task ``video-classification``, dataset type
  = the dataset name, config ``fold{k}`` (+ label set), split = the evaluated split, one
  ``accuracy`` metric per measurement with ``metric_config`` ``"{mode}/{clip|video}_top{1|5}"``;
- retrieval: task ``feature-extraction``, ``metric_config`` ``"retrieval/top{k}"``;
- robustness (``robustness.json``): task ``video-classification``, dataset config = the noise
  preset, ``metric_config`` ``"clean/top1"``, ``"{noise}/top1"`` and
  ``"{noise}/relative_robustness"`` (averages over severities).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hf_vssl._version import __version__
from hf_vssl.hub.naming import hub_id_or_none
from hf_vssl.hub.reports import (
    RESULT_KEYS,
    RETRIEVAL_KEYS,
    FolderReports,
    PathLike,
    place_reports,
    read_reports,
)

LIBRARY_NAME = "hf_vssl"
DATASET_TITLES = {
    "ucf101": "UCF101", "hmdb51": "HMDB51", "kinetics400": "Kinetics-400", "k400": "Kinetics-400",
    "ssv2": "Something-Something V2", "diving48": "Diving48", "synthetic": "hf_vssl synthetic corpus",
    "videofolder": "video folder",
}
TASK_TITLES = {"rotnet": "RotNet", "cvrl": "CVRL", "vcop": "VCOP", "tdl": "TDL", "prp": "PRP", "rspnet": "RSPNet"}
# Run arguments that are local paths or publishing switches: not part of the recipe.
_PRIVATE_ARGS = {"output_dir", "dataset_root", "resume_from_checkpoint", "config", "logging_dir",
                 "push_to_hub", "hub_model_id", "model_name_or_path"}


def template_path(kind: str) -> Path:
    """Path of the ``pretrained`` or ``finetuned`` card template shipped in the package."""
    if kind not in ("pretrained", "finetuned"):
        raise ValueError(f"kind must be 'pretrained' or 'finetuned', got {kind!r}")
    return Path(str(resources.files("hf_vssl.hub") / "templates" / f"{kind}.md"))


def dataset_title(name: str | None) -> str:
    return DATASET_TITLES.get(str(name).lower(), str(name)) if name else "unknown data"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


# -- metadata ---------------------------------------------------------------------------------------


def eval_results(reports: FolderReports) -> list[EvalResult]:
    """One ``EvalResult`` per measured number (see the module docstring for the naming)."""
    results: list[EvalResult] = []
    for record in reports.metrics:
        dataset = record["dataset"]
        mode = record.get("mode") or "finetune"
        config = f"fold{record.get('fold', 1)}" + (f"-{record['label_set']}" if record.get("label_set") else "")
        common = {"dataset_type": dataset, "dataset_name": dataset_title(dataset), "dataset_config": config,
                  "dataset_split": record.get("dataset_split")}
        for key in RESULT_KEYS:
            value = (record.get("results") or {}).get(key)
            if value is not None:
                level, k = key.split("_top")
                results.append(EvalResult(
                    task_type="video-classification", task_name="Video classification", metric_type="accuracy",
                    metric_value=float(value), metric_name=f"{level} top-{k} accuracy ({mode.replace('_', ' ')})",
                    metric_config=f"{mode}/{key}", **common))
        for key in RETRIEVAL_KEYS:
            value = (record.get("retrieval") or {}).get(key)
            if value is not None:
                results.append(EvalResult(
                    task_type="feature-extraction", task_name="Video retrieval (nearest neighbours)",
                    metric_type="recall", metric_value=float(value), metric_name=f"retrieval R@{key[3:]}",
                    metric_config=f"retrieval/{key}", **common))
    robustness = reports.robustness
    if robustness:
        common = {"task_type": "video-classification", "task_name": "Robustness to input noise",
                  "dataset_type": robustness.get("dataset", "unknown"),
                  "dataset_name": dataset_title(robustness.get("dataset")),
                  "dataset_config": robustness.get("preset", "video-p")}
        if robustness.get("clean_top1") is not None:
            results.append(EvalResult(metric_type="accuracy", metric_value=float(robustness["clean_top1"]),
                                      metric_name="clean top-1 accuracy", metric_config="clean/top1", **common))
        for noise, values in (robustness.get("average") or {}).items():
            if values.get("top1") is not None:
                results.append(EvalResult(metric_type="accuracy", metric_value=float(values["top1"]),
                                          metric_name=f"{noise} noise top-1 accuracy (mean over severities)",
                                          metric_config=f"{noise}/top1", **common))
            if values.get("relative_robustness") is not None:
                results.append(EvalResult(metric_type="relative_robustness",
                                          metric_value=float(values["relative_robustness"]),
                                          metric_name=f"{noise} noise relative robustness (mean over severities)",
                                          metric_config=f"{noise}/relative_robustness", **common))
    return results


def pretext_task_of(config: dict, args: dict) -> str | None:
    """The pretext task behind a checkpoint: its own, its pretraining run's, or (a finetuned model)
    the first stage of ``config.provenance`` that has one."""
    stages = config.get("provenance") or []
    return (config.get("pretext_task") or args.get("pretext_task")
            or next((stage["pretext_task"] for stage in stages if stage.get("pretext_task")), None))


def card_data(reports: FolderReports, repo_id: str | None = None, base_model: str | None = None) -> ModelCardData:
    """The card's metadata: library, pipeline tag, tags, datasets, base model, model-index."""
    config, args = reports.config, reports.pretraining_args or {}
    task = pretext_task_of(config, args)
    backbone = config.get("backbone") or args.get("backbone")
    tags = ["video", "self-supervised"] + [t for t in (task, backbone) if t] + [LIBRARY_NAME]
    if reports.is_classifier:
        tags.append("video-classification")
    datasets = [args.get("dataset")] + [m["dataset"] for m in reports.metrics]
    if reports.robustness:
        datasets.append(reports.robustness.get("dataset"))
    datasets = list(dict.fromkeys(d for d in datasets if d))
    if base_model is None and reports.is_classifier:
        base_model = next((hub_id_or_none(m.get("base_model")) for m in reports.metrics
                           if hub_id_or_none(m.get("base_model"))), None)
    results = eval_results(reports)
    return ModelCardData(
        library_name=LIBRARY_NAME,
        pipeline_tag="video-classification" if reports.is_classifier else "feature-extraction",
        tags=list(dict.fromkeys(tags)),
        datasets=datasets or None,
        base_model=base_model,
        # model_name only names the model-index; without results it would be a stray metadata key
        model_name=(repo_id or reports.folder.resolve().name).split("/")[-1] if results else None,
        eval_results=results or None,
    )


# -- body -------------------------------------------------------------------------------------------


def _pretraining_rows(reports: FolderReports) -> list[dict[str, str]]:
    config, args = reports.config, reports.pretraining_args or {}
    task = pretext_task_of(config, args)
    rows = [("Pretext task", f"{TASK_TITLES.get(task, task)} (`{task}`)" if task else "none (trained from scratch)"),
            ("Backbone", f"`{config.get('backbone')}`, width multiplier {config.get('width_multiplier', 1.0)}")]
    frames, size = config.get("num_frames"), config.get("image_size")
    stride = args.get("frame_stride")
    rows.append(("Clip shape", f"{frames} frames x {size} x {size} pixels" + (f", frame stride {stride}" if stride
                                                                                 else "")))
    if args:
        name, split = args.get("dataset"), args.get("dataset_split", "train")
        data = f"{dataset_title(name)} (`{name}`), split `{split}`"
        if args.get("label_set"):
            data += f", label set `{args['label_set']}`"
        rows.append(("Pretraining data", data))
        if reports.subset:
            size = reports.subset.get("size", len(reports.subset.get("ids", [])))
            seed = reports.subset.get("seed")
            rows.append(("Subset", f"{size} videos, class-balanced, seed {seed}; ids in `subset_ids.json`"))
        elif args.get("subset_size"):
            rows.append(("Subset", f"{args['subset_size']} videos, class-balanced, seed {args.get('subset_seed')}"))
        else:
            rows.append(("Subset", "the whole split"))
        steps = args.get("max_steps")
        rows.append(("Length", f"{steps} optimizer steps (max_steps)" if steps and steps > 0
                     else f"{args.get('num_train_epochs')} epochs"))
        batch = args.get("per_device_train_batch_size")
        accumulation = args.get("gradient_accumulation_steps") or 1
        rows.append(("Batch", f"{batch} clips per device" + (f" x {accumulation} accumulation steps"
                                                             if accumulation > 1 else "")))
        task_default = f"{TASK_TITLES.get(task, task)} default"
        optimizer = args.get("optimizer") or task_default
        lr = args.get("learning_rate")
        lr = task_default if lr is None else lr
        schedule = args.get("lr_scheduler_type", "cosine")
        rows.append(("Optimizer", f"{optimizer} optimizer, learning rate {lr}, {schedule} schedule"))
        rows.append(("Seed / precision", f"{args.get('seed')} / {'bf16 autocast' if args.get('bf16') else 'fp32'}"))
    return [{"name": name, "value": value} for name, value in rows]


def _length(record: dict[str, Any]) -> str:
    """Training length of a downstream run: steps when it was step-limited, else epochs."""
    if record.get("max_steps"):
        return f"{record['max_steps']} steps"
    epochs = record.get("num_train_epochs")
    return f"{epochs:g} epochs" if isinstance(epochs, (int, float)) else "-"


def _finetune_rows(reports: FolderReports) -> list[dict[str, str]]:
    rows = []
    for record in reports.metrics:
        results = record.get("results") or {}
        if not results:
            continue
        rows.append({
            "dataset": dataset_title(record["dataset"]),
            "split": f"{record.get('dataset_split', '?')} (fold {record.get('fold', 1)})"
                     + (f", {record['label_set']}" if record.get("label_set") else ""),
            "mode": (record.get("mode") or "finetune").replace("_", " "),
            "epochs": _length(record),
            **{key: _pct(results.get(key)) for key in RESULT_KEYS},
        })
    return rows


def _retrieval_rows(reports: FolderReports) -> list[dict[str, str]]:
    return [{"dataset": dataset_title(r["dataset"]), **{k: _pct(r["retrieval"].get(k)) for k in RETRIEVAL_KEYS}}
            for r in reports.metrics if r.get("retrieval")]


def _robustness(reports: FolderReports) -> dict[str, Any] | None:
    data = reports.robustness
    if not data:
        return None
    rows = [{"noise": noise, "top1": _pct(v.get("top1")), "relative_robustness": _pct(v.get("relative_robustness")),
             "relative_decrease": _pct(v.get("relative_decrease"))} for noise, v in (data.get("average") or {}).items()]
    return {"dataset": dataset_title(data.get("dataset")), "preset": data.get("preset", "video-p"),
            "clean_top1": _pct(data.get("clean_top1")), "rows": rows,
            "severities": sorted({c.get("severity") for c in data.get("cells", []) if c.get("severity") is not None}),
            "plot": reports.has("robustness.png"), "details": reports.has("robustness.md")}


def _run_args_yaml(reports: FolderReports) -> str | None:
    if not reports.training_args:
        return None
    public = {k: v for k, v in reports.training_args.items() if k not in _PRIVATE_ARGS}
    return yaml.safe_dump(public, sort_keys=False).strip()


def template_context(reports: FolderReports, repo_id: str | None = None) -> dict[str, Any]:
    """The variables the card templates use."""
    config, args = reports.config, reports.pretraining_args or {}
    task = pretext_task_of(config, args)
    model_id = repo_id or reports.folder.resolve().name
    auto_map = config.get("auto_map") or {}
    subset = reports.subset
    id2label = config.get("id2label") or {}
    downstream = next((m for m in reports.metrics if m.get("results")), None)
    return {
        "model_id": model_id,
        "hf_vssl_version": __version__,
        "task": task,
        "task_title": TASK_TITLES.get(task, task) if task else None,
        "backbone": config.get("backbone"),
        "width_multiplier": config.get("width_multiplier", 1.0),
        "num_frames": config.get("num_frames"),
        "image_size": config.get("image_size"),
        "pretraining_dataset": dataset_title(args.get("dataset")) if args else None,
        "pretraining": _pretraining_rows(reports),
        "pretext_settings": json.dumps(config.get("pretext_config"), indent=2) if config.get("pretext_config")
        else None,
        "subset": None if not subset else {
            "size": subset.get("size", len(subset.get("ids", []))), "seed": subset.get("seed"),
            "class_counts": sorted((subset.get("class_counts") or {}).items()),
        },
        "has_processor": reports.has("video_preprocessor_config.json"),
        "remote_code_class": next((c for c in ("AutoModelForVideoClassification", "AutoModel") if c in auto_map),
                                  None),
        "labels": [id2label[k] for k in sorted(id2label, key=lambda k: int(k))] if id2label else [],
        "downstream": None if downstream is None else {
            "dataset": dataset_title(downstream["dataset"]), "split": downstream.get("dataset_split"),
            "fold": downstream.get("fold", 1), "mode": (downstream.get("mode") or "finetune").replace("_", " "),
            "epochs": _length(downstream),
            "base_model": downstream.get("base_model")},
        "finetune_rows": _finetune_rows(reports),
        "retrieval_rows": _retrieval_rows(reports),
        "robustness": _robustness(reports),
        "cka": None if not reports.cka else {
            "model_a": reports.cka.get("model_a"), "model_b": reports.cka.get("model_b"),
            "layers": len(reports.cka.get("layers_a") or []), "plot": reports.has("cka.png")},
        "run_args": _run_args_yaml(reports),
    }


def build_model_card(folder: PathLike, repo_id: str | None = None, base_model: str | None = None) -> ModelCard:
    """The model card of a checkpoint folder, from the reports present in it (nothing written).

    ``repo_id`` is the id the loading examples use (default: the folder's name); ``base_model``
    overrides the one taken from ``metrics.json`` (only Hub ids are kept there, not local paths).
    """
    reports = read_reports(folder)
    kind = "finetuned" if reports.is_classifier else "pretrained"
    return ModelCard.from_template(card_data(reports, repo_id, base_model), template_path=str(template_path(kind)),
                                   **template_context(reports, repo_id))


def write_model_card(folder: PathLike, repo_id: str | None = None, base_model: str | None = None) -> ModelCard:
    """Build the model card of ``folder`` (see :func:`build_model_card`) and save it as ``README.md``."""
    card = build_model_card(folder, repo_id, base_model)
    card.save(Path(folder) / "README.md")
    return card


def assemble_reports(folder: PathLike, *, repo_id: str | None = None, **reports) -> ModelCard:
    """Copy reports into the checkpoint ``folder`` (:func:`hf_vssl.hub.reports.place_reports`: ``metrics``,
    ``robustness_dir``, ``cka_dir``, ``training_args``, ``subset_ids``), then write its model card;
    returns the card. ``repo_id``: the Hub id the card's loading examples use (default: the folder name).
    """
    return write_model_card(place_reports(folder, **reports), repo_id=repo_id)
