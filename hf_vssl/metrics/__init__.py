"""hf_vssl's ``evaluate`` metrics, shipped in the package and loaded by path (no Hub access).

- ``topk_accuracy``: per-class scores + references -> ``{"top1": .., "top5": ..}``;
- ``relative_robustness``: clean and noisy accuracies -> mean relative decrease / robustness.

``load_metric(name)`` is ``evaluate.load(<this folder>/<name>)``; ``evaluate.load`` on the
folder path works the same from user code.
"""

from __future__ import annotations

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("topk_accuracy", "relative_robustness")

__all__ = ["METRICS_DIR", "METRIC_NAMES", "load_metric", "metric_path"]


def metric_path(name: str) -> Path:
    """Folder of the shipped metric ``name`` (what ``evaluate.load`` takes)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown hf_vssl metric {name!r}; available: {', '.join(METRIC_NAMES)}")
    return METRICS_DIR / name


def load_metric(name: str, **kwargs):
    """``evaluate.load`` of a shipped metric, kept in memory (no cache files, no locks between processes)."""
    import evaluate

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(metric_path(name)), **kwargs)
