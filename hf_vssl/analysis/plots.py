"""Figures for the representation analysis.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas, so nothing
here touches pyplot's global state or needs a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_cka_heatmap"]


def plot_cka_heatmap(
    matrix,
    xlabels: Sequence[str],
    ylabels: Sequence[str],
    title: str,
    path: str | Path,
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> Path:
    """Save a CKA map as a PNG heatmap and return its path.

    ``matrix`` is ``(len(ylabels), len(xlabels))`` (rows = layers of the model on the y axis,
    e.g. :meth:`MinibatchCKA.compute` rows = model A). As in the study's figures the first layer
    sits at the lower left (``origin="lower"``), so depth grows up and to the right.
    """
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().numpy()
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape != (len(ylabels), len(xlabels)):
        raise ValueError(
            f"matrix of shape {matrix.shape} does not match {len(ylabels)} y labels x {len(xlabels)} x labels"
        )
    rows, cols = matrix.shape
    figure = Figure(figsize=(1.5 + 0.45 * max(cols, 4), 1.2 + 0.45 * max(rows, 4)), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, origin="lower", cmap="magma", vmin=vmin, vmax=vmax, aspect="auto")
    axes.set_xticks(range(cols), labels=list(xlabels), rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(rows), labels=list(ylabels), fontsize=8)
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="CKA")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
