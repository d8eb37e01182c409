"""Model cards for hf_vssl checkpoints, built with huggingface_hub's ``ModelCard``.

The metadata (``ModelCardData``: library, pipeline tag, tags, datasets, base model and a
``model-index`` of ``EvalResult``s) is serialised by huggingface_hub. The library is
``transformers`` (what loads the checkpoint), tagged ``hf_vssl`` and, when ``config.json`` maps
classes to the code stored in the repository, ``custom_code``; datasets are listed by Hub id
where the corpus has one (:data:`hf_vssl.hub.naming.HUB_DATASET_IDS`). The body comes from the
Jinja templates ``templates/pretrained.md`` and ``templates/finetuned.md`` of this package
(mirrored in the repository's ``model_cards/``).

Eval results, every measured number, all values fractions in [0, 1] as the recipes write them:

- downstream classification (``metrics*.json``, finetune, linear probe or zero-shot): task
  ``video-classification``, dataset type = the dataset's Hub id where it has one, else its
  name, config ``fold{k}`` (+ label set), split = the evaluated split, one ``accuracy`` metric
  per measurement with ``metric_config`` ``"{mode}/{clip|video}_top{k}"``;
- retrieval: task ``feature-extraction``, ``metric_config`` ``"retrieval/top{k}"``;
- robustness (``robustness.json``): task ``video-classification``, dataset config = the noise
  preset, ``metric_config`` ``"clean/top1"``, per noise and severity
  ``"{noise}/severity{s}/top1"`` and ``"{noise}/severity{s}/relative_robustness"``, and the
  averages over severities ``"{noise}/top1"`` and ``"{noise}/relative_robustness"``.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hf_vssl._version import __version__
from hf_vssl.hub.naming import hub_dataset_id, hub_id_or_none
from hf_vssl.hub.reports import (
    RESULT_KEYS,
    RETRIEVAL_KEYS,
    FolderReports,
    PathLike,
    all_settings,
    find_stage,
    is_local_path,
    place_reports,
    read_reports,
    redact_local_paths,
)

# The Hub library is transformers (its Auto classes load every checkpoint); the tag names hf_vssl.
HUB_LIBRARY = "transformers"
LIBRARY_TAG = "hf_vssl"
_RESULT_KEY = re.compile(r"^(clip|video)_top(\d+)$")
_RETRIEVAL_KEY = re.compile(r"^top(\d+)$")
DATASET_TITLES = {
    "ucf101": "UCF101",
    "hmdb51": "HMDB51",
    "kinetics400": "Kinetics-400",
    "k400": "Kinetics-400",
    "ssv2": "Something-Something V2",
    "diving48": "Diving48",
    "synthetic": "hf_vssl synthetic corpus",
    "videofolder": "video folder",
}
TASK_TITLES = {
    "rotnet": "RotNet",
    "cvrl": "CVRL",
    "vcop": "VCOP",
    "tdl": "TDL",
    "prp": "PRP",
    "rspnet": "RSPNet",
}
# Run arguments that are local paths or publishing switches: not part of the recipe.
_PRIVATE_ARGS = {
    "output_dir",
    "dataset_root",
    "resume_from_checkpoint",
    "config",
    "logging_dir",
    "push_to_hub",
    "hub_model_id",
    "model_name_or_path",
}


def template_path(kind: str) -> Path:
    """Path of the ``pretrained`` or ``finetuned`` card template shipped in the package."""
    if kind not in ("pretrained", "finetuned"):
        raise ValueError(f"kind must be 'pretrained' or 'finetuned', got {kind!r}")
    return Path(str(resources.files("hf_vssl.hub") / "templates" / f"{kind}.md"))


def dataset_title(name: str | None) -> str:
    """The dataset's display name; a local folder is named by its last component, never its path."""
    if not name:
        return "unknown data"
    if is_local_path(str(name)):
        return f"local video folder {Path(str(name)).name}"
    return DATASET_TITLES.get(str(name).lower(), str(name))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


# -- metadata ---------------------------------------------------------------------------------------


def _measured(values: dict[str, Any] | None, pattern: re.Pattern) -> list[tuple[str, str, float]]:
    """``(key, k, value)`` of every measured number under ``pattern`` (``None`` = not measured), by k."""
    found = [
        (key, match.groups()[-1], float(value))
        for key, value in (values or {}).items()
        if value is not None and (match := pattern.match(key))
    ]
    return sorted(found, key=lambda item: (item[0][: -len(item[1])], int(item[1])))


def _dataset_fields(name: str | None) -> dict[str, str]:
    # A local folder (the videofolder layout) is typed as such: its path never reaches a card.
    kind = "unknown" if not name else "videofolder" if is_local_path(str(name)) else name
    return {"dataset_type": hub_dataset_id(name) or kind, "dataset_name": dataset_title(name)}


def eval_results(reports: FolderReports) -> list[EvalResult]:
    """One ``EvalResult`` per measured number (see the module docstring for the naming)."""
    results: list[EvalResult] = []
    for record in reports.metrics:
        dataset = record["dataset"]
        mode = record.get("mode") or "finetune"
        config = f"fold{record.get('fold', 1)}" + (
            f"-{record['label_set']}" if record.get("label_set") else ""
        )
        common = {
            **_dataset_fields(dataset),
            "dataset_config": config,
            "dataset_split": record.get("dataset_split"),
        }
        for key, k, value in _measured(record.get("results"), _RESULT_KEY):
            results.append(
                EvalResult(
                    task_type="video-classification",
                    task_name="Video classification",
                    metric_type="accuracy",
                    metric_value=value,
                    metric_name=f"{key.split('_')[0]} top-{k} accuracy ({mode.replace('_', ' ')})",
                    metric_config=f"{mode}/{key}",
                    **common,
                )
            )
        for key, k, value in _measured(record.get("retrieval"), _RETRIEVAL_KEY):
            results.append(
                EvalResult(
                    task_type="feature-extraction",
                    task_name="Video retrieval (nearest neighbours)",
                    metric_type="recall",
                    metric_value=value,
                    metric_name=f"retrieval R@{k}",
                    metric_config=f"retrieval/{key}",
                    **common,
                )
            )
    robustness = reports.robustness
    if robustness:
        common = {
            "task_type": "video-classification",
            "task_name": "Robustness to input noise",
            **_dataset_fields(robustness.get("dataset")),
            "dataset_config": robustness.get("preset", "video-p"),
        }

        def add(value: Any, metric_type: str, name: str, config: str) -> None:
            if value is not None:
                results.append(
                    EvalResult(
                        metric_type=metric_type,
                        metric_value=float(value),
                        metric_name=name,
                        metric_config=config,
                        **common,
                    )
                )

        add(robustness.get("clean_top1"), "accuracy", "clean top-1 accuracy", "clean/top1")
        cells = sorted(
            robustness.get("cells") or [], key=lambda c: (str(c.get("noise")), c.get("severity") or 0)
        )
        for cell in cells:
            noise, severity = cell.get("noise"), cell.get("severity")
            add(
                cell.get("top1"),
                "accuracy",
                f"{noise} noise severity {severity} top-1 accuracy",
                f"{noise}/severity{severity}/top1",
            )
            add(
                cell.get("relative_robustness"),
                "relative_robustness",
                f"{noise} noise severity {severity} relative robustness",
                f"{noise}/severity{severity}/relative_robustness",
            )
        for noise, values in (robustness.get("average") or {}).items():
            add(
                values.get("top1"),
                "accuracy",
                f"{noise} noise top-1 accuracy (mean over severities)",
                f"{noise}/top1",
            )
            add(
                values.get("relative_robustness"),
                "relative_robustness",
                f"{noise} noise relative robustness (mean over severities)",
                f"{noise}/relative_robustness",
            )
    return results


def pretraining_settings(reports: FolderReports) -> dict[str, Any]:
    """The settings of the pretraining the checkpoint descends from: its own ``training_args.yaml``
    when it is a pretraining run, else the provenance stage naming a pretext task, else ``{}``."""
    return reports.pretraining_args or find_stage(reports.provenance, "pretext_task") or {}


def pretext_task(reports: FolderReports) -> str | None:
    """The pretext task the checkpoint descends from (its config, else its pretraining's settings)."""
    return reports.config.get("pretext_task") or pretraining_settings(reports).get("pretext_task")


def card_data(
    reports: FolderReports, repo_id: str | None = None, base_model: str | None = None
) -> ModelCardData:
    """The card's metadata: library, pipeline tag, tags, datasets, base model, model-index."""
    config, args = reports.config, pretraining_settings(reports)
    task = pretext_task(reports)
    backbone = config.get("backbone") or args.get("backbone")
    tags = ["video", "self-supervised"] + [t for t in (task, backbone) if t] + [LIBRARY_TAG]
    if config.get("auto_map"):  # the Hub's tag for "loads with trust_remote_code=True"
        tags.append("custom_code")
    if reports.is_classifier:
        tags.append("video-classification")
    datasets = [args.get("dataset"), *all_settings(reports.provenance, "dataset")]
    datasets += [m["dataset"] for m in reports.metrics]
    if reports.robustness:
        datasets.append(reports.robustness.get("dataset"))
    # Hub ids only: a built-in name without a Hub copy (or a local folder) is not a dataset link.
    datasets = list(dict.fromkeys(d for d in map(hub_dataset_id, datasets) if d))
    if base_model is None and reports.is_classifier:
        base_model = next(
            (
                hub_id_or_none(m.get("base_model"))
                for m in reports.metrics
                if hub_id_or_none(m.get("base_model"))
            ),
            None,
        )
    results = eval_results(reports)
    return ModelCardData(
        library_name=HUB_LIBRARY,
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
    config, args = reports.config, pretraining_settings(reports)
    task = pretext_task(reports)
    rows = [
        (
            "Pretext task",
            f"{TASK_TITLES.get(task, task)} (`{task}`)" if task else "none (trained from scratch)",
        ),
        ("Backbone", f"`{config.get('backbone')}`, width multiplier {config.get('width_multiplier', 1.0)}"),
    ]
    frames, size = config.get("num_frames"), config.get("image_size")
    stride = args.get("frame_stride")
    rows.append(
        (
            "Clip shape",
            f"{frames} frames x {size} x {size} pixels" + (f", frame stride {stride}" if stride else ""),
        )
    )
    if args:
        name, split = args.get("dataset"), args.get("dataset_split", "train")
        shown = "" if not name or is_local_path(str(name)) else f" (`{name}`)"
        data = f"{dataset_title(name)}{shown}, split `{split}`"
        if args.get("label_set"):
            data += f", label set `{args['label_set']}`"
        rows.append(("Pretraining data", data))
        if reports.subset:
            size = reports.subset.get("size", len(reports.subset.get("ids", [])))
            seed = reports.subset.get("seed")
            rows.append(("Subset", f"{size} videos, class-balanced, seed {seed}; ids in `subset_ids.json`"))
        elif args.get("subset_size"):
            rows.append(
                ("Subset", f"{args['subset_size']} videos, class-balanced, seed {args.get('subset_seed')}")
            )
        else:
            rows.append(("Subset", "the whole split"))
        # A run's own training_args.yaml records every setting (absent = the default); a provenance
        # record may hold only some: rows it does not record are left out rather than guessed.
        complete = reports.pretraining_args is not None
        steps, epochs = args.get("max_steps"), args.get("num_train_epochs")
        if (steps and steps > 0) or epochs is not None:
            rows.append(
                (
                    "Length",
                    f"{steps} optimizer steps (max_steps)" if steps and steps > 0 else f"{epochs} epochs",
                )
            )
        batch = args.get("per_device_train_batch_size")
        accumulation = args.get("gradient_accumulation_steps") or 1
        if batch is not None:
            rows.append(
                (
                    "Batch",
                    f"{batch} clips per device"
                    + (f" x {accumulation} accumulation steps" if accumulation > 1 else ""),
                )
            )
        task_default = f"{TASK_TITLES.get(task, task)} default"
        optimizer = args.get("optimizer") or task_default
        lr = args.get("learning_rate")
        lr = task_default if lr is None else lr
        schedule = args.get("lr_scheduler_type", "cosine")
        if complete or any(
            args.get(k) is not None for k in ("optimizer", "learning_rate", "lr_scheduler_type")
        ):
            rows.append(("Optimizer", f"{optimizer} optimizer, learning rate {lr}, {schedule} schedule"))
        if complete or args.get("seed") is not None:
            rows.append(
                (
                    "Seed / precision",
                    f"{args.get('seed')} / {'bf16 autocast' if args.get('bf16') else 'fp32'}",
                )
            )
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
        rows.append(
            {
                "dataset": dataset_title(record["dataset"]),
                "split": f"{record.get('dataset_split', '?')} (fold {record.get('fold', 1)})"
                + (f", {record['label_set']}" if record.get("label_set") else ""),
                "mode": (record.get("mode") or "finetune").replace("_", " "),
                "epochs": _length(record),
                **{key: _pct(results.get(key)) for key in RESULT_KEYS},
            }
        )
    return rows


def _retrieval_rows(reports: FolderReports) -> list[dict[str, str]]:
    return [
        {"dataset": dataset_title(r["dataset"]), **{k: _pct(r["retrieval"].get(k)) for k in RETRIEVAL_KEYS}}
        for r in reports.metrics
        if r.get("retrieval")
    ]


def _robustness(reports: FolderReports) -> dict[str, Any] | None:
    data = reports.robustness
    if not data:
        return None
    rows = [
        {
            "noise": noise,
            "top1": _pct(v.get("top1")),
            "relative_robustness": _pct(v.get("relative_robustness")),
            "relative_decrease": _pct(v.get("relative_decrease")),
        }
        for noise, v in (data.get("average") or {}).items()
    ]
    return {
        "dataset": dataset_title(data.get("dataset")),
        "preset": data.get("preset", "video-p"),
        "clean_top1": _pct(data.get("clean_top1")),
        "rows": rows,
        "severities": sorted(
            {c.get("severity") for c in data.get("cells", []) if c.get("severity") is not None}
        ),
        "plot": reports.has("robustness.png"),
        "details": reports.has("robustness.md"),
    }


def _run_args_yaml(reports: FolderReports) -> str | None:
    if not reports.training_args:
        return None
    public = {k: v for k, v in reports.training_args.items() if k not in _PRIVATE_ARGS}
    return yaml.safe_dump(redact_local_paths(public), sort_keys=False).strip()


def _provenance_yaml(reports: FolderReports) -> str | None:
    if not reports.provenance:
        return None
    return yaml.safe_dump(redact_local_paths(reports.provenance), sort_keys=False).strip()


def model_reference(value: str | None) -> str | None:
    """How a card names a model it refers to: its Hub id, or ``local checkpoint <folder name>``."""
    if not value:
        return None
    return hub_id_or_none(value) or f"local checkpoint {Path(str(value)).name}"


def template_context(reports: FolderReports, repo_id: str | None = None) -> dict[str, Any]:
    """The variables the card templates use."""
    config, args = reports.config, pretraining_settings(reports)
    task = pretext_task(reports)
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
        "pretext_settings": json.dumps(config.get("pretext_config"), indent=2)
        if config.get("pretext_config")
        else None,
        "subset": None
        if not subset
        else {
            "size": subset.get("size", len(subset.get("ids", []))),
            "seed": subset.get("seed"),
            "class_counts": sorted((subset.get("class_counts") or {}).items()),
        },
        "has_processor": reports.has("video_preprocessor_config.json"),
        "remote_code_class": next(
            (c for c in ("AutoModelForVideoClassification", "AutoModel") if c in auto_map), None
        ),
        "labels": [id2label[k] for k in sorted(id2label, key=lambda k: int(k))] if id2label else [],
        "downstream": None
        if downstream is None
        else {
            "dataset": dataset_title(downstream["dataset"]),
            "split": downstream.get("dataset_split"),
            "fold": downstream.get("fold", 1),
            "mode": (downstream.get("mode") or "finetune").replace("_", " "),
            "epochs": _length(downstream),
            "base_model": model_reference(downstream.get("base_model")),
        },
        "finetune_rows": _finetune_rows(reports),
        # Test videos each evaluation left out (unreadable or too short; never replaced by another).
        "skipped_videos": [
            dict(video, dataset=dataset_title(m.get("dataset")))
            for m in reports.metrics
            for video in m.get("skipped_videos") or []
        ],
        "retrieval_rows": _retrieval_rows(reports),
        "robustness": _robustness(reports),
        "cka": None
        if not reports.cka
        else {
            "model_a": model_reference(reports.cka.get("model_a")),
            "model_b": model_reference(reports.cka.get("model_b")),
            "layers": len(reports.cka.get("layers_a") or []),
            "plot": reports.has("cka.png"),
        },
        "run_args": _run_args_yaml(reports),
        "provenance": _provenance_yaml(reports),
    }


def build_model_card(
    folder: PathLike, repo_id: str | None = None, base_model: str | None = None
) -> ModelCard:
    """The model card of a checkpoint folder, from the reports present in it (nothing written).

    ``repo_id`` is the id the loading examples use (default: the folder's name); ``base_model``
    overrides the one taken from ``metrics.json`` (only Hub ids are kept there, not local paths).
    """
    reports = read_reports(folder)
    kind = "finetuned" if reports.is_classifier else "pretrained"
    return ModelCard.from_template(
        card_data(reports, repo_id, base_model),
        template_path=str(template_path(kind)),
        **template_context(reports, repo_id),
    )


def write_model_card(
    folder: PathLike, repo_id: str | None = None, base_model: str | None = None
) -> ModelCard:
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
