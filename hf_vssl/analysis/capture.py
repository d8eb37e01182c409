"""Forward hooks that turn layer activations into Gram matrices on the fly.

A CKA map over a video network needs every compared layer's activations for the same batch,
and 3D-CNN activations are large (a ResNet stage at 16x112x112 holds millions of values per
clip). :class:`LayerGramCapture` computes each layer's ``n x n`` Gram matrix inside the forward
hook, so the activation can be freed as soon as the network has consumed it; only the small Gram
matrices outlive the forward pass. Feed them to
:meth:`hf_vssl.analysis.cka.MinibatchCKA.update_grams`.

Which modules are hooked: ``layer_names`` (dotted names from ``model.named_modules()``) when
given; otherwise :func:`default_layer_names`, the extension point for model classes: a model
that defines ``cka_layer_names`` (a sequence of module names, or a method returning one) is
captured at those modules, e.g. a ``VSSLModel`` listing its backbone's stage modules. Any other
model falls back to its direct children, which suits ``nn.Sequential`` stacks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from typing_extensions import Self

from .cka import gram_linear, gram_rbf

__all__ = ["LayerGramCapture", "default_layer_names"]


def default_layer_names(model: nn.Module) -> list[str]:
    """Modules to capture when none are named: ``model.cka_layer_names`` if defined, else the children."""
    names = getattr(model, "cka_layer_names", None)
    if callable(names):
        names = names()
    if names is None:
        names = [name for name, _ in model.named_children()]
    names = list(names)
    if not names:
        raise ValueError(f"{type(model).__name__} has no submodules to capture; pass layer_names")
    return names


def _first_tensor(output) -> torch.Tensor:
    """The activation in a module's output: the tensor itself, or the first tensor of a tuple/ModelOutput."""
    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if isinstance(output, dict) else output
    if isinstance(values, (tuple, list)) or isinstance(output, dict):
        for value in values:
            if isinstance(value, torch.Tensor):
                return value
    raise TypeError(f"cannot find a tensor in a module output of type {type(output).__name__}")


class LayerGramCapture:
    """Context manager recording one Gram matrix per hooked module and forward pass.

    Args:
        model: the network to hook.
        layer_names: dotted module names in map order; default :func:`default_layer_names`.
        layer_resolver: alternative to ``layer_names``: a callable ``model -> list of names``.
        kernel: ``"linear"`` (``Xc Xc^T`` of the flattened, centred activation) or ``"rbf"``.
        threshold: RBF bandwidth factor.

    Gram matrices are float64 (built in bounded column blocks, see
    :func:`hf_vssl.analysis.cka.gram_linear`) on the activation's device. Each forward pass
    replaces the previous batch's matrices; :meth:`grams` returns them in ``layer_names`` order::

        cka = MinibatchCKA(len(names))
        with LayerGramCapture(model, names) as capture, torch.no_grad():
            for batch in loader:
                model(batch)
                cka.update_grams(capture.grams())
        cka_map = cka.compute()
    """

    def __init__(
        self,
        model: nn.Module,
        layer_names: Sequence[str] | None = None,
        *,
        layer_resolver: Callable[[nn.Module], Sequence[str]] | None = None,
        kernel: str = "linear",
        threshold: float = 0.5,
    ):
        if layer_names is not None and layer_resolver is not None:
            raise ValueError("pass layer_names or layer_resolver, not both")
        if layer_names is None:
            layer_names = (layer_resolver or default_layer_names)(model)
        self.layer_names = list(layer_names)
        modules = dict(model.named_modules())
        missing = [name for name in self.layer_names if name not in modules]
        if missing:
            raise ValueError(f"no module named {missing} in {type(model).__name__}")
        if kernel == "linear":
            self._to_gram = gram_linear
        elif kernel == "rbf":
            self._to_gram = lambda x: gram_rbf(x, threshold)
        else:
            raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")
        self._model = model
        self._modules = [modules[name] for name in self.layer_names]
        self._handles: list = []
        self._grams: dict[str, torch.Tensor] = {}

    def _hook(self, name: str):
        def hook(module, inputs, output):
            with torch.no_grad():
                activation = _first_tensor(output)
                self._grams[name] = self._to_gram(activation.reshape(activation.shape[0], -1))

        return hook

    def __enter__(self) -> Self:
        if self._handles:
            raise RuntimeError("LayerGramCapture is already active")
        self._grams.clear()
        # Clearing at the start of every forward pass keeps a layer that a pass skipped from
        # handing out the previous batch's Gram matrix.
        self._handles = [self._model.register_forward_pre_hook(lambda module, args: self._grams.clear())]
        self._handles += [
            module.register_forward_hook(self._hook(name))
            for name, module in zip(self.layer_names, self._modules)
        ]
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def grams(self) -> list[torch.Tensor]:
        """The last forward pass's ``n x n`` Gram matrices, one per layer, in ``layer_names`` order."""
        missing = [name for name in self.layer_names if name not in self._grams]
        if missing:
            raise RuntimeError(
                f"no activation captured yet for {missing}; run a forward pass inside the context"
            )
        return [self._grams[name] for name in self.layer_names]

    def clear(self) -> None:
        """Drop the stored Gram matrices."""
        self._grams.clear()
