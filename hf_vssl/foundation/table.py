"""The foundation-model table: one row per zero-shot run folder (``recipes/zero_shot.py`` outputs).

    python -m hf_vssl.foundation.table outputs/zero-shot/*            # Markdown on stdout
    python -m hf_vssl.foundation.table outputs/zero-shot/* --json      # the rows as JSON

Rows are sorted by dataset, then model; accuracies in percent. A folder without a zero-shot
``metrics.json`` is refused with its path.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hf_vssl.hub.cards import dataset_title
from hf_vssl.hub.reports import validate_metrics

__all__ = ["format_table", "main", "read_rows"]


def read_rows(folders: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One row per run folder: model, family, dataset, split, fold, prompts, clip/video top-1/top-5."""
    rows = []
    for folder in folders:
        path = Path(folder) / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: no metrics.json (not a recipes/zero_shot.py run folder)")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        validate_metrics(record)
        if record.get("mode") != "zero_shot":
            raise ValueError(f"{path}: mode {record.get('mode')!r} is not a zero-shot result")
        setting = record.get("zero_shot", {})
        rows.append(
            {
                "model": record.get("base_model"),
                "family": setting.get("family"),
                "dataset": record["dataset"],
                "split": record.get("dataset_split"),
                "fold": record.get("fold"),
                "templates": len(setting.get("templates", [])),
                "num_videos": record.get("num_videos"),
                "frames": record.get("evaluation", {}).get("num_frames"),
                "frame_stride": record.get("evaluation", {}).get("frame_stride"),
                **record["results"],
                "folder": str(folder),
            }
        )
    return sorted(rows, key=lambda row: (row["dataset"], str(row["model"])))


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`read_rows` rows (accuracies in percent)."""
    lines = [
        (
            "| model | family | dataset | split (fold) | frames x stride | prompts | clip top-1 | video top-1 | "
            "video top-5 | videos |"
        ),
        "|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| `{row['model']}` | {row['family']} | {dataset_title(row['dataset'])} | {row['split']} "
            f"({row['fold']}) | {row['frames']}x{row['frame_stride']} | {row['templates']} | "
            f"{100 * row['clip_top1']:.1f} | "
            f"{100 * row['video_top1']:.1f} | {100 * row['video_top5']:.1f} | {row['num_videos']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="zero-shot run folders")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rows = read_rows(args.folders)
    text = json.dumps(rows, indent=2) if args.json else format_table(rows)
    print(text)
    return text


if __name__ == "__main__":
    main()
