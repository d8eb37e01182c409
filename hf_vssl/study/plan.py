"""The plan of a study: its cells filtered by ``--only``/``--exclude``, their dependency waves and cost.

The cost is an estimate in GPU-hours from measured H200 throughput (``throughput.yaml`` beside
this module, taken from ``docs/results/``): training samples x clips per sample / clips per
second, scaled by the clip's voxels and the width squared relative to the measured 16x112x112
full-width step, evaluation passes at a third of a training step. A backbone without a
throughput measurement is FLOP-scaled: the reference backbone's measured clips per second times
the ratio of the two backbones' GFLOPs. That assumes the reference's efficiency, which depthwise
and grouped convolutions (ShuffleNet, MobileNet) and attention do not reach on a GPU, so those
estimates are low; the plan totals them apart from the measured ones and names the backbones.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from importlib import resources as package_resources
from typing import Any

import yaml

from .spec import Cell, same_value

_FILTER_FIELDS = ("kind", "stage", "cell_id")


def parse_filters(items: list[str] | None, flag: str) -> dict[str, list[str]]:
    """``["task=rspnet,vcop", "backbone=r21d"]`` -> ``{"task": ["rspnet", "vcop"], "backbone": ["r21d"]}``."""
    filters: dict[str, list[str]] = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"{flag} {item!r}: expected AXIS=VALUE[,VALUE...], e.g. task=rspnet,vcop")
        filters.setdefault(key.strip(), []).extend(v.strip() for v in values.split(","))
    return filters


def _value(cell: Cell, key: str) -> Any:
    if key in _FILTER_FIELDS:
        return getattr(cell, key)
    if key in cell.columns:
        return cell.columns[key]
    return cell.settings.get(key)


def _hits(cell: Cell, filters: dict[str, list[str]]) -> bool:
    return all(any(same_value(_value(cell, k), v) for v in values) for k, values in filters.items())


def _check_keys(cells: list[Cell], filters: dict[str, list[str]], flag: str) -> None:
    known = set(_FILTER_FIELDS) | {k for c in cells for k in (*c.columns, *c.settings)}
    for key in filters:
        if key not in known:
            raise ValueError(
                f"{flag} {key}=...: no cell has the axis {key!r}; axes: {', '.join(sorted(known))}"
            )


def select(
    cells: list[Cell], only: dict[str, list[str]] | None = None, exclude: dict[str, list[str]] | None = None
) -> list[Cell]:
    """Filter the grid, keeping it runnable.

    ``only``: the cells matching every axis filter, plus the cells they depend on (a finetune
    kept by ``--only downstream=hmdb51`` brings its pretraining). ``exclude``: drop the matching
    cells and every cell that depends on one of them. Order is kept.
    """
    only, exclude = only or {}, exclude or {}
    _check_keys(cells, only, "--only")
    _check_keys(cells, exclude, "--exclude")
    by_id = {c.cell_id: c for c in cells}
    keep = {c.cell_id for c in cells if _hits(c, only)} if only else set(by_id)
    pending = list(keep)
    while pending:  # bring the ancestors of every kept cell
        for parent in by_id[pending.pop()].parent_ids:
            if parent not in keep:
                keep.add(parent)
                pending.append(parent)
    dropped = {c.cell_id for c in cells if exclude and _hits(c, exclude)}
    for cell in cells:  # dependency order: a parent is decided before its children
        if any(p in dropped for p in cell.parent_ids):
            dropped.add(cell.cell_id)
    return [c for c in cells if c.cell_id in keep and c.cell_id not in dropped]


def waves(cells: list[Cell]) -> list[list[Cell]]:
    """Cells grouped by dependency depth: wave 0 needs nothing, wave k only cells of earlier waves."""
    depth: dict[str, int] = {}
    ids = {c.cell_id for c in cells}
    for cell in cells:  # cells come in dependency order
        depth[cell.cell_id] = 1 + max((depth[p] for p in cell.parent_ids if p in ids), default=-1)
    grouped: list[list[Cell]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for cell in cells:
        grouped[depth[cell.cell_id]].append(cell)
    return grouped


# -- cost -----------------------------------------------------------------------------------------


def throughput_table() -> dict[str, Any]:
    """The measured throughput shipped with the package (``throughput.yaml``)."""
    return yaml.safe_load((package_resources.files("hf_vssl.study") / "throughput.yaml").read_text())


@dataclass
class CellCost:
    """A cell's estimated GPU-hours, or ``None`` with the reason (``note``)."""

    gpu_hours: float | None
    note: str = ""
    #: True when the backbone has no throughput measurement and its speed is FLOP-scaled.
    flop_scaled: bool = False


def _train_samples(settings: dict, videos: int | None, epochs_key: str) -> float | None:
    if settings.get("max_steps"):
        return float(settings["max_steps"]) * settings.get("batch_size", 8)
    epochs = settings.get(epochs_key)
    if epochs is None or videos is None:
        return None
    return float(epochs) * videos


def _videos(table: dict, dataset: str | None, subset_size: int | None, split: int) -> int | None:
    counts = table["dataset_videos"].get(dataset)
    if split == 0 and subset_size:
        return int(subset_size)
    return None if counts is None else counts[split]


def estimate_cost(cell: Cell, by_id: dict[str, Cell], table: dict | None = None) -> CellCost:
    """GPU-hours of one cell on an H200, from ``throughput.yaml``; see the module documentation."""
    table = table or throughput_table()
    columns, settings = cell.columns, cell.settings
    backbone = columns.get("backbone") or settings.get("backbone") or "r21d"
    if cell.kind == "zero_shot":
        return CellCost(None, f"no measurement for {backbone}")
    plain, flop_scaled = _clips_per_second(table, backbone)
    if plain is None:
        return CellCost(None, f"no measurement or GFLOPs for {backbone}")
    frames, size = columns.get("num_frames") or 16, columns.get("image_size") or 112
    ref_frames, ref_size = table["reference_clip"]
    scale = (frames / ref_frames) * (size / ref_size) ** 2 * (columns.get("width") or 1.0) ** 2
    train_videos = _videos(table, columns.get("downstream"), None, 0)
    test_videos = _videos(table, columns.get("downstream"), None, 1)
    eval_clips = settings.get("eval_clips", 5)
    if cell.kind in ("pretrain", "distill"):
        samples = _train_samples(
            settings, _videos(table, columns["pretrain_dataset"], columns.get("subset_size"), 0), "epochs"
        )
        if samples is None:
            return CellCost(None, f"no size for {columns['pretrain_dataset']} without max_steps")
        if cell.kind == "pretrain":
            task = columns["task"]
            overhead = table["pretext_clips_per_second"][task] / table["pretext_plain_clips_per_second"][task]
            seconds = samples * table["clips_per_sample"][task] / (plain * overhead)
        else:  # the teachers' forward passes cost about a third of a training step each
            seconds = samples * (1 + len(cell.parents.get("teachers", [])) / 3) / plain
    elif cell.kind in ("finetune", "linear_probe", "retrieval"):
        samples = _train_samples(settings, train_videos, "train_epochs") or 0.0
        if cell.kind == "finetune" and not samples:
            return CellCost(None, f"no size for {columns.get('downstream')} without max_steps")
        train_cost = samples if cell.kind == "finetune" else samples / 3
        evaluated = (test_videos or 0) * eval_clips + (train_videos or 0) * eval_clips * (
            cell.kind == "retrieval"
        )
        seconds = (train_cost + evaluated / 3) / plain
    elif cell.kind == "robustness":
        passes = 1 + len(settings.get("severities") or [1, 2, 3, 4, 5])
        seconds = (test_videos or 0) * eval_clips * passes / 3 / plain
    elif cell.kind == "cka":
        models = 1 + bool(cell.parents.get("compare_to"))
        seconds = (settings.get("num_videos") or test_videos or 0) * models / 3 / plain
    else:
        return CellCost(None, f"no cost model for {cell.kind}")
    return CellCost(seconds * scale / 3600, "FLOP-scaled" if flop_scaled else "", flop_scaled)


def _clips_per_second(table: dict, backbone: str) -> tuple[float | None, bool]:
    """A backbone's training clips per second: measured, or FLOP-scaled from the reference's."""
    measured = table["backbone_clips_per_second"].get(backbone)
    if measured is not None:
        return measured, False
    gflops = table.get("backbone_gflops", {})
    reference = table.get("flop_scaling_reference")
    if backbone not in gflops or reference not in gflops:
        return None, False
    return table["backbone_clips_per_second"][reference] * gflops[reference] / gflops[backbone], True


def format_plan(cells: list[Cell], table: dict | None = None) -> str:
    """The ``--dry_run`` text: every cell by dependency wave, with its parents and estimated cost,
    then the totals per kind and the backbones without a measurement."""
    table = table or throughput_table()
    by_id = {c.cell_id: c for c in cells}
    lines = [f"{len(cells)} cells in {len(waves(cells))} dependency waves (estimated cost on one H200):"]
    total, per_kind, unknown = 0.0, Counter(), Counter()
    scaled_total, scaled_cells, scaled_backbones = 0.0, 0, set()
    for number, wave in enumerate(waves(cells)):
        lines.append(f"wave {number}: {len(wave)} cells")
        for cell in wave:
            cost = estimate_cost(cell, by_id, table)
            shown = f"{cost.gpu_hours:10.3g} GPU-h" if cost.gpu_hours is not None else f"   {cost.note}"
            shown += " (FLOP-scaled)" if cost.flop_scaled else ""
            needs = f" <- {', '.join(cell.parent_ids)}" if cell.parent_ids else ""
            lines.append(f"  {cell.cell_id}  {cell.describe()}{needs}  {shown}")
            if cost.gpu_hours is None:
                unknown[cost.note] += 1
            elif cost.flop_scaled:
                scaled_total += cost.gpu_hours
                scaled_cells += 1
                scaled_backbones.add(cell.columns.get("backbone") or cell.settings.get("backbone"))
            else:
                total += cost.gpu_hours
                per_kind[cell.kind] += cost.gpu_hours
    lines.append(
        "cells per kind: " + ", ".join(f"{k} {n}" for k, n in Counter(c.kind for c in cells).items())
    )
    lines.append(
        f"estimated total: {total:.4g} GPU-hours on H200 ("
        + ", ".join(f"{k} {v:.3g}" for k, v in per_kind.items())
        + ")"
    )
    if scaled_cells:
        lines.append(
            f"FLOP-scaled, apart from the total: {scaled_total:.4g} GPU-hours for {scaled_cells} cells of "
            f"{', '.join(sorted(scaled_backbones))} (no throughput measurement; {table['flop_scaling_reference']}'s "
            "measured speed scaled by GFLOPs, low for depthwise/grouped convolutions and attention)"
        )
    for note, count in unknown.items():
        lines.append(f"not in the total: {count} cells ({note})")
    return "\n".join(lines)
