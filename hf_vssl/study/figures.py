"""The report's PNGs: each table as an image, the relative decrease over severities, the CKA maps.

Figures are drawn with matplotlib's object API (``Figure`` + Agg canvas, no global pyplot
state), so rendering is thread-safe and needs no display. Missing data becomes an "n/a" panel,
never an exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hf_vssl.study.tables import RenderedTable, Section, key_label, setting_text

_LINK = re.compile(r"\[([^\]]+)\]\([^)]+\)")


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _plain(text: str) -> str:
    """A Markdown cell without its links (an image cannot link)."""
    return _LINK.sub(r"\1", text)


def table_png(rendered: RenderedTable, path: str | Path) -> Path:
    """Draw every section grid of ``rendered`` as a table image (one panel per section)."""
    sections: Sequence[Section] = rendered.sections or [Section({}, ["(no results)"], [["n/a"]], [], False)]
    columns = max(len(s.header) for s in sections)
    rows = sum(len(s.body) + 2 for s in sections)
    figure = Figure(figsize=(max(6.0, 1.3 * columns), 0.9 + 0.28 * rows), dpi=100)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(len(sections), 1, height_ratios=[len(s.body) + 2 for s in sections])
    for index, section in enumerate(sections):
        axes = figure.add_subplot(grid[index])
        axes.axis("off")
        axes.set_title(setting_text(section.setting), fontsize=9, loc="left")
        table = axes.table(
            cellText=[[_plain(c) for c in line] for line in section.body] or [["n/a"] * len(section.header)],
            colLabels=section.header,
            loc="upper center",
            cellLoc="center",
        )
        table.auto_set_font_size(False)
        table.set_fontsize(7)
    figure.suptitle(rendered.spec.title, fontsize=10)
    return _save(figure, Path(path))


def relative_decrease_png(decrease: pd.DataFrame, path: str | Path, series_axes: Sequence[str]) -> Path:
    """Relative decrease (%) against severity: one panel per noise, one line per ``series_axes`` value."""
    noises = sorted({n for n in decrease["noise"] if isinstance(n, str)}) if len(decrease) else []
    figure = Figure(figsize=(3.2 * max(1, len(noises)), 3.4), dpi=100)
    FigureCanvasAgg(figure)
    if not noises:
        axes = figure.add_subplot()
        axes.axis("off")
        axes.text(
            0.5, 0.5, "n/a: no robustness rows with a clean (severity 0) top-1", ha="center", va="center"
        )
        return _save(figure, Path(path))
    labels = decrease[list(series_axes)].apply(
        lambda r: " ".join(key_label(v) for v in r if key_label(v)), axis=1
    )
    colors = {label: f"C{i % 10}" for i, label in enumerate(sorted(set(labels)))}  # one colour per series
    first = None
    for index, noise in enumerate(noises):
        axes = figure.add_subplot(1, len(noises), index + 1, sharey=first)
        first = first or axes
        in_noise = decrease["noise"] == noise
        for label, color in colors.items():
            rows = decrease[in_noise & (labels == label)]
            if len(rows):
                series = rows.groupby("severity")["value"].mean()
                axes.plot(
                    series.index, series.to_numpy() * 100, marker="o", color=color, label=label or "all"
                )
        axes.set_title(noise)
        axes.set_xlabel("severity")
        axes.set_xticks(range(1, 6))
        axes.grid(alpha=0.3)
        if index == 0:
            axes.set_ylabel("relative decrease of top-1 (%)")
    handles = [
        Line2D([], [], color=color, marker="o", label=label or "all") for label, color in colors.items()
    ]
    figure.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=7)
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    return _save(figure, Path(path))


def read_cka_json(path: str | Path | None) -> dict | None:
    """A ``cka.json`` (see :class:`hf_vssl.analysis.cka_maps.CKAMap`), or None when absent or unreadable."""
    if not path:
        return None
    try:
        return parse_cka_json(Path(path).read_text())
    except OSError:
        return None


def parse_cka_json(text: str | None) -> dict | None:
    """A CKA map's JSON (layer names and a matching matrix), or None when it is not one."""
    try:
        data = json.loads(text)
        np.asarray(data["matrix"], dtype=float).reshape(len(data["layers_a"]), len(data["layers_b"]))
    except (ValueError, KeyError, TypeError):
        return None
    return data


def cka_png(panels: Sequence[tuple[str, dict | None]], path: str | Path, title: str) -> Path:
    """CKA maps side by side: ``(panel title, cka.json contents or None)``; None draws an n/a panel."""
    count = max(1, len(panels))
    figure = Figure(figsize=(3.0 * count + 0.8, 3.4), dpi=100)
    FigureCanvasAgg(figure)
    image = None
    for index, (label, data) in enumerate(panels or [("no cka rows", None)]):
        axes = figure.add_subplot(1, count, index + 1)
        axes.set_title(label, fontsize=8)
        if data is None:
            axes.axis("off")
            axes.text(0.5, 0.5, "n/a (no cka.json)", ha="center", va="center")
            continue
        matrix = np.asarray(data["matrix"], dtype=float)
        image = axes.imshow(matrix, origin="lower", cmap="magma", vmin=0.0, vmax=1.0, aspect="auto")
        axes.set_xticks(range(matrix.shape[1]), labels=data["layers_b"], rotation=60, ha="right", fontsize=6)
        axes.set_yticks(range(matrix.shape[0]), labels=data["layers_a"], fontsize=6)
    if image is not None:
        figure.colorbar(image, ax=figure.axes, label="CKA", shrink=0.8)
    figure.suptitle(title, fontsize=10)
    return _save(figure, Path(path))


__all__ = ["cka_png", "read_cka_json", "relative_decrease_png", "table_png"]
