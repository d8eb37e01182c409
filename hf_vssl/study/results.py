"""A study's results as one dataset: one parquet part per finished cell, long format (a row per metric).

The layout of a study folder::

    <study_dir>/cells/<cell_id>/cell.json      the cell (settings, columns, parents), written by the plan
    <study_dir>/cells/<cell_id>/output/        the recipe's --output_dir
    <study_dir>/cells/<cell_id>/log.txt        the recipe's stdout and stderr
    <study_dir>/cells/<cell_id>/result.json    written last, atomically: the cell finished
    <study_dir>/results/<cell_id>.parquet      its rows (:data:`RESULT_COLUMNS`)

:func:`record_cell` turns a finished recipe output into rows, :func:`load_results` reads every
part with ``datasets.load_dataset("parquet", ...)``, :func:`push_results` uploads them as a Hub
dataset repo with a card.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from hf_vssl.hub import publish_dataset
from hf_vssl.models import VSSLConfig, VSSLModel
from hf_vssl.utils.profiling import count_gflops, count_parameters

from .spec import Cell, canonical_json

#: The results row: the contract between the study runner (writes) and the report (reads).
RESULT_COLUMNS = datasets.Features(
    {
        "cell_id": datasets.Value("string"),
        "kind": datasets.Value("string"),
        "parent_ids": datasets.Value("string"),
        "task": datasets.Value("string"),
        "backbone": datasets.Value("string"),
        "width": datasets.Value("float64"),
        "num_frames": datasets.Value("int64"),
        "image_size": datasets.Value("int64"),
        "pretrain_dataset": datasets.Value("string"),
        "subset_size": datasets.Value("int64"),
        "epochs": datasets.Value("float64"),
        "downstream": datasets.Value("string"),
        "mode": datasets.Value("string"),
        "noise": datasets.Value("string"),
        "severity": datasets.Value("int64"),
        "seed": datasets.Value("int64"),
        "teachers": datasets.Value("string"),
        "label_set": datasets.Value("string"),
        "variant": datasets.Value("string"),
        "metric": datasets.Value("string"),
        "value": datasets.Value("float64"),
        # What one number cannot hold, as JSON: the layer-by-layer matrix of a `cka_map` row.
        "data_json": datasets.Value("string"),
        "settings_json": datasets.Value("string"),
        "output_dir": datasets.Value("string"),
        "hub_repo_id": datasets.Value("string"),
        "finished_at": datasets.Value("string"),
    }
)

RETRIEVAL_KS = (1, 5, 10, 20)
#: Logged values of a training run that describe its speed or schedule, not what it learns.
_NOT_OBJECTIVES = frozenset({"step", "epoch", "lr", "learning_rate", "grad_norm", "clips_per_second"})
#: The objective rows of a training cell: ``log_first_<key>`` (first log) and ``log_end_<key>``
#: (mean of the last :data:`END_LOGS` logs, steadier than the last one).
END_LOGS = 5


class CellOutputError(ValueError):
    """A recipe exited cleanly but its output folder lacks what the cell's rows are read from."""


# -- the study folder ------------------------------------------------------------------------------


def cell_dir(study_dir: str | Path, cell_id: str) -> Path:
    return Path(study_dir) / "cells" / cell_id


def output_dir_of(study_dir: str | Path, cell_id: str) -> Path:
    """The recipe's ``--output_dir`` of a cell."""
    return cell_dir(study_dir, cell_id) / "output"


def log_path_of(study_dir: str | Path, cell_id: str) -> Path:
    return cell_dir(study_dir, cell_id) / "log.txt"


def result_path_of(study_dir: str | Path, cell_id: str) -> Path:
    return cell_dir(study_dir, cell_id) / "result.json"


def part_path_of(study_dir: str | Path, cell_id: str) -> Path:
    return Path(study_dir) / "results" / f"{cell_id}.parquet"


def is_finished(study_dir: str | Path, cell_id: str) -> bool:
    """A cell is finished when its ``result.json`` exists (written last, after its rows)."""
    return result_path_of(study_dir, cell_id).is_file()


def _temporary_beside(path: Path) -> Path:
    # Not tempfile.mkstemp: its files are private (0600) and a study folder is often shared (a
    # cluster's filesystem, a report in git); an ordinary new file follows the umask.
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: readers see all or nothing."""
    tmp = _temporary_beside(path)
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_cell_file(study_dir: str | Path, cell: Cell) -> None:
    """``cells/<id>/cell.json``: the cell as the plan resolved it (read by people and by result rows)."""
    write_atomic(
        cell_dir(study_dir, cell.cell_id) / "cell.json",
        (json.dumps(cell.to_dict(), indent=1) + "\n").encode(),
    )


# -- metrics per kind ------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CellOutputError(f"{path}: missing (the recipe did not write it)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CellOutputError(f"{path}: not valid JSON ({error})") from None


def _log_rows(output: Path) -> list[dict]:
    path = output / "log_history.jsonl"
    if not path.is_file():
        raise CellOutputError(f"{path}: missing (the recipe did not log)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _training_metrics(output: Path) -> list[tuple[str, float, dict]]:
    rows = _log_rows(output)
    losses = [r for r in rows if "loss" in r]
    if not losses:
        raise CellOutputError(f"{output / 'log_history.jsonl'}: no logged loss")
    steps = max(int(r.get("step", 0)) for r in rows)
    metrics = [("final_loss", float(losses[-1]["loss"]), {}), ("steps", float(steps), {})]
    return metrics + objective_metrics(losses)


def objective_metrics(logs: list[dict]) -> list[tuple[str, float, dict]]:
    """First and end value of every logged objective (loss, accuracies, the tasks' own terms)."""
    keys = [
        k
        for k, v in logs[0].items()
        if k not in _NOT_OBJECTIVES and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    metrics = []
    for key in keys:
        values = [float(r[key]) for r in logs if isinstance(r.get(key), (int, float))]
        tail = values[-END_LOGS:]
        metrics += [(f"log_first_{key}", values[0], {}), (f"log_end_{key}", sum(tail) / len(tail), {})]
    return metrics


def _backbone_size(output: Path) -> list[tuple[str, float, dict]]:
    """Backbone parameters and forward GFLOPs per clip at the run's clip shape (random weights: sizes only)."""
    config = VSSLConfig.from_pretrained(output)
    backbone = VSSLModel(config).backbone
    shape = (1, 3, config.num_frames, config.image_size, config.image_size)
    return [
        ("params", float(count_parameters(backbone)), {}),
        ("gflops", float(count_gflops(backbone, shape)), {}),
    ]


def _classification(output: Path) -> list[tuple[str, float, dict]]:
    results = _read_json(output / "metrics.json")["results"]
    return [
        (name, float(results[f"video_{name}"]), {}) for name in ("top1", "top5") if f"video_{name}" in results
    ]


def _retrieval(output: Path) -> list[tuple[str, float, dict]]:
    scores = _read_json(output / "retrieval.json")["retrieval"]
    return [(f"R@{k}", float(scores[f"top{k}"]), {}) for k in RETRIEVAL_KS if f"top{k}" in scores]


def _robustness(output: Path, noise: str) -> list[tuple[str, float, dict]]:
    report = _read_json(output / "robustness.json")
    rows = [("top1", float(report["clean_top1"]), {"noise": noise, "severity": 0})]
    for cell in report["cells"]:
        if cell["severity"]:
            rows.append(
                ("top1", float(cell["top1"]), {"noise": cell["noise"], "severity": int(cell["severity"])})
            )
    for kind, average in report["average"].items():
        rows.append(
            ("relative_robustness", float(average["relative_robustness"]), {"noise": kind, "severity": None})
        )
    return rows


def _cka(output: Path) -> list[tuple[str, float, dict]]:
    data = _read_json(output / "cka.json")
    matrix = data["matrix"]
    size = min(len(matrix), len(matrix[0]) if matrix else 0)
    diagonal = [matrix[i][i] for i in range(size)]
    off = [v for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j]
    rows = [("cka_diagonal_mean", sum(diagonal) / len(diagonal), {})]
    if off:
        rows.append(("cka_offdiagonal_mean", sum(off) / len(off), {}))
    # The map itself travels with the results, so a pushed dataset can still draw it.
    saved = {k: data[k] for k in ("layers_a", "layers_b", "matrix", "model_a", "model_b") if k in data}
    rows.append(("cka_map", float("nan"), {"data_json": canonical_json(saved)}))
    return rows


def cell_metrics(cell: Cell, output: Path) -> list[tuple[str, float, dict]]:
    """``(metric, value, column overrides)`` of a finished cell, read from its recipe's output files."""
    if cell.kind == "pretrain":
        return _training_metrics(output) + _backbone_size(output)
    if cell.kind == "distill":
        return _training_metrics(output) + _backbone_size(output)
    if cell.kind in ("finetune", "linear_probe", "zero_shot"):
        return _classification(output)
    if cell.kind == "retrieval":
        return _retrieval(output)
    if cell.kind == "robustness":
        return _robustness(output, cell.settings["noise"])
    if cell.kind == "cka":
        return _cka(output)
    raise CellOutputError(f"no metrics defined for a {cell.kind} cell")


def _hub_repo_id(cell: Cell) -> str | None:
    args = cell.settings.get("args") or []
    if "--hub_model_id" in args and args.index("--hub_model_id") + 1 < len(args):
        return args[args.index("--hub_model_id") + 1]
    return None


def cell_rows(cell: Cell, study_dir: str | Path, finished_at: str | None = None) -> list[dict[str, Any]]:
    """The results rows of a finished cell (one per metric), with its full resolved settings."""
    output = output_dir_of(study_dir, cell.cell_id)
    finished_at = finished_at or datetime.now(UTC).isoformat(timespec="seconds")
    settings = {"kind": cell.kind, "stage": cell.stage, "settings": cell.settings, "columns": cell.columns}
    settings["parents"] = cell.parents
    if cell.kind == "cka":
        settings["cka_json"] = str(output / "cka.json")
    metrics = cell_metrics(cell, output)
    if not metrics:
        raise CellOutputError(f"{output}: the {cell.kind} recipe's outputs hold none of its metrics")
    rows = []
    for metric, value, overrides in metrics:
        columns = {**cell.columns, **overrides}
        data_json = columns.pop("data_json", None)
        rows.append(
            {
                "cell_id": cell.cell_id,
                "kind": cell.kind,
                "parent_ids": ",".join(cell.parent_ids),
                **{k: columns.get(k) for k in RESULT_COLUMNS if k in columns},
                "metric": metric,
                "value": float(value),
                "data_json": data_json,
                "settings_json": canonical_json(settings),
                "output_dir": str(output),
                "hub_repo_id": _hub_repo_id(cell),
                "finished_at": finished_at,
            }
        )
    return rows


def record_cell(cell: Cell, study_dir: str | Path, finished_at: str | None = None) -> list[dict[str, Any]]:
    """Write a finished cell's parquet part, then its ``result.json`` (last, atomically); return the rows."""
    rows = cell_rows(cell, study_dir, finished_at)
    dataset = datasets.Dataset.from_list(rows, features=RESULT_COLUMNS)
    _write_parquet_atomic(dataset.data.table, part_path_of(study_dir, cell.cell_id))
    result = {"cell_id": cell.cell_id, "finished_at": rows[0]["finished_at"] if rows else None, "rows": rows}
    write_atomic(result_path_of(study_dir, cell.cell_id), (json.dumps(result, indent=1) + "\n").encode())
    return rows


def refresh_results(cells: list[Cell], study_dir: str | Path) -> list[str]:
    """Rebuild the rows of every finished cell of ``cells`` from its outputs; returns their ids.

    For a study finished under an older hf_vssl whose rows lack a newer metric or column: no recipe
    runs, and each cell keeps its ``finished_at``.
    """
    refreshed = []
    for cell in cells:
        path = result_path_of(study_dir, cell.cell_id)
        if not path.is_file():
            continue
        previous = json.loads(path.read_text()).get("finished_at")
        record_cell(cell, study_dir, finished_at=previous)
        refreshed.append(cell.cell_id)
    return refreshed


# -- the dataset -----------------------------------------------------------------------------------


def result_parts(study_dir: str | Path) -> list[Path]:
    return sorted((Path(study_dir) / "results").glob("*.parquet"))


def load_results(study_dir: str | Path) -> datasets.Dataset:
    """Every finished cell's rows as one ``datasets.Dataset`` (:data:`RESULT_COLUMNS`)."""
    parts = result_parts(study_dir)
    if not parts:
        raise FileNotFoundError(f"{Path(study_dir) / 'results'}: no results yet (no cell has finished)")
    return datasets.load_dataset(
        "parquet", data_files=[str(p) for p in parts], split="train", features=RESULT_COLUMNS
    )


def export_results(study_dir: str | Path, path: str | Path) -> Path:
    """Every finished cell's rows in one parquet file ``path`` (what a report folder ships with)."""
    table = load_results(study_dir).data.table
    order = [(column, "ascending") for column in ("cell_id", "metric", "noise", "severity")]
    return _write_parquet_atomic(table.sort_by(order), Path(path))


def _write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    """``table`` as the parquet file ``path``, through a temporary file and a rename."""
    tmp = _temporary_beside(path)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def results_card(study_dir: str | Path, repo_id: str, num_rows: int, num_cells: int) -> str:
    """The dataset card of a pushed study: what a row is, how to load it, what produced it."""
    columns = ", ".join(f"`{name}`" for name in RESULT_COLUMNS)
    return "\n".join(
        [
            "---",
            "library_name: hf_vssl",
            "tags: [hf_vssl, video, self-supervised-learning, benchmark-results]",
            "configs:",
            "- config_name: default",
            "  data_files: data/*.parquet",
            "---",
            f"# {repo_id.split('/')[-1]}",
            "",
            f"Results of an hf_vssl study ({num_cells} finished cells, {num_rows} rows), written by "
            "`recipes/study.py`. Long format: one row per (cell, metric); a cell is one recipe run "
            "(pretraining, finetuning, linear probe, retrieval, robustness, CKA, distillation or "
            "zero-shot) and `settings_json` holds all its resolved settings. Accuracies are fractions "
            "in [0, 1]; robustness rows carry `noise` and `severity` (0 = clean).",
            "",
            "```python",
            "from datasets import load_dataset",
            f'results = load_dataset("{repo_id}", split="train")',
            "```",
            "",
            f"Columns: {columns}.",
            "",
        ]
    )


def push_results(
    study_dir: str | Path,
    repo_id: str,
    token: str | None = None,
    endpoint: str | None = None,
    private: bool = False,
) -> str:
    """Upload every result part (``data/<cell_id>.parquet``) and a card as the dataset repo ``repo_id``; returns its URL."""
    parts = result_parts(study_dir)
    if not parts:
        raise FileNotFoundError(f"{Path(study_dir) / 'results'}: no results to push (no cell has finished)")
    num_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    with tempfile.TemporaryDirectory() as staging:
        folder = Path(staging)
        (folder / "data").mkdir()
        for part in parts:
            shutil.copyfile(part, folder / "data" / part.name)
        (folder / "README.md").write_text(results_card(study_dir, repo_id, num_rows, len(parts)))
        return publish_dataset(
            folder, repo_id, private=private, token=token, endpoint=endpoint,
            commit_message=f"Study results: {len(parts)} cells",
        )  # fmt: skip
