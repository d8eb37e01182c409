"""The study's published numbers, carried as data (``hf_vssl/study/published/*.csv``).

One CSV per table of the report, in the long format of the results rows (one number per row,
same axis columns: ``task``, ``backbone``, ``subset_size``, ...), plus ``table`` (the report's
table the number belongs to), ``unit`` (``%`` for accuracies), ``source`` (the paper) and
``note``. Empty cells mean "not stated"; a number the study leaves out is absent, not zero.
The report (:mod:`hf_vssl.study.tables`) puts these numbers beside the measured ones.

``original_reports.csv`` is different: the numbers each pretext task's own work reports, at its
own settings (backbone, pretraining set, epochs), with the URL where each was read. Table 3
lists them under the equal-constraint numbers, as the study's comparison does.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .spec import AXIS_COLUMNS

PUBLISHED_DIR = Path(__file__).resolve().parent / "published"
ORIGINAL_REPORTS = PUBLISHED_DIR / "original_reports.csv"
ORIGINAL_COLUMNS = (
    *("task", "backbone", "pretrain_dataset", "epochs", "downstream", "metric", "value", "unit"),
    *("source", "url", "note"),
)

#: Setting axes of a results row (everything that tells two cells apart, except the seed).
SETTING_AXES = ("kind", *(axis for axis in AXIS_COLUMNS if axis != "seed"))
#: Axes the study's tables do not state: its clips are 16 x 112 x 112 at full width, a
#: downstream set has one label set, and the study names no variants.
_UNSTATED = ("width", "num_frames", "image_size", "label_set", "variant")
#: Columns of every published CSV, in file order.
PUBLISHED_COLUMNS = (
    "table",
    *(axis for axis in SETTING_AXES if axis not in _UNSTATED),
    *("metric", "value", "unit", "source", "note"),
)
_NUMERIC = ("subset_size", "epochs", "severity", "value")


def published_files() -> list[Path]:
    """The study's CSV files carried in the package, sorted by name (not the original reports)."""
    return sorted(p for p in PUBLISHED_DIR.glob("*.csv") if p != ORIGINAL_REPORTS)


def read_published(path: str | Path) -> pd.DataFrame:
    """One published CSV as a DataFrame (numbers as floats, empty text as None).

    Raises:
        ValueError: the file's columns differ from :data:`PUBLISHED_COLUMNS`, a row has no
            ``source`` or no ``value``.
    """
    path = Path(path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(frame.columns) != PUBLISHED_COLUMNS:
        raise ValueError(f"{path}: columns {list(frame.columns)} differ from {list(PUBLISHED_COLUMNS)}")
    for column in ("source", "value"):
        empty = frame.index[frame[column].str.strip() == ""].tolist()
        if empty:
            raise ValueError(f"{path}: row(s) {[i + 2 for i in empty]} have no {column}")
    frame = frame.replace("", None)
    for column in _NUMERIC:
        frame[column] = pd.to_numeric(frame[column])
    return frame


def load_published(table: str | None = None) -> pd.DataFrame:
    """Every published number (or those of report table ``table``, e.g. ``"3"``) as one DataFrame."""
    frame = pd.concat([read_published(path) for path in published_files()], ignore_index=True)
    if table is not None:
        frame = frame[frame["table"] == str(table)].reset_index(drop=True)
    return frame


def load_original_reports(path: str | Path = ORIGINAL_REPORTS) -> pd.DataFrame:
    """The pretext tasks' originally reported numbers (``original_reports.csv``) as a DataFrame.

    Raises:
        ValueError: the columns differ from :data:`ORIGINAL_COLUMNS`, or a row lacks a value,
            a source or a URL.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(frame.columns) != ORIGINAL_COLUMNS:
        raise ValueError(f"{path}: columns {list(frame.columns)} differ from {list(ORIGINAL_COLUMNS)}")
    for column in ("value", "source", "url"):
        empty = frame.index[frame[column].str.strip() == ""].tolist()
        if empty:
            raise ValueError(f"{path}: row(s) {[i + 2 for i in empty]} have no {column}")
    frame = frame.replace("", None)
    frame["value"] = pd.to_numeric(frame["value"])
    return frame


__all__ = [
    "ORIGINAL_COLUMNS",
    "ORIGINAL_REPORTS",
    "PUBLISHED_COLUMNS",
    "PUBLISHED_DIR",
    "SETTING_AXES",
    "load_original_reports",
    "load_published",
    "published_files",
    "read_published",
]
