"""The fast path every recipe shares: ``torch.compile`` of a model in place and the CUDA backend switches.

See ``docs/performance.md``. Nothing here changes what a run computes beyond floating-point
reordering: compiling fuses kernels, cuDNN autotuning picks among algorithms of one convolution.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "COMPILE_MODES",
    "check_compile_mode",
    "compile_in_place",
    "enable_cuda_fast_path",
    "loader_transfer_options",
]

#: ``--torch_compile_mode`` values (``torch.compile``'s ``mode``).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile_mode(mode: str) -> None:
    """Refuse a ``--torch_compile_mode`` that ``torch.compile`` does not know."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"--torch_compile_mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")


def compile_in_place(model: nn.Module, enabled: bool, mode: str = "default") -> nn.Module:
    """``model.compile(mode=mode)`` when ``enabled``; returns ``model`` itself either way.

    ``nn.Module.compile`` compiles the module's call in place: the module keeps its class,
    attributes and state-dict keys (no ``_orig_mod.`` prefix), so Accelerate's wrapping,
    checkpoints and ``save_pretrained`` see the uncompiled module. Compilation happens lazily at
    the first call.
    """
    if enabled:
        check_compile_mode(mode)
        model.compile(mode=mode)
    return model


def enable_cuda_fast_path(device: torch.device | str) -> None:
    """cuDNN autotuning on CUDA (the input shape of a run is fixed, so the first step's search pays off).

    A no-op on other devices.
    """
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True


#: Batches each DataLoader worker keeps ready on CUDA (PyTorch's default is 2): decode jitter
#: between videos is absorbed without the accelerator waiting.
CUDA_PREFETCH_FACTOR = 4


def loader_transfer_options(num_workers: int) -> dict:
    """``DataLoader`` keyword arguments of the fast path: pinned host memory (so the copy to the
    device can be non-blocking) and a deeper prefetch per worker, on CUDA only."""
    cuda = torch.cuda.is_available()
    return {
        "pin_memory": cuda,
        "prefetch_factor": CUDA_PREFETCH_FACTOR if cuda and num_workers > 0 else None,
    }
