"""CKA maps of hf_vssl models: within one model, or between one model and several others, in one data pass.

The study compares representations stage by stage (Kornblith et al. 2019; Nguyen, Raghu &
Kornblith 2021). :func:`compare_models` runs the models over a data loader, takes each stage's
Gram matrices from :class:`~hf_vssl.analysis.stages.StageGrams`, and accumulates one
:class:`~hf_vssl.analysis.cka.MinibatchCKA` per compared pair; a :class:`CKAMap` holds and saves
the result. The recipe around it is :mod:`hf_vssl.analysis.cka_recipe`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .cka import MinibatchCKA
from .stages import StageGrams

__all__ = ["CKAMap", "compare_models"]


@dataclass
class CKAMap:
    """One CKA map: rows = stages of model A, columns = stages of model B."""

    matrix: torch.Tensor
    layers_a: list[str]
    layers_b: list[str]
    model_a: str
    model_b: str
    num_samples: int = 0
    method: str = "hooks"
    kernel: str = "linear"

    def to_dict(self) -> dict:
        """The ``cka.json`` contract: model names, layer names and the matrix (plus how it was made)."""
        return {
            "model_a": self.model_a,
            "model_b": self.model_b,
            "layers_a": list(self.layers_a),
            "layers_b": list(self.layers_b),
            "matrix": self.matrix.double().cpu().tolist(),
            "kernel": self.kernel,
            "num_samples": self.num_samples,
            "method": self.method,
        }

    def save(self, output_dir: str | Path, stem: str = "cka", title: str | None = None) -> tuple[Path, Path]:
        """Write ``<stem>.json`` and the heatmap ``<stem>.png`` into ``output_dir``; return both paths."""
        # matplotlib (optional, slow to import) only when a figure is drawn
        from .plots import plot_cka_heatmap

        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        json_path = output_dir / f"{stem}.json"
        json_path.write_text(json.dumps(self.to_dict(), indent=2))
        if title is None:
            title = (
                f"CKA within {self.model_a}"
                if self.model_a == self.model_b
                else f"CKA: {self.model_a} (y) vs {self.model_b} (x)"
            )
        # plot_cka_heatmap puts the rows (model A's stages) on the y axis, depth growing upwards.
        png_path = plot_cka_heatmap(
            self.matrix, self.layers_b, self.layers_a, title, output_dir / f"{stem}.png"
        )
        return json_path, png_path

    @property
    def diagonal(self) -> list[float]:
        """CKA of stage ``i`` of A with stage ``i`` of B (same architecture only)."""
        return torch.diagonal(self.matrix).tolist()


def compare_models(
    model_a: nn.Module,
    loader: Iterable[Mapping],
    others: Mapping[str, nn.Module] | None = None,
    *,
    name_a: str = "model_a",
    device: torch.device | str | None = None,
    kernel: str = "linear",
    threshold: float = 0.5,
    use_hooks: bool = True,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> dict[str, CKAMap]:
    """CKA maps of ``model_a`` with itself (``others`` empty) or with each of ``others``, in one data pass.

    ``loader`` yields batches with ``pixel_values`` ``(B, T, C, H, W)`` (e.g. ``collate_clips``).
    Every model runs in eval mode under ``torch.no_grad``. Returns ``{name: CKAMap}``; the
    within-model map is keyed ``name_a``. Model A's Gram matrices are built once per batch and
    shared by every comparison, so sweeping many checkpoints costs one pass over the data.
    """
    others = dict(others or {})
    device = torch.device(device) if device is not None else torch.device("cpu")
    models = {name_a: model_a, **others}
    for model in models.values():
        model.eval().to(device)
    captures = {
        name: StageGrams(
            model, kernel=kernel, threshold=threshold, use_hooks=use_hooks, autocast_dtype=autocast_dtype
        )
        for name, model in models.items()
    }
    layers_a = captures[name_a].layer_names
    if others:
        accumulators = {
            name: MinibatchCKA(len(layers_a), len(captures[name].layer_names), device=device, kernel=kernel)
            for name in others
        }
    else:
        accumulators = {name_a: MinibatchCKA(len(layers_a), device=device, kernel=kernel)}
    with ExitStack() as stack:
        for capture in captures.values():
            stack.enter_context(capture)
        try:
            total = len(loader)
        except TypeError:  # a DataLoader over a stream has no length
            total = None
        for batch in tqdm(
            loader, total=total, desc=f"cka {name_a}", disable=not progress, dynamic_ncols=True
        ):
            pixel_values = batch["pixel_values"].to(device, non_blocking=True)
            if pixel_values.shape[0] <= 3:
                continue  # the unbiased HSIC needs n > 3; a short last batch carries no estimate
            grams_a = captures[name_a].grams(pixel_values)
            if not others:
                accumulators[name_a].update_grams(grams_a)
            for name in others:
                accumulators[name].update_grams(grams_a, captures[name].grams(pixel_values))
    maps = {}
    for name, accumulator in accumulators.items():
        if accumulator.num_batches == 0:
            raise ValueError(
                "no batch of more than 3 clips reached the CKA estimator; use more videos or a larger "
                "--per_device_eval_batch_size"
            )
        other = captures[name]
        maps[name] = CKAMap(
            accumulator.compute().cpu(),
            layers_a,
            other.layer_names,
            name_a,
            name,
            num_samples=accumulator.num_samples,
            method=captures[name_a].method if name == name_a else f"{captures[name_a].method}/{other.method}",
            kernel=kernel,
        )
    return maps
