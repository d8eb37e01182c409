"""The report's overview page: every initialisation of a study side by side.

The paper's tables lay cells out along fixed axes (task x backbone, task x subset, ...). A study
such as the miniature one asks a different question first: for each way of initialising a
backbone (a pretext task, a variant of one, a distilled student, random weights), what does
finetuning on each label set reach, and is that more than the seeds' spread? This page answers
it from the same results rows:

- **downstream accuracy**: ``finetune`` and ``linear_probe`` ``top1`` per initialisation (rows) and
  downstream setting (columns: downstream set, label set, mode), mean ± std over seeds, with the
  gain over the randomly initialised backbone of the same clip and width, counted only when it
  exceeds the seed spread (the larger of the two standard deviations);
- **robustness**: the clean top-1 and the relative robustness per noise of each initialisation;
- **pretext objectives**: each pretraining's logged objectives, first log -> mean of the last logs
  (``log_first_<key>`` / ``log_end_<key>`` rows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hf_vssl.study.spec import PRETRAINING_COLUMNS
from hf_vssl.study.tables import ORDER, key_label, markdown_grid, sorted_keys, value_label

#: What tells two initialisations apart (the pretraining's columns).
INIT_AXES = ("task", "variant", "teachers", *PRETRAINING_COLUMNS[1:])
#: A downstream setting: the columns of the accuracy table.
DOWNSTREAM_AXES = ("downstream", "label_set", "mode")
#: The random-init reference of a row shares these axes (same network and clip).
REFERENCE_AXES = ("backbone", "width", "num_frames", "image_size")
#: The pretext objectives shown (the tasks' own accuracies; other logged keys stay in the rows).
OBJECTIVES = ("loss", "accuracy", "batch_accuracy", "speed_accuracy")
RANDOM_INIT = "random init"


def _labels(frame: pd.DataFrame, axes: tuple[str, ...]) -> pd.Series:
    if frame.empty:
        return pd.Series([], dtype=object, index=frame.index)
    return frame[list(axes)].apply(lambda row: tuple(key_label(v) for v in row), axis=1)


def _is_random_init(values: dict[str, str]) -> bool:
    """No pretext task and no teachers: a randomly initialised backbone."""
    return not values["task"] and not values["teachers"]


def _init_text(key: tuple[str, ...], varying: list[str]) -> str:
    """``rspnet``, ``prp (rates [1, 8])``, ``student from rotnet + rspnet``, ``random init``;
    plus the pretraining axes that vary among the rows (``r21d``, ``subset 30k``)."""
    values = dict(zip(INIT_AXES, key))
    if values["teachers"]:
        name = "student " + value_label("teachers", values["teachers"])
    elif values["task"]:
        name = values["task"]
    else:
        name = RANDOM_INIT
    if values["variant"]:
        name += f" ({values['variant']})"
    extra = [f"{a.replace('_', ' ')} {value_label(a, values[a])}" for a in varying if values[a]]
    return name + (f", {', '.join(extra)}" if extra else "")


def init_label(columns) -> str:
    """The short name of the initialisation a results row's columns describe (``rspnet``,
    ``prp (rates [1, 8])``, ``student from rotnet + rspnet``, ``random init``)."""
    return _init_text(tuple(key_label(columns.get(a)) for a in INIT_AXES), [])


def _init_order(key: tuple[str, ...]) -> tuple:
    values = dict(zip(INIT_AXES, key))
    tasks = ORDER["task"]
    if _is_random_init(values):
        rank = (0, 0)  # random init first: the reference
    elif values["teachers"]:
        rank = (2, 0)
    else:
        rank = (1, tasks.index(values["task"]) if values["task"] in tasks else len(tasks))
    return (*rank, values["variant"], *key)


def _varying(keys) -> list[str]:
    """The pretraining axes (not task, variant, teachers) that differ among the pretrained inits."""
    pretrained = [dict(zip(INIT_AXES, k)) for k in keys if not _is_random_init(dict(zip(INIT_AXES, k)))]
    return [a for a in INIT_AXES[3:] if len({values[a] for values in pretrained}) > 1]


def _stats(values: pd.Series) -> tuple[float, float, int]:
    values = values.astype(float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0, len(values)


def _gain_text(mean: float, std: float, reference: tuple[float, float, int] | None) -> str:
    if reference is None:
        return "-"
    gain = (mean - reference[0]) * 100
    spread = max(std, reference[1]) * 100
    if abs(gain) <= spread:
        return f"{gain:+.1f} (within seed spread)"
    return f"{gain:+.1f} ({'beyond seed spread' if gain > 0 else 'worse'})"


def accuracy_table(results: pd.DataFrame) -> tuple[list[str], list[list[str]], dict]:
    """The downstream-accuracy grid: header, body, and the statistics per (init, setting) for the PNG."""
    rows = results[results["kind"].isin(["finetune", "linear_probe"]) & (results["metric"] == "top1")]
    if rows.empty:
        return [], [], {}
    rows = rows.assign(_init=_labels(rows, INIT_AXES), _col=_labels(rows, DOWNSTREAM_AXES))
    inits = sorted(set(rows["_init"]), key=_init_order)
    columns = sorted_keys(DOWNSTREAM_AXES, rows["_col"])
    varying = _varying(inits)
    stats = {
        (init, col): _stats(group["value"])
        for (init, col), group in rows.groupby(["_init", "_col"], sort=False)
    }
    reference_of = {}
    for init in inits:
        values = dict(zip(INIT_AXES, init))
        if _is_random_init(values):
            reference_of[tuple(values[a] for a in REFERENCE_AXES)] = init
    gains = bool(reference_of)  # no random init anywhere: no gain columns
    names = [" ".join(value_label(a, v) for a, v in zip(DOWNSTREAM_AXES, col) if v) for col in columns]
    header = ["init"]
    for name in names:
        header += [f"{name} top-1 (n)"] + ([f"{name}: gain over random init"] if gains else [])
    body = []
    for init in inits:
        values = dict(zip(INIT_AXES, init))
        reference = reference_of.get(tuple(values[a] for a in REFERENCE_AXES))
        line = [_init_text(init, varying)]
        for col in columns:
            if (init, col) not in stats:
                line += ["n/a", "-"] if gains else ["n/a"]
                continue
            mean, std, count = stats[(init, col)]
            line.append(f"{mean * 100:.1f}" + (f" ± {std * 100:.1f}" if count > 1 else "") + f" ({count})")
            if gains:
                own = reference is not None and reference != init
                line.append(_gain_text(mean, std, stats.get((reference, col))) if own else "-")
        body.append(line)
    labelled = {
        (_init_text(i, varying), name): stats[(i, c)]
        for i in inits
        for c, name in zip(columns, names)
        if (i, c) in stats
    }
    return header, body, labelled


def robustness_table(results: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Clean top-1 and relative robustness (averaged over severities) per initialisation and noise."""
    rows = results[results["kind"] == "robustness"]
    if rows.empty:
        return [], []
    rows = rows.assign(_init=_labels(rows, INIT_AXES), _col=_labels(rows, DOWNSTREAM_AXES))
    inits = sorted(set(zip(rows["_init"], rows["_col"])), key=lambda k: (_init_order(k[0]), k[1]))
    noises = sorted(
        {n for n in rows["noise"] if isinstance(n, str)},
        key=lambda n: ORDER["noise"].index(n) if n in ORDER["noise"] else len(ORDER["noise"]),
    )
    varying = _varying({i for i, _ in inits})
    several_settings = len({c for _, c in inits}) > 1
    header = ["init", "clean top-1", *noises]
    body = []
    for init, col in inits:
        mine = rows[(rows["_init"] == init) & (rows["_col"] == col)]
        clean = mine[(mine["metric"] == "top1") & (mine["severity"] == 0)]
        label = _init_text(init, varying)
        if several_settings:
            label += " on " + " ".join(value_label(a, v) for a, v in zip(DOWNSTREAM_AXES, col) if v)
        line = [label, f"{clean['value'].astype(float).mean() * 100:.1f}" if len(clean) else "n/a"]
        for noise in noises:
            value = mine[(mine["metric"] == "relative_robustness") & (mine["noise"] == noise)]["value"]
            line.append(f"{value.astype(float).mean():.2f}" if len(value) else "n/a")
        body.append(line)
    return header, body


def objectives_table(results: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """First log -> mean of the last logs of each pretraining's objectives (and its steps)."""
    rows = results[results["kind"].isin(["pretrain", "distill"])]
    rows = rows[rows["metric"].str.startswith("log_") | (rows["metric"] == "steps")]
    if rows.empty:
        return [], []
    rows = rows.assign(_init=_labels(rows, INIT_AXES))
    inits = sorted(set(rows["_init"]), key=_init_order)
    logged = {m.removeprefix("log_end_") for m in rows["metric"] if m.startswith("log_end_")}
    shown = [k for k in OBJECTIVES if k in logged]
    varying = _varying(inits)
    header = ["pretraining", "steps", *shown]
    body = []
    for init in inits:
        mine = rows[rows["_init"] == init]
        value = dict(zip(mine["metric"], mine["value"].astype(float)))
        line = [_init_text(init, varying), f"{value['steps']:.0f}" if "steps" in value else "n/a"]
        for key in shown:
            first, end = value.get(f"log_first_{key}"), value.get(f"log_end_{key}")
            line.append("-" if first is None or end is None else f"{first:.2f} -> {end:.2f}")
        body.append(line)
    return header, body


def accuracy_png(stats: dict, path: Path) -> Path:
    """Grouped bars: top-1 (%) per initialisation, one bar per downstream setting, seed std as error bars."""
    figure = Figure(figsize=(8.0, 3.8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    inits = list(dict.fromkeys(i for i, _ in stats))
    settings = list(dict.fromkeys(s for _, s in stats))
    if not stats:
        axes.axis("off")
        axes.text(0.5, 0.5, "n/a: no finetune or linear_probe rows", ha="center", va="center")
    width = 0.8 / max(1, len(settings))
    positions = np.arange(len(inits))
    for index, setting in enumerate(settings):
        means = [stats.get((i, setting), (np.nan, 0.0, 0))[0] * 100 for i in inits]
        stds = [stats.get((i, setting), (np.nan, 0.0, 0))[1] * 100 for i in inits]
        axes.bar(
            positions + index * width,
            means,
            width,
            yerr=stds,
            capsize=2,
            label=setting.replace(" top-1 (n)", ""),
        )
    if stats:
        axes.set_xticks(
            positions + width * (len(settings) - 1) / 2, inits, rotation=30, ha="right", fontsize=7
        )
        axes.set_ylabel("top-1 (%), mean ± std over seeds")
        axes.grid(axis="y", alpha=0.3)
        axes.legend(fontsize=7)
    figure.suptitle("Downstream top-1 per initialisation", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def render_overview(results: pd.DataFrame, out: Path) -> tuple[Path, Path, int]:
    """Write ``overview.md`` and ``overview.png`` into ``out``; returns both and the number of
    its sections without rows."""
    header, body, stats = accuracy_table(results)
    sections = (
        (
            "Downstream top-1 (%)",
            (header, body),
            "no `finetune` or `linear_probe` rows.",
            "Mean ± sample std over seeds (number of seeds). A gain over the randomly initialised "
            "backbone of the same network and clip counts only beyond the seed spread (the larger "
            "of the two stds).",
        ),
        (
            "Robustness",
            robustness_table(results),
            "no `robustness` rows.",
            "Clean top-1 (%) and relative robustness (1 - relative decrease, averaged over the "
            "severities) per noise. Computed from accuracies near chance it is noise (values above "
            "1 included).",
        ),
        (
            "Pretext objectives",
            objectives_table(results),
            "no pretraining rows with logged objectives.",
            "First log -> mean of the last 5 logs. `accuracy` is each task's own target (for the "
            "contrastive tasks against the queue), `batch_accuracy` the instance top-1 against the "
            "batch's keys, `speed_accuracy` RSPNet's relative-speed ranking. The other logged terms "
            "are in the results as `log_first_<key>` / `log_end_<key>`.",
        ),
    )
    parts = [
        "# Overview by initialisation",
        "",
        "Rows: `finetune` and `linear_probe` rows (`top1`), `robustness` rows and the pretrainings' "
        "`log_first_*` / `log_end_*` rows. ![overview](overview.png)",
        "",
    ]
    missing = 0
    for title, (grid_header, grid_body), empty, lead in sections:
        parts += [f"## {title}", "", lead, ""]
        if grid_header:
            parts += [markdown_grid(grid_header, grid_body), ""]
        else:
            missing += 1
            parts += [f"n/a: {empty}", ""]
    markdown = out / "overview.md"
    markdown.write_text("\n".join(parts).rstrip() + "\n")
    return markdown, accuracy_png(stats, out / "overview.png"), missing


__all__ = [
    "INIT_AXES",
    "accuracy_table",
    "init_label",
    "objectives_table",
    "render_overview",
    "robustness_table",
]
