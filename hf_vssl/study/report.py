"""Render the study's report (Markdown + PNG per table and figure, and an index) from its results.

``render_report(source, out_dir)`` reads the results rows (long format, one metric per row: a
study folder's ``results/*.parquet``, a ``datasets.Dataset`` or a Hub dataset id) and writes:

- one page per table of :data:`hf_vssl.study.tables.TABLES` (``<name>.md`` + ``<name>.png``),
  with the study's published numbers beside ours and each cell linked to its Hub checkpoint;
- the relative decrease under noise over severities (``relative_decrease.md`` / ``.png``);
- the overview by initialisation (``overview.md`` / ``.png``, :mod:`hf_vssl.study.overview`);
- the CKA maps per task, per subset, over epochs and per variant (e.g. complexity level)
  (``cka_<axis>.md`` / ``.png``), drawn from each cka cell's ``cka_map`` row (or, for results
  written before that row existed, its ``cka.json``);
- ``README.md`` linking them all and counting the missing cells, with the spec's ``notes``.

What each page shows and how to regenerate it: ``docs/study_report.md``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pandas as pd

from hf_vssl.study.figures import cka_png, parse_cka_json, read_cka_json, relative_decrease_png, table_png
from hf_vssl.study.overview import init_label, render_overview
from hf_vssl.study.published import load_published
from hf_vssl.study.tables import (
    SETTING_AXES,
    TABLES,
    key_label,
    markdown_grid,
    relative_decrease_rows,
    render_table,
    setting_text,
    settings_of,
    value_label,
)

logger = logging.getLogger(__name__)

#: Columns of the results rows the report reads (a subset of the study's results schema).
REQUIRED_COLUMNS = (
    *SETTING_AXES,
    "cell_id",
    "seed",
    "metric",
    "value",
    "settings_json",
    "output_dir",
    "hub_repo_id",
)
#: Columns added after the first release of the results schema: absent in older results, read as empty.
LATER_COLUMNS = ("label_set", "variant", "data_json")
#: The CKA figures: one per axis, a map per cka cell ordered along it.
CKA_AXES = ("task", "subset_size", "epochs", "variant")
_HUB_ID = re.compile(r"^[\w.\-]+/[\w.\-]+$")
AXIS_TITLES = {
    "task": "per pretext task",
    "subset_size": "per pretraining subset size",
    "epochs": "over pretraining epochs",
    "variant": "per variant (e.g. pretext complexity level)",
}


def load_results_frame(source: Any) -> tuple[pd.DataFrame, str]:
    """``(rows, description)`` from a study folder, a results parquet file, a ``datasets.Dataset``
    or a Hub dataset id.

    Raises:
        ValueError: ``source`` is none of those, a study folder has no ``results/*.parquet``, or
            the rows lack a column of :data:`REQUIRED_COLUMNS`.
    """
    if isinstance(source, datasets.Dataset):
        frame, where = source.to_pandas(), "a results dataset"
    elif str(source).endswith(".parquet") and Path(source).is_file():
        frame = datasets.load_dataset("parquet", data_files=[str(source)], split="train").to_pandas()
        where = f"`{Path(source).name}`"
    elif Path(source).is_dir():
        files = sorted((Path(source) / "results").glob("*.parquet"))
        if not files:
            raise ValueError(f"{source}: no results/*.parquet in this study folder (run the study first)")
        frame = datasets.load_dataset(
            "parquet", data_files=[str(f) for f in files], split="train"
        ).to_pandas()
        where = f"the study folder `{Path(source).name}`"
    elif isinstance(source, str) and _HUB_ID.match(source):
        frame, where = datasets.load_dataset(source, split="train").to_pandas(), f"the Hub dataset `{source}`"
    else:
        raise ValueError(f"{source!r}: not a study folder, a datasets.Dataset or a Hub dataset id (org/name)")
    absent = [c for c in REQUIRED_COLUMNS if c not in frame.columns and c not in LATER_COLUMNS]
    if absent:
        raise ValueError(f"{where}: the results rows lack the column(s) {', '.join(absent)}")
    for column in LATER_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    return frame, where


@dataclass
class Page:
    """One page of the report: its title, files and missing cells."""

    title: str
    markdown: Path
    png: Path
    missing: int


def _carried_map(rows: pd.DataFrame) -> dict | None:
    """The CKA map a cell's ``cka_map`` row carries, or None (older results, unreadable JSON)."""
    maps = (parse_cka_json(text) for text in rows.loc[rows["metric"] == "cka_map", "data_json"])
    return next((data for data in maps if data is not None), None)


def _cka_cells(results: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per cka cell: its settings, diagonal / off-diagonal means and its map."""
    cells = []
    first_rows = results.drop_duplicates("cell_id").set_index("cell_id")
    for cell_id, rows in results[results["kind"] == "cka"].groupby("cell_id", sort=True):
        first = rows.iloc[0].to_dict()
        settings = settings_of(first)
        other = ((settings.get("parents") or {}).get("compare_to") or [None])[0]
        if other is None:
            against = "itself"
        else:  # model B by name when its rows are in the results, else by id
            against = init_label(first_rows.loc[other]) if other in first_rows.index else other
        given = settings.get("cka_json") or settings.get("cka_path")
        base = Path(first.get("output_dir") or ".")
        path = (
            (base / given if given and not Path(given).is_absolute() else Path(given))
            if given
            else base / "cka.json"
        )
        metrics = dict(zip(rows["metric"], rows["value"]))
        cells.append(
            {
                **{
                    axis: key_label(first.get(axis))
                    for axis in ("task", "backbone", "subset_size", "epochs", "variant")
                },
                "against": against,
                "cell_id": cell_id,
                "diagonal": metrics.get("cka_diagonal_mean"),
                "offdiagonal": metrics.get("cka_offdiagonal_mean"),
                "path": path,
                "data": _carried_map(rows) or read_cka_json(path),
            }
        )
    return cells


def _cka_page(axis: str, cells: list[dict[str, Any]], out: Path) -> Page:
    name = AXIS_TITLES[axis]
    title = f"CKA maps {name}"
    along = sorted((c for c in cells if c[axis]), key=lambda c: _number_or_text(c[axis]))
    others = [a for a in ("task", "backbone", "subset_size", "epochs", "variant", "against") if a != axis]
    varying = [a for a in others if len({c[a] for c in along}) > 1]
    parts = [
        f"# {title}",
        "",
        f"Rows: `cka` rows (`cka_diagonal_mean`, `cka_offdiagonal_mean`) and each cell's `cka_map` row (or `cka.json`). ![cka_{axis}](cka_{axis}.png)",
        "",
    ]
    missing = 0
    if not along:
        missing = 1
        parts.append(f"n/a: no cka rows with a {axis} value.")
    else:
        header = [axis, *varying, "diagonal mean", "off-diagonal mean", "map"]
        body = []
        for cell in along:
            found = cell["data"] is not None
            missing += not found
            body.append(
                [
                    value_label(axis, cell[axis]),
                    *(value_label(a, cell[a]) for a in varying),
                    "n/a" if cell["diagonal"] is None else f"{cell['diagonal']:.3f}",
                    "n/a" if cell["offdiagonal"] is None else f"{cell['offdiagonal']:.3f}",
                    "yes" if found else f"n/a (no `cka_map` row and no `{cell['path'].name}`)",
                ]
            )
        parts.append(markdown_grid(header, body))
    panels = [(setting_text({a: c[a] for a in (axis, *varying)}), c["data"]) for c in along]
    png = cka_png(panels, out / f"cka_{axis}.png", title)
    markdown = out / f"cka_{axis}.md"
    markdown.write_text("\n".join(parts).rstrip() + "\n")
    return Page(title, markdown, png, missing)


def _number_or_text(label: str) -> tuple:
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def render_report(
    study_dir_or_results: Any,
    out_dir: str | Path | None = None,
    title: str | None = None,
    notes: str = "",
) -> list[Path]:
    """Write the report's pages and figures into ``out_dir``; returns every file written.

    ``study_dir_or_results``: a study folder (results in ``<dir>/results/*.parquet``; the report
    goes to ``<dir>/report`` unless ``out_dir`` says otherwise), a results parquet file, a
    ``datasets.Dataset`` of results rows, or a Hub dataset id (the last three need ``out_dir``).
    Tables whose cells have no results show ``n/a`` and list them; nothing missing raises.
    ``title`` heads the index (default "Study report") and ``notes`` (Markdown) closes it.

    Raises:
        ValueError: an unreadable source (see :func:`load_results_frame`) or no ``out_dir``
            for a dataset / Hub id.
    """
    source = study_dir_or_results
    if out_dir is None:
        if isinstance(source, datasets.Dataset) or not Path(source).is_dir():
            raise ValueError("render_report: out_dir is required unless the source is a study folder")
        out_dir = Path(source) / "report"
    results, where = load_results_frame(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    published = load_published()
    overview_md, overview_png, overview_missing = render_overview(results, out)
    pages = [Page("Overview by initialisation", overview_md, overview_png, overview_missing)]
    for spec in TABLES:
        rendered = render_table(spec, results, published)
        markdown = out / f"{spec.name}.md"
        markdown.write_text(rendered.markdown)
        if spec.prepare is relative_decrease_rows:
            png = relative_decrease_png(
                relative_decrease_rows(results, spec),
                out / f"{spec.name}.png",
                ("task", "backbone", "downstream"),
            )
        else:
            png = table_png(rendered, out / f"{spec.name}.png")
        pages.append(Page(spec.title, markdown, png, len(rendered.missing)))
    cells = _cka_cells(results)
    pages += [_cka_page(axis, cells, out) for axis in CKA_AXES]
    index = out / "README.md"
    index.write_text(_index(pages, results, where, title or "Study report", notes))
    logger.info("wrote the study report (%d pages) to %s", len(pages), out)
    return [index, *(p for page in pages for p in (page.markdown, page.png))]


def _index(pages: list[Page], results: pd.DataFrame, where: str, title: str, notes: str) -> str:
    cells = results["cell_id"].nunique()
    lines = [
        f"# {title}",
        "",
        f"Rendered from {where}: {len(results)} results rows of {cells} cells. Accuracies are top-1 %; "
        "`(paper)` columns hold the study's published numbers. How each page is made: "
        "`docs/study_report.md` in the hf_vssl repository.",
        "",
    ]
    for page in pages:
        status = f"{page.missing} missing cells (n/a)" if page.missing else "complete"
        lines.append(f"- [{page.title}]({page.markdown.name}) ([PNG]({page.png.name})): {status}")
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


__all__ = ["CKA_AXES", "REQUIRED_COLUMNS", "load_results_frame", "render_report"]
