"""Names of run output folders, shared by the training recipes and the Hub layer."""

from __future__ import annotations

from pathlib import Path


def output_name(task: str | None, backbone: str | None, dataset: str, subset_size: int | None = None) -> str:
    """``{task}-{backbone}-{dataset}[-{subset}]``, the naming of checkpoints and Hub repos."""
    parts = [p for p in (task, backbone, dataset) if p]
    if subset_size:
        parts.append(f"{subset_size // 1000}k" if subset_size % 1000 == 0 else str(subset_size))
    return "-".join(parts)


def resolve_output_dir(output_dir: str | None, default_name: str) -> Path:
    """``output_dir`` when given, else ``outputs/<default_name>``."""
    return Path(output_dir) if output_dir else Path("outputs") / default_name
