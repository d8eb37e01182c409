"""The report's tables: which results rows feed each one, and how a grid of cells becomes Markdown.

Each table is a :class:`TableSpec`: the rows it selects (``kind``, ``metric``, ...), the axes
forming its rows and columns, and the axes defining a comparable setting (``sections``: one
sub-table per distinct setting, e.g. per downstream dataset). Any other setting axis that varies
among the selected rows also opens a new section, so numbers of different settings never share a
cell; only seeds are averaged (mean, ``±`` std when there are several). The study's published
numbers (:mod:`hf_vssl.study.published`) are matched on the row, column and section axes (an
axis the study does not state matches anything) and shown in a ``(paper)`` column beside ours;
published settings without any result become sections of their own. A cell without results is
``n/a`` and listed under its table; nothing here raises on missing data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from hf_vssl.study.published import SETTING_AXES, load_original_reports, load_published

#: Where a cell's ``hub_repo_id`` links to.
HUB_URL = "https://huggingface.co"
#: Metrics shown in percent (stored as fractions in the results, in % in the published data).
PERCENT_METRICS = frozenset({"top1", "top5", "R@1", "R@5", "R@10", "R@20", "relative_decrease"})
#: Display order of known axis values; others follow, numbers numerically, text alphabetically.
ORDER = {
    "task": ("rotnet", "cvrl", "vcop", "tdl", "prp", "rspnet"),
    "backbone": ("shufflenet", "mobilenet", "squeezenet", "c3d", "r3d", "r21d", "swin-t"),
    "noise": ("clean", "gaussian", "impulse", "shot", "speckle"),
    "mode": ("linear_probe", "finetune"),
    "downstream": ("ucf101", "hmdb51", "diving48"),
    "label_set": ("motion", "appearance"),
}
AXIS_NAMES = {
    "subset_size": "subset",
    "pretrain_dataset": "pretraining",
    "num_frames": "frames",
    "image_size": "size",
}


def key_label(value: Any) -> str:
    """A setting value as text: ``""`` for missing, whole floats without ``.0``."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):  # None, NaN, pd.NA
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_KIND_ROLES = {"distill": "student", "finetune": "teacher"}


def value_label(axis: str, label: str) -> str:
    """How a value of ``axis`` reads in a header (subset sizes as ``10k``, teachers as ``from a + b``)."""
    if axis == "subset_size" and label.isdigit() and int(label) % 1000 == 0:
        return f"{int(label) // 1000}k"
    if axis == "teachers" and label:
        return "from " + " + ".join(label.split(","))
    return label or "-"


def _key_text(axes: Sequence[str], key: Sequence[str], roles: bool = False) -> str:
    """A row or column key as text; empty axes are left out (``-`` when all are)."""
    words = [
        (_KIND_ROLES.get(v, v) if roles and a == "kind" else value_label(a, v))
        for a, v in zip(axes, key)
        if v
    ]
    return " ".join(words) or "-"


def _sort_key(axis: str, label: str) -> tuple:
    known = ORDER.get(axis, ())
    if label in known:
        return (0, known.index(label), 0.0, "")
    try:
        return (1, 0, float(label), "")
    except ValueError:
        return (2, 0, 0.0, label)


def sorted_keys(axes: Sequence[str], keys) -> list[tuple[str, ...]]:
    """Distinct ``keys`` (tuples of labels along ``axes``) in display order (:data:`ORDER`)."""
    return sorted(set(keys), key=lambda key: [_sort_key(a, v) for a, v in zip(axes, key)])


@dataclass(frozen=True)
class ExtraColumn:
    """A per-row column from other rows (Table 1's backbone size and GFLOPs from pretraining)."""

    header: str
    kind: str
    metric: str
    #: Axes matched between the table's row and the extra rows (besides the row axes).
    match: tuple[str, ...] = ("width", "num_frames", "image_size")
    scale: float = 1.0
    digits: int = 1


@dataclass(frozen=True)
class TableSpec:
    """One table of the report: what it selects and how it lays the cells out."""

    name: str
    title: str
    #: Which results rows feed it (for the docs and the rendered page).
    feeds: str
    select: Mapping[str, tuple[Any, ...]]
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    sections: tuple[str, ...] = ()
    metric: str = "top1"
    #: The report table number in the published data (``table`` column), None for none.
    published: str | None = None
    extra_columns: tuple[ExtraColumn, ...] = ()
    #: Header of the row labels (default: the row axes).
    row_header: str | None = None
    #: Turns the whole results frame into this table's rows (default: the ``select`` filter).
    prepare: Callable[[pd.DataFrame, TableSpec], pd.DataFrame] | None = None
    #: Close with the pretext tasks' originally reported numbers (``original_reports.csv``).
    original_reports: bool = False


@dataclass
class Section:
    """One sub-table: a setting (axis -> value label), its Markdown grid and its missing cells."""

    setting: dict[str, str]
    header: list[str]
    body: list[list[str]]
    missing: list[str]
    has_results: bool


@dataclass
class RenderedTable:
    """A table rendered to Markdown; ``sections`` keep the grids for the PNG."""

    spec: TableSpec
    markdown: str
    sections: list[Section] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        """Every cell without results, as ``"<setting>: <row> x <column>"``."""
        if not self.sections:
            return ["no results rows for this table"]
        return [f"{setting_text(s.setting)}: {cell}" for s in self.sections for cell in s.missing]


def select_rows(results: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """The rows of ``results`` a table uses: every ``select`` axis among its allowed values."""
    keep = pd.Series(True, index=results.index)
    for axis, allowed in {**spec.select, "metric": (spec.metric,)}.items():
        keep &= results[axis].map(key_label).isin({key_label(v) for v in allowed})
    return results[keep]


def relative_decrease_rows(results: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Robustness rows turned into ``relative_decrease`` = (clean - noisy) / clean per severity >= 1.

    The clean top-1 is the severity-0 row of the same cell settings and seed; noisy rows without
    one (or whose clean top-1 is 0) are left out: their cells read n/a.
    """
    robust = results[(results["kind"] == "robustness") & (results["metric"] == "top1")]
    robust = robust[robust["severity"].notna()]
    same = [a for a in SETTING_AXES if a not in ("noise", "severity")] + ["seed"]
    clean = robust[robust["severity"] == 0]
    clean_top1 = {tuple(key_label(v) for v in row[same]): row["value"] for _, row in clean.iterrows()}
    rows = []
    for _, row in robust[robust["severity"] > 0].iterrows():
        reference = clean_top1.get(tuple(key_label(v) for v in row[same]))
        if reference:
            rows.append(
                {
                    **row.to_dict(),
                    "metric": "relative_decrease",
                    "value": (reference - row["value"]) / reference,
                }
            )
    return pd.DataFrame(rows, columns=results.columns)


def noise_columns(results: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Robustness top-1 rows with the clean ones (severity 0) as noise ``clean`` at every severity."""
    robust = select_rows(results, spec)
    robust = robust[robust["severity"].notna()]
    noisy = robust[robust["severity"] > 0]
    # A robustness cell per noise kind measures the same clean top-1: keep one per setting and seed.
    same = [a for a in SETTING_AXES if a != "noise"] + ["seed"]
    clean = robust[robust["severity"] == 0].assign(noise="clean")
    clean = clean[~clean[same].map(key_label).duplicated()]
    copies = [clean.assign(severity=level) for level in sorted(set(noisy["severity"])) or [0]]
    return pd.concat([noisy, *copies], ignore_index=True)


def _published_noise(published: pd.DataFrame) -> pd.DataFrame:
    """The published clean numbers (severity 0) as noise ``clean`` beside each published severity."""
    clean = published[published["severity"] == 0]
    if clean.empty:
        return published
    noisy = published[published["severity"] > 0]
    copies = [clean.assign(noise="clean", severity=level) for level in sorted(set(noisy["severity"]))]
    return pd.concat([noisy, *copies], ignore_index=True)


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        name="table1_backbones",
        title="Table 1: pretext tasks x backbones (finetune top-1 %, backbone size and GFLOPs)",
        feeds="`finetune` rows (`top1`); `params` and `gflops` of the `pretrain` rows of each backbone",
        select={"kind": ("finetune",)},
        rows=("backbone",),
        columns=("task",),
        sections=("downstream",),
        published="1",
        extra_columns=(
            ExtraColumn("params (M)", "pretrain", "params", scale=1e-6),
            ExtraColumn("GFLOPs", "pretrain", "gflops"),
        ),
    ),
    TableSpec(
        name="table2_linear_probe",
        title="Table 2: linear probe vs finetune (top-1 %)",
        feeds="`finetune` and `linear_probe` rows (`top1`)",
        select={"kind": ("finetune", "linear_probe")},
        rows=("task",),
        columns=("backbone", "mode"),
        sections=("downstream",),
        published="2",
    ),
    TableSpec(
        name="table3_equal_constraints",
        title="Table 3: pretext tasks under equal constraints (finetune top-1 %)",
        feeds="`finetune` rows (`top1`), one section per pretraining set, subset and downstream set",
        select={"kind": ("finetune",)},
        rows=("task",),
        columns=("backbone",),
        sections=("pretrain_dataset", "subset_size", "downstream"),
        published="3",
        original_reports=True,
    ),
    TableSpec(
        name="table4_subset_sizes",
        title="Table 4: pretext tasks x pretraining subset size (finetune top-1 %)",
        feeds="`finetune` rows (`top1`) by `subset_size`, one section per backbone and downstream set",
        select={"kind": ("finetune",)},
        rows=("task",),
        columns=("subset_size",),
        sections=("backbone", "downstream"),
        published="4",
    ),
    TableSpec(
        name="table5_rspnet_subset_epochs",
        title="Table 5: RSPNet, backbone x subset size x epochs (finetune top-1 %)",
        feeds="`finetune` rows of task `rspnet` (`top1`) by `backbone`, `epochs` and `subset_size`",
        select={"kind": ("finetune",), "task": ("rspnet",)},
        rows=("backbone", "epochs"),
        columns=("subset_size",),
        sections=("downstream",),
        published="5",
    ),
    TableSpec(
        name="table6_noise",
        title="Table 6: pretext tasks x noise kinds (top-1 % under noise)",
        feeds="`robustness` rows (`top1`; severity 0 is the clean column), one section per severity",
        select={"kind": ("robustness",)},
        rows=("task",),
        columns=("noise",),
        sections=("backbone", "downstream", "severity"),
        published="6",
        prepare=noise_columns,
    ),
    TableSpec(
        name="relative_decrease",
        title="Relative decrease of top-1 under noise, by severity (%)",
        feeds="`robustness` rows (`top1`): (clean - noisy) / clean with the severity-0 row as clean",
        select={"kind": ("robustness",)},
        rows=("task", "noise"),
        columns=("severity",),
        sections=("backbone", "downstream"),
        metric="relative_decrease",
        prepare=relative_decrease_rows,
    ),
    TableSpec(
        name="relative_robustness",
        title="Relative robustness per noise kind (1 - relative decrease, averaged over severities)",
        feeds="`robustness` rows (`relative_robustness`, severity null)",
        select={"kind": ("robustness",)},
        rows=("task",),
        columns=("noise",),
        sections=("backbone", "downstream"),
        metric="relative_robustness",
    ),
    TableSpec(
        name="distillation",
        title="Distillation: students and their teachers (top-1 %)",
        feeds="`distill` rows (`top1` of the student) by teachers and student backbone",
        select={"kind": ("distill",)},
        rows=("kind", "task", "backbone", "teachers"),
        row_header="model",
        columns=("downstream",),
        sections=("subset_size",),
        published="distillation",
    ),
)
TABLES_BY_NAME = {spec.name: spec for spec in TABLES}


def setting_text(setting: Mapping[str, str]) -> str:
    """A section's setting as a caption (``downstream ucf101, subset 50k``)."""
    parts = [f"{AXIS_NAMES.get(a, a)} {value_label(a, v)}" for a, v in setting.items() if v]
    return ", ".join(parts) or "all rows"


def _fmt(value: float, percent: bool) -> str:
    return f"{value * 100:.1f}" if percent else f"{value:.2f}"


def _cell_text(rows: pd.DataFrame, percent: bool) -> str:
    values = rows["value"].astype(float)
    text = _fmt(values.mean(), percent)
    if len(values) > 1:
        text += f" ± {_fmt(values.std(ddof=1), percent)}"  # sample std over seeds
    repos = sorted({r for r in rows["hub_repo_id"] if isinstance(r, str) and r})
    if len(repos) == 1:
        return f"[{text}]({HUB_URL}/{repos[0]})"
    if repos:
        text += " (" + ", ".join(f"[{i + 1}]({HUB_URL}/{r})" for i, r in enumerate(repos)) + ")"
    return text


def _labels(frame: pd.DataFrame, axes: Sequence[str]) -> pd.Series:
    if frame.empty:
        return pd.Series([], dtype=object)
    return frame[list(axes)].apply(lambda row: tuple(key_label(v) for v in row), axis=1)


def _matches(published: Mapping[str, str], setting: Mapping[str, str]) -> bool:
    """A published setting matches when every axis it states has our value."""
    return all(not value or setting.get(axis, "") == value for axis, value in published.items())


def _extra_text(extra: ExtraColumn, results: pd.DataFrame, spec: TableSpec, row_key, setting) -> str:
    rows = results[(results["kind"] == extra.kind) & (results["metric"] == extra.metric)]
    for axis, label in [
        *zip(spec.rows, row_key),
        *((a, setting.get(a, "")) for a in extra.match if a in setting),
    ]:
        rows = rows[rows[axis].map(key_label) == label]
    values = sorted(set(rows["value"].astype(float)))
    return "n/a" if not values else " / ".join(_fixed_or_small(v * extra.scale, extra.digits) for v in values)


def _fixed_or_small(value: float, digits: int) -> str:
    """``digits`` decimals, or two significant digits for a non-zero value they would show as 0
    (a tiny CPU model's 0.004 GFLOPs)."""
    return f"{value:.2g}" if value and abs(value) < 0.5 * 10**-digits else f"{value:.{digits}f}"


def _published_for(spec: TableSpec, published: pd.DataFrame | None) -> pd.DataFrame:
    if published is None or spec.published is None:
        return pd.DataFrame(columns=["metric", "value", *SETTING_AXES])
    frame = published[(published["table"] == spec.published) & (published["metric"] == spec.metric)]
    return _published_noise(frame) if spec.prepare is noise_columns else frame


def build_sections(spec: TableSpec, results: pd.DataFrame, published: pd.DataFrame | None) -> list[Section]:
    """The sub-tables of ``spec`` for ``results`` (all rows) and the published numbers."""
    ours = spec.prepare(results, spec) if spec.prepare else select_rows(results, spec)
    paper = _published_for(spec, published)
    laid_out = set(spec.rows + spec.columns + spec.sections)
    varying = [
        a
        for a in SETTING_AXES
        if a not in laid_out and a not in spec.select and ours[a].map(key_label).nunique() > 1
    ]
    section_axes = [*spec.sections, *varying]
    percent = spec.metric in PERCENT_METRICS
    ours = ours.assign(
        _section=_labels(ours, section_axes), _row=_labels(ours, spec.rows), _col=_labels(ours, spec.columns)
    )
    paper = paper.assign(
        _section=_labels(paper, spec.sections),
        _row=_labels(paper, spec.rows),
        _col=_labels(paper, spec.columns),
    )
    settings = [dict(zip(section_axes, key)) for key in sorted_keys(section_axes, ours["_section"])]
    paper_settings = {
        key: dict(zip(spec.sections, key)) for key in sorted_keys(spec.sections, paper["_section"])
    }
    unmatched = [s for s in paper_settings.values() if not any(_matches(s, o) for o in settings)]
    sections = []
    for setting in [*settings, *unmatched]:
        mine = (
            ours[ours["_section"] == tuple(setting[a] for a in section_axes)]
            if setting in settings
            else ours[:0]
        )
        theirs = (
            paper[[_matches(paper_settings[k], setting) for k in paper["_section"]]] if len(paper) else paper
        )
        sections.append(_section(spec, results, setting, mine, theirs, percent))
    return sections


def _section(spec, results, setting, mine, theirs, percent) -> Section:
    row_keys = sorted_keys(spec.rows, [*mine["_row"], *theirs["_row"]])
    col_keys = sorted_keys(spec.columns, [*mine["_col"], *theirs["_col"]])
    paper_cols = set(theirs["_col"])
    header = [spec.row_header or " / ".join(AXIS_NAMES.get(a, a) for a in spec.rows)]
    header += [e.header for e in spec.extra_columns]
    for col in col_keys:
        name = _key_text(spec.columns, col)
        header += [name, f"{name} (paper)"] if col in paper_cols else [name]
    body, missing = [], []
    for row in row_keys:
        line = [_key_text(spec.rows, row, roles=True)]
        line += [_extra_text(e, results, spec, row, setting) for e in spec.extra_columns]
        for col in col_keys:
            cell = mine[(mine["_row"] == row) & (mine["_col"] == col)]
            if cell.empty:
                missing.append(f"{line[0]} x {header[len(line)]}")
            line.append(_cell_text(cell, percent) if len(cell) else "n/a")
            if col in paper_cols:
                theirs_cell = theirs[(theirs["_row"] == row) & (theirs["_col"] == col)]["value"]
                line.append(f"{theirs_cell.iloc[0]:.1f}" if len(theirs_cell) else "-")
        body.append(line)
    return Section(setting, header, body, missing, has_results=not mine.empty)


def markdown_grid(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A Markdown table (pipes in cells escaped)."""
    lines = [header, ["---"] * len(header), *body]
    return "\n".join("| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in lines)


def render_table(
    spec: TableSpec, results: pd.DataFrame, published: pd.DataFrame | None = None
) -> RenderedTable:
    """``spec`` rendered from ``results`` (a DataFrame of results rows) as Markdown with its PNG name."""
    sections = build_sections(spec, results, published)
    parts = [f"# {spec.title}", "", f"Rows: {spec.feeds}. ![{spec.name}]({spec.name}.png)", ""]
    if published is not None and spec.published is not None:
        parts += [
            "`(paper)` columns: the study's published numbers (top-1 %) for the same setting; `-`: not "
            "published. Sources: `hf_vssl/study/published/`.",
            "",
        ]
    if not sections:
        parts += ["No results rows for this table yet: every cell is n/a.", ""]
    for section in sections:
        parts += [f"## {setting_text(section.setting)}", "", markdown_grid(section.header, section.body), ""]
        if not section.has_results:
            parts += [f"No results for this setting: all {len(section.missing)} cells are n/a.", ""]
        elif section.missing:
            parts += ["Missing cells (n/a): " + "; ".join(section.missing) + ".", ""]
    if spec.original_reports:
        parts += _original_reports_section()
    return RenderedTable(spec, "\n".join(parts).rstrip() + "\n", sections)


def _original_reports_section() -> list[str]:
    """Each task's own reported top-1 at its own settings, with where it was read."""
    reports = sorted(
        load_original_reports().itertuples(),
        key=lambda r: [
            _sort_key(a, key_label(getattr(r, a))) for a in ("task", "downstream", "backbone", "epochs")
        ],
    )
    body = [
        [
            row.task,
            row.backbone,
            row.pretrain_dataset + (f", {key_label(row.epochs)} epochs" if key_label(row.epochs) else ""),
            row.downstream,
            f"{row.value:.1f}",
            f"[{row.source}]({row.url})",
            row.note or "",
        ]
        for row in reports
    ]
    header = ["task", "backbone", "pretraining", "downstream", "top-1 (%)", "source", "note"]
    return [
        "## As originally reported",
        "",
        "Each task's own work at its own settings (backbone, pretraining set and length, clips, "
        "evaluation), so not comparable cell by cell with the numbers above; that gap is what the "
        "equal-constraint comparison measures. Source: `hf_vssl/study/published/original_reports.csv`. "
        "Not found in a checkable source: VCOP's C3D and R(2+1)D numbers, CVRL's UCF101 numbers.",
        "",
        markdown_grid(header, body),
        "",
    ]


def render_tables(results: pd.DataFrame, published: pd.DataFrame | None = None) -> list[RenderedTable]:
    """Every table of :data:`TABLES`, with the carried published numbers unless ``published`` is given."""
    published = load_published() if published is None else published
    return [render_table(spec, results, published) for spec in TABLES]


def settings_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A results row's ``settings_json`` as a dict (empty when absent or unreadable)."""
    try:
        settings = json.loads(row.get("settings_json") or "{}")
    except (TypeError, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}


__all__ = [
    "HUB_URL",
    "SETTING_AXES",
    "TABLES",
    "TABLES_BY_NAME",
    "ExtraColumn",
    "RenderedTable",
    "Section",
    "TableSpec",
    "build_sections",
    "key_label",
    "markdown_grid",
    "render_table",
    "render_tables",
    "select_rows",
    "setting_text",
    "settings_of",
    "sorted_keys",
    "value_label",
]
