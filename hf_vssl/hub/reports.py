"""The reports a checkpoint folder carries, and assembling them into it.

Recipes write their results into a model folder (the folder contract):

- ``metrics.json`` (finetune / linear probe, optional retrieval) or ``retrieval.json``
  (retrieval only), plus ``metrics-*.json`` when a folder collects several downstream results
  (e.g. UCF101 and HMDB51 for one pretrained model);
- ``robustness.json`` / ``robustness.md`` / ``robustness.png``; ``cka.json`` / ``cka.png``;
- ``training_args.yaml``, ``subset_ids.json``, ``config.json``;
- the checkpoint's provenance (the pretraining it descends from, then each finetune on top):
  a ``provenance`` entry of ``config.json`` or a ``provenance.json`` beside it, when present.

:func:`read_reports` gathers whatever is present; :func:`place_reports` copies reports made
elsewhere into the folder (:func:`hf_vssl.hub.cards.assemble_reports` then writes the model card).
:func:`redact_local_paths` is what cards and uploads show of a run's settings: local paths
replaced by placeholders (the dataset named instead of its folder).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hf_vssl.hub.naming import hub_id_or_none

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
RESULT_KEYS = ("clip_top1", "clip_top5", "video_top1", "video_top5")
RETRIEVAL_KEYS = ("top1", "top5", "top10", "top20")


@dataclass
class FolderReports:
    """Everything a card is built from; each field is ``None`` / empty when its file is absent."""

    folder: Path
    config: dict[str, Any]
    training_args: dict[str, Any] | None = None
    subset: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    robustness: dict[str, Any] | None = None
    cka: dict[str, Any] | None = None
    provenance: Any = None

    def has(self, name: str) -> bool:
        return (self.folder / name).is_file()

    @property
    def is_classifier(self) -> bool:
        """A fine-tuned classifier (vs. a pretraining / feature-extraction checkpoint)."""
        architectures = self.config.get("architectures") or []
        return any(a.endswith("ForVideoClassification") for a in architectures)

    @property
    def pretraining_args(self) -> dict[str, Any] | None:
        """``training_args.yaml`` when it comes from a pretraining run (it names a pretext task)."""
        return self.training_args if self.training_args and "pretext_task" in self.training_args else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def _maybe_json(path: Path) -> Any:
    return _read_json(path) if path.is_file() else None


def metrics_files(folder: PathLike) -> list[Path]:
    """``metrics.json``, ``retrieval.json`` (the finetune recipe's retrieval-only mode), then
    ``metrics-*.json`` in name order."""
    folder = Path(folder)
    main = [folder / name for name in ("metrics.json", "retrieval.json") if (folder / name).is_file()]
    return main + sorted(folder.glob("metrics-*.json"))


def read_reports(folder: PathLike) -> FolderReports:
    """Read the reports present in a checkpoint folder (``config.json`` is required)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder} has no config.json: not a checkpoint folder (save_pretrained writes one)"
        )
    args_path = folder / "training_args.yaml"
    training_args = yaml.safe_load(args_path.read_text(encoding="utf-8")) if args_path.is_file() else None
    metrics = []
    for path in metrics_files(folder):
        payload = _read_json(path)
        metrics.extend(payload if isinstance(payload, list) else [payload])
    for record in metrics:
        validate_metrics(record)
    return FolderReports(
        folder=folder,
        config=_read_json(folder / "config.json"),
        training_args=training_args if isinstance(training_args, dict) else None,
        subset=_maybe_json(folder / "subset_ids.json"),
        metrics=metrics,
        robustness=_maybe_json(folder / "robustness.json"),
        cka=_maybe_json(folder / "cka.json"),
        provenance=read_provenance(folder),
    )


def read_provenance(folder: PathLike) -> Any:
    """The checkpoint's provenance: ``provenance.json`` in ``folder``, else the ``provenance`` entry of
    its ``config.json``, else None (checkpoints made before provenance was recorded)."""
    folder = Path(folder)
    sidecar = _maybe_json(folder / "provenance.json")
    if sidecar is not None:
        return sidecar
    config = _maybe_json(folder / "config.json")
    return config.get("provenance") if isinstance(config, dict) else None


def find_stage(data: Any, key: str) -> dict[str, Any] | None:
    """The first dict in nested dicts / lists (depth first) holding a non-empty ``key``, else None:
    e.g. the pretraining stage of a provenance record is the one naming a ``pretext_task``."""
    if isinstance(data, Mapping):
        if data.get(key) not in (None, ""):
            return dict(data)
        items = data.values()
    elif isinstance(data, (list, tuple)):
        items = data
    else:
        return None
    return next((found for item in items if (found := find_stage(item, key)) is not None), None)


def all_settings(data: Any, key: str) -> list[Any]:
    """Every non-empty value of ``key`` in nested dicts / lists, in depth-first order."""
    if isinstance(data, Mapping):
        own = [data[key]] if data.get(key) not in (None, "") else []
        return own + [v for item in data.values() for v in all_settings(item, key)]
    if isinstance(data, (list, tuple)):
        return [v for item in data for v in all_settings(item, key)]
    return []


# -- redaction -------------------------------------------------------------------------------------

LOCAL_PATH = "<local path>"
# Settings that always name something on the machine that ran (never a Hub id).
_PATH_SETTINGS = {"output_dir", "logging_dir", "resume_from_checkpoint", "config", "cache_dir", "data_dir"}
# Settings that are a Hub id or a local checkpoint: kept when they read as a Hub id.
_MODEL_SETTINGS = {"base_model", "teacher", "student"}


def is_local_path(text: str) -> bool:
    """True for an absolute path (POSIX, ``~`` or a Windows drive): never shown on a card or uploaded."""
    return os.path.isabs(text) or text.startswith("~") or bool(re.match(r"^[A-Za-z]:[\\/]", text))


def redact_local_paths(data: Any, dataset: str | None = None) -> Any:
    """A copy of run settings / report data with every local path replaced by a placeholder.

    ``dataset_root`` becomes ``<local {dataset} folder>`` (the sibling ``dataset`` names it);
    ``output_dir`` and the other folders of the run become ``<local path>``; model references
    (``model_name_or_path``, ``*_name_or_path``, ``base_model``, ...) stay when they are Hub ids
    and become ``<local checkpoint>`` otherwise; any other absolute path becomes ``<local path>``.
    Nested dicts and lists are redacted the same way; the input is not modified.
    """
    if isinstance(data, Mapping):
        named = data.get("dataset")
        dataset = named if isinstance(named, str) and not is_local_path(named) else dataset
        out = {}
        for key, value in data.items():
            if value is None or isinstance(value, bool) or not isinstance(key, str):
                out[key] = value
            elif key == "dataset_root":
                out[key] = f"<local {dataset} folder>" if dataset else LOCAL_PATH
            elif key in _PATH_SETTINGS and isinstance(value, (str, os.PathLike)):
                out[key] = LOCAL_PATH
            elif (key.endswith("name_or_path") or key in _MODEL_SETTINGS) and isinstance(
                value, (str, os.PathLike)
            ):
                out[key] = str(value) if hub_id_or_none(value) else "<local checkpoint>"
            else:
                out[key] = redact_local_paths(value, dataset)
        return out
    if isinstance(data, (list, tuple)):
        return [redact_local_paths(item, dataset) for item in data]
    if isinstance(data, str) and is_local_path(data):
        return LOCAL_PATH
    return data


def validate_metrics(record: Mapping[str, Any]) -> None:
    """Check a ``metrics.json`` record against the folder contract; ``ValueError`` says what is wrong."""
    if not isinstance(record, Mapping) or not record.get("dataset"):
        raise ValueError(f"a metrics record needs a 'dataset' (got {record!r:.200})")
    results = record.get("results") or {}
    retrieval = record.get("retrieval") or {}
    if not results and not retrieval:
        raise ValueError(f"metrics for {record['dataset']!r} hold neither 'results' nor 'retrieval'")
    for group, values in (("results", results), ("retrieval", retrieval)):
        for key, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(
                    f"metrics[{group!r}][{key!r}] of {record['dataset']!r} is not a number: {value!r}"
                )
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"metrics[{group!r}][{key!r}] of {record['dataset']!r} is {value}: accuracies are "
                    "fractions in [0, 1] (percentages divided by 100)"
                )


# -- assembling ------------------------------------------------------------------------------------


def _place_bytes(data: bytes, dest: Path) -> bool:
    """Write ``data`` to ``dest`` unless a file is there already; True when written."""
    if dest.exists():
        if dest.read_bytes() != data:
            logger.warning(
                "kept the existing %s (a different version was offered); delete it to replace it", dest
            )
        return False
    dest.write_bytes(data)
    return True


def _place_file(src: Path, dest: Path) -> bool:
    if not src.is_file():
        raise FileNotFoundError(f"report file {src} does not exist")
    if src.resolve() == dest.resolve():
        return False
    if dest.exists():
        return _place_bytes(src.read_bytes(), dest)
    shutil.copyfile(src, dest)
    return True


def _slug(text: Any) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-").lower()


def metrics_filename(record: Mapping[str, Any]) -> str:
    """``metrics-{dataset}-{mode}-fold{k}[-{label_set}].json``: where a further record is kept."""
    parts = [
        record["dataset"],
        record.get("mode") or "finetune",
        f"fold{record.get('fold', 1)}",
        record.get("label_set"),
    ]
    return "metrics-" + "-".join(_slug(p) for p in parts if p) + ".json"


def _add_metrics(folder: Path, record: Mapping[str, Any]) -> None:
    validate_metrics(record)
    data = (json.dumps(record, indent=2) + "\n").encode()
    main = folder / ("metrics.json" if record.get("results") else "retrieval.json")
    if not main.exists():
        main.write_bytes(data)
    elif _read_json(main) != record:  # a second downstream result goes beside the first
        _place_bytes(data, folder / metrics_filename(record))


def _as_records(metrics) -> list[dict[str, Any]]:
    items = metrics if isinstance(metrics, Sequence) and not isinstance(metrics, (str, bytes)) else [metrics]
    records = []
    for item in items:
        payload = _read_json(Path(item)) if isinstance(item, (str, os.PathLike)) else item
        records.extend(payload if isinstance(payload, list) else [payload])
    return records


def _report_dir(path: PathLike, main_file: str) -> Path:
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if not (folder / main_file).is_file():
        raise FileNotFoundError(f"{folder} holds no {main_file}")
    return folder


def place_reports(
    folder: PathLike,
    *,
    metrics=None,
    robustness_dir: PathLike | None = None,
    cka_dir: PathLike | None = None,
    training_args: PathLike | Mapping[str, Any] | None = None,
    subset_ids: PathLike | None = None,
) -> Path:
    """Copy reports into the checkpoint ``folder``; returns the folder
    (:func:`hf_vssl.hub.cards.assemble_reports` also writes the model card).

    Args:
        metrics: a ``metrics.json`` path or dict, or a list of them. The first lands in
            ``metrics.json``; further (different) ones in ``metrics-{dataset}-{mode}-fold{k}.json``.
        robustness_dir: a folder (or its ``robustness.json``) with ``robustness.json/.md/.png``.
        cka_dir: a folder (or its ``cka.json``) with ``cka.json`` and ``cka.png``.
        training_args: a ``training_args.yaml`` path or a dict of the run's arguments.
        subset_ids: a ``subset_ids.json`` path (see :func:`hf_vssl.data.subsets.save_subset`).

    A file already in the folder is kept as is (a differing offer is logged), so assembling
    twice is a no-op. Inputs are checked before anything is written.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a checkpoint folder")
    records = _as_records(metrics) if metrics is not None else []
    for record in records:
        validate_metrics(record)
    robustness = _report_dir(robustness_dir, "robustness.json") if robustness_dir is not None else None
    cka = _report_dir(cka_dir, "cka.json") if cka_dir is not None else None

    for record in records:
        _add_metrics(folder, record)
    if robustness is not None:
        for name in ("robustness.json", "robustness.md", "robustness.png"):
            if (robustness / name).is_file():
                _place_file(robustness / name, folder / name)
    if cka is not None:
        for name in ("cka.json", "cka.png"):
            if (cka / name).is_file():
                _place_file(cka / name, folder / name)
    if training_args is not None:
        if isinstance(training_args, Mapping):
            text = yaml.safe_dump(dict(training_args), sort_keys=False)
            _place_bytes(text.encode(), folder / "training_args.yaml")
        else:
            _place_file(Path(training_args), folder / "training_args.yaml")
    if subset_ids is not None:
        _place_file(Path(subset_ids), folder / "subset_ids.json")
    return folder
