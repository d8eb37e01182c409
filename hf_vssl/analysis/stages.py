"""Where CKA's activations come from: per-batch Gram matrices of every backbone stage of one model.

Each backbone stage's Gram matrix is built inside a forward hook
(:class:`~hf_vssl.analysis.capture.LayerGramCapture`), so a stage's activation is never kept past
the point where the network has consumed it. The stage modules are found once per model:
``model.cka_layer_names`` when the model defines it, otherwise by a probe forward pass that
matches each ``output_hidden_states`` tensor to the backbone module that returned that very
tensor object. The first real batch then checks the hooked Gram matrices against Gram matrices
of the hidden states; a backbone whose stage outputs are not the output of one module (e.g.
Swin's permuted stages) uses the ``hidden_states`` path instead: the Gram matrices are built
right after each forward pass and the activations dropped, batch by batch.

Every model is fed the clip resized (trilinear, :func:`hf_vssl.models.loading.resize_clip`) to
the ``num_frames`` x ``image_size`` of its own config when those differ.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import ExitStack, nullcontext

import torch
from torch import nn
from typing_extensions import Self

from hf_vssl.models import VSSLModel
from hf_vssl.models.loading import backbone_of, fit_to_config

from .capture import LayerGramCapture
from .cka import gram_linear, gram_rbf

logger = logging.getLogger(__name__)

__all__ = ["StageGrams", "resolve_stage_modules"]


def resolve_stage_modules(model: VSSLModel, pixel_values: torch.Tensor) -> list[str] | None:
    """Dotted names (relative to ``model``) of the modules whose outputs are the backbone stages.

    ``model.cka_layer_names`` wins when defined. Otherwise one forward pass with
    ``output_hidden_states=True`` records a weak reference to every backbone module's output;
    stage ``i`` maps to the shallowest module whose output *is* ``hidden_states[i]`` (weak
    references never match a freed intermediate, so a reused memory address cannot fool it).
    Returns ``None`` when some stage is not the output of any module.
    """
    names = getattr(model, "cka_layer_names", None)
    if names is not None:
        return list(names() if callable(names) else names)
    refs: dict[str, weakref.ref] = {}

    def record(name):
        def hook(module, inputs, output):
            tensor = (
                output
                if isinstance(output, torch.Tensor)
                else next(
                    (
                        v
                        for v in (output if isinstance(output, (tuple, list)) else ())
                        if isinstance(v, torch.Tensor)
                    ),
                    None,
                )
            )
            if tensor is not None:
                refs[name] = weakref.ref(tensor)

        return hook

    handles = [
        module.register_forward_hook(record(f"backbone.{name}"))
        for name, module in model.backbone.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            hidden_states = model(pixel_values, output_hidden_states=True, return_dict=True).hidden_states
        by_name = model.hidden_states_by_name(hidden_states)  # the stem output is not a CKA stage
        stages = [by_name[name] for name in model.backbone.stage_names]
    finally:
        for handle in handles:
            handle.remove()
    resolved = []
    for stage in stages:
        matches = [name for name, ref in refs.items() if ref() is stage]
        if not matches:
            return None
        resolved.append(min(matches, key=lambda name: name.count(".")))  # shallowest: the stage container
    return resolved


class StageGrams:
    """Per-batch Gram matrices of every backbone stage of one model (see the module docstring).

    Use as a context manager; ``grams(pixel_values)`` runs the model (under ``torch.no_grad``)
    on the clip resized to the model's own clip shape and returns one ``n x n`` float64 Gram per
    stage. :attr:`method` says which path is used: ``"hooks"`` or ``"hidden_states"``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        kernel: str = "linear",
        threshold: float = 0.5,
        use_hooks: bool = True,
        autocast_dtype: torch.dtype | None = None,
    ):
        self.model = backbone_of(model)
        self.layer_names = list(self.model.backbone.stage_names)
        if kernel not in ("linear", "rbf"):
            raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")
        self.kernel, self.threshold, self.use_hooks = kernel, threshold, use_hooks
        self._to_gram = gram_linear if kernel == "linear" else (lambda x: gram_rbf(x, threshold))
        self.autocast_dtype = autocast_dtype
        self.method: str | None = None
        self._capture: LayerGramCapture | None = None
        self._stack = ExitStack()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()
        self._capture = None

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def _from_hidden_states(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        hidden_states = self.model(pixel_values, output_hidden_states=True, return_dict=True).hidden_states
        by_name = self.model.hidden_states_by_name(hidden_states)
        stages = [by_name[name] for name in self.layer_names]
        return [self._to_gram(stage.reshape(stage.shape[0], -1)) for stage in stages]

    @torch.no_grad()
    def grams(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """The Gram matrices of this batch, one per stage, in :attr:`layer_names` order."""
        pixel_values = fit_to_config(pixel_values, self.model.config)
        with self._autocast(pixel_values.device):
            if self.method is None:
                return self._first_batch(pixel_values)
            if self.method == "hidden_states":
                return self._from_hidden_states(pixel_values)
            self.model(pixel_values, return_dict=True)
            return self._capture.grams()

    def _first_batch(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        names = resolve_stage_modules(self.model, pixel_values) if self.use_hooks else None
        if names is not None and len(names) == len(self.layer_names):
            capture = LayerGramCapture(self.model, names, kernel=self.kernel, threshold=self.threshold)
            self._stack.enter_context(capture)
            reference = self._from_hidden_states(pixel_values)  # the same pass fills the hooks
            hooked = capture.grams()
            if all(
                torch.allclose(a, b, rtol=1e-7, atol=1e-9 * float(b.abs().max()) + 1e-30)
                for a, b in zip(hooked, reference)
            ):
                self._capture, self.method = capture, "hooks"
                return hooked
            self._stack.close()
            logger.info(
                "stage hooks of %s disagree with its hidden states; using hidden states",
                type(self.model.backbone).__name__,
            )
        self.method = "hidden_states"
        return self._from_hidden_states(pixel_values)
