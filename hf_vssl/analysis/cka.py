"""Centred Kernel Alignment (CKA) between layer representations.

Definitions (docs/study_settings.md#cka; Kornblith et al. 2019, Nguyen, Raghu & Kornblith 2021):

- ``HSIC(K, L)`` with the *biased* estimator is ``<HKH, HLH> / (n - 1)^2`` (``H`` = centring
  matrix); the *unbiased* estimator of Song et al. (2012) needs ``n > 3``.
- ``CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``; linear CKA uses ``K = X X^T``.

Every HSIC here is a plain dot product of *transformed* Gram matrices, which is what lets a whole
layer-by-layer map come out of one matrix product:

- biased: ``HSIC_0(K, L) = <HKH, HLH> / (n - 1)^2``;
- unbiased: ``HSIC_1(K, L) = <U(K), U(L)> / (n (n - 3))``, where ``U`` is the U-centring of
  Szekely & Rizzo (2014): zero the diagonal, then
  ``U(K)_ij = K_ij - r_i / (n - 2) - r_j / (n - 2) + s / ((n - 1)(n - 2))`` off the diagonal
  (``r`` row sums, ``s`` total sum of the zero-diagonal ``K``) and 0 on it. Expanding the
  bilinear form gives back Song et al.'s ``[tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2))
  - 2/(n-2) 1'K~L~1] / (n (n - 3))`` exactly, correction terms included; the tests check this.

So :func:`cka_matrix` and :class:`MinibatchCKA` transform each layer's Gram once, stack the
flattened ``n x n`` matrices into ``(L, n*n)`` and take ``Ka @ Kb^T`` for every layer pair.

Numerics: everything runs in float64. Linear Gram matrices are built from column-centred
features in bounded column blocks, so fp16 activations cannot overflow, large activation means
do not eat the precision, and memory does not grow with the feature size.

Degenerate input (constant features, hence a zero self-HSIC) gives CKA 0 for the affected
cells and a :class:`RuntimeWarning`, never NaN. :class:`MinibatchCKA` skips (with a warning) a
batch of ``n <= 3`` samples, where the unbiased estimator is undefined.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray

# Column block size (in elements of n x block) for building Gram matrices: bounds the float64
# working copy at 2 MiB whatever the feature size, still wide enough (e.g. 128 x 2048) for an
# efficient matrix product.
_BLOCK_ELEMENTS = 1 << 18
# A self-HSIC below this fraction of the Gram's raw energy is rounding noise of a constant
# representation (e.g. an all-ones RBF kernel), not signal.
_DEGENERATE_RTOL = 1e-12

__all__ = [
    "MinibatchCKA",
    "center_gram",
    "cka_from_grams",
    "cka_matrix",
    "gram_linear",
    "gram_rbf",
    "hsic",
    "linear_cka",
    "rbf_cka",
]


def _as_matrix(x: ArrayLike) -> torch.Tensor:
    """``x`` as an ``(n, features)`` tensor: numpy accepted, any trailing shape flattened."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    elif not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError("features must have a sample axis, got a scalar")
    x = x.detach()
    return x.reshape(x.shape[0], -1) if x.ndim != 2 else x


def _check_same_n(x: torch.Tensor, y: torch.Tensor) -> int:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same samples, got {x.shape[0]} and {y.shape[0]} rows")
    return x.shape[0]


def gram_linear(x: ArrayLike, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Linear Gram matrix ``Xc Xc^T`` (``n x n``) of the column-centred features ``Xc``.

    Centring does not change any CKA (HSIC centres the Gram anyway) but keeps the products small,
    which matters for post-ReLU activations with large means. The product is accumulated over
    column blocks cast to ``dtype`` one at a time, so the extra memory is ``O(n * block)``.
    """
    x = _as_matrix(x)
    n, p = x.shape
    gram = torch.zeros(n, n, dtype=dtype, device=x.device)
    step = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, p, step):
        block = x[:, start : start + step].to(dtype, copy=True)  # own copy: centred in place
        block -= block.mean(dim=0, keepdim=True)
        gram.addmm_(block, block.T)
    return gram


def _median(values: torch.Tensor) -> torch.Tensor:
    """Median that averages the two middle values (numpy's convention) and has no size limit."""
    flat = values.reshape(-1)
    k = flat.numel()
    upper = torch.kthvalue(flat, k // 2 + 1).values
    if k % 2:
        return upper
    return (torch.kthvalue(flat, k // 2).values + upper) / 2


def gram_rbf(x: ArrayLike, threshold: float = 0.5) -> torch.Tensor:
    """RBF Gram matrix ``exp(-d^2 / (2 t^2 median(d^2)))`` with ``t = threshold``, in float64.

    The median runs over all ``n^2`` squared distances, diagonal included (Kornblith et al.'s
    reference code). If that median is 0 (most samples identical) the median of the positive
    distances is used; if every sample is identical the kernel is all ones, whose centred form is
    zero, so CKA against it reports the degenerate case instead of dividing by zero.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    dot = gram_linear(x)
    sq_norms = torch.diagonal(dot)
    sq_distances = (sq_norms[:, None] + sq_norms[None, :] - 2 * dot).clamp_(min=0)
    scale = _median(sq_distances)
    if scale <= 0:
        positive = sq_distances[sq_distances > 0]
        if positive.numel() == 0:
            return torch.ones_like(sq_distances)
        scale = _median(positive)
    return torch.exp(-sq_distances / (2 * threshold**2 * scale))


def center_gram(gram: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """Centred copy of a symmetric Gram matrix: ``HKH`` (biased) or the U-centring (unbiased).

    The U-centred matrix has a zero diagonal; ``<U(K), U(L)> / (n (n - 3))`` is Song et al.'s
    unbiased HSIC. It needs ``n > 3``.
    """
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"a Gram matrix must be square, got shape {tuple(gram.shape)}")
    n = gram.shape[0]
    gram = gram.to(torch.float64, copy=True)
    if not unbiased:
        means = gram.mean(dim=0)
        gram -= means[:, None]
        gram -= means[None, :]
        gram += means.mean()
        return gram
    if n <= 3:
        raise ValueError(f"the unbiased HSIC estimator needs more than 3 samples, got n={n}")
    gram.fill_diagonal_(0)
    # Folding the total-sum term into the row means subtracts it once per (i, j) pair, as needed.
    means = gram.sum(dim=0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    gram -= means[:, None]
    gram -= means[None, :]
    gram.fill_diagonal_(0)
    return gram


def _hsic_scale(n: int, unbiased: bool) -> float:
    return 1.0 / (n * (n - 3)) if unbiased else 1.0 / (n - 1) ** 2


def _raw_energy(gram: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Squared Frobenius norm of the (zero-diagonal when unbiased) Gram: the degeneracy yardstick."""
    energy = gram.double().square().sum()
    if unbiased:
        energy = energy - torch.diagonal(gram).double().square().sum()
    return energy


def hsic(gram_x: torch.Tensor, gram_y: torch.Tensor, debiased: bool = False) -> float:
    """HSIC of two ``n x n`` Gram matrices (biased ``HSIC_0`` or unbiased ``HSIC_1``)."""
    n = gram_x.shape[0]
    if gram_y.shape != gram_x.shape:
        raise ValueError(f"Gram matrices differ in shape: {tuple(gram_x.shape)} vs {tuple(gram_y.shape)}")
    kx, ky = center_gram(gram_x, debiased), center_gram(gram_y.to(gram_x.device), debiased)
    return float(torch.dot(kx.reshape(-1), ky.reshape(-1))) * _hsic_scale(n, debiased)


def _normalise(
    cross: torch.Tensor,
    self_a: torch.Tensor,
    self_b: torch.Tensor,
    energy_a: torch.Tensor,
    energy_b: torch.Tensor,
    names: str = "layer",
) -> torch.Tensor:
    """``cross / sqrt(self_a self_b)`` with 0 (and a warning) where a self-HSIC vanishes."""
    bad_a = self_a <= _DEGENERATE_RTOL * energy_a
    bad_b = self_b <= _DEGENERATE_RTOL * energy_b
    if bad_a.any() or bad_b.any():
        which = [f"a[{i}]" for i in bad_a.nonzero().flatten().tolist()]
        which += [f"b[{j}]" for j in bad_b.nonzero().flatten().tolist()]
        warnings.warn(
            f"zero self-HSIC (constant features or no data) for {names} {', '.join(which)}; "
            "CKA set to 0 for those cells",
            RuntimeWarning,
            stacklevel=3,
        )
    denom = torch.sqrt(self_a.clamp(min=0)[:, None] * self_b.clamp(min=0)[None, :])
    bad = bad_a[:, None] | bad_b[None, :]
    return torch.where(bad, torch.zeros_like(cross), cross / torch.where(bad, torch.ones_like(denom), denom))


def cka_from_grams(gram_x: torch.Tensor, gram_y: torch.Tensor, debiased: bool = False) -> float:
    """CKA of two Gram matrices of the same ``n`` samples (0 with a warning if one is constant)."""
    if gram_x.shape != gram_y.shape:
        raise ValueError(f"Gram matrices differ in shape: {tuple(gram_x.shape)} vs {tuple(gram_y.shape)}")
    stack, energy = _centred_stack([gram_x, gram_y.to(gram_x.device)], torch.as_tensor, debiased)
    products = stack @ stack.T
    value = _normalise(products[:1, 1:], products[0, :1], products[1, 1:], energy[:1], energy[1:], "input")
    return float(value)


def linear_cka(x: ArrayLike, y: ArrayLike, debiased: bool = False) -> float:
    """Linear CKA between features ``x`` (n x p) and ``y`` (n x q); leading axis = samples.

    Biased: ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` on centred features, evaluated in
    feature space when both widths are below ``n`` (cheaper) and via Gram matrices otherwise.
    ``debiased=True`` uses the unbiased HSIC (needs ``n > 3``); it can be slightly negative.
    """
    x, y = _as_matrix(x), _as_matrix(y)
    n = _check_same_n(x, y)
    if debiased or max(x.shape[1], y.shape[1]) >= n:
        return cka_from_grams(gram_linear(x), gram_linear(y.to(x.device)), debiased)
    xc = x.to(torch.float64)
    xc = xc - xc.mean(dim=0, keepdim=True)
    yc = y.to(device=x.device, dtype=torch.float64)
    yc = yc - yc.mean(dim=0, keepdim=True)
    # The same <K, L> dot products as the Gram form (<XX^T, YY^T> = ||Y^T X||_F^2), in p x q space.
    cross = (yc.T @ xc).square().sum().reshape(1, 1)
    self_x = (xc.T @ xc).square().sum().reshape(1)
    self_y = (yc.T @ yc).square().sum().reshape(1)
    # Centred features are exactly zero when constant, so the energy yardstick is 0 here.
    zero = torch.zeros(1, dtype=torch.float64, device=x.device)
    return float(_normalise(cross, self_x, self_y, zero, zero, "input"))


def rbf_cka(x: ArrayLike, y: ArrayLike, threshold: float = 0.5, debiased: bool = False) -> float:
    """CKA with RBF kernels of bandwidth ``threshold * sqrt(median squared distance)``."""
    x, y = _as_matrix(x), _as_matrix(y)
    _check_same_n(x, y)
    return cka_from_grams(gram_rbf(x, threshold), gram_rbf(y.to(x.device), threshold), debiased)


def _gram_fn(kernel: str, threshold: float) -> Callable[[ArrayLike], torch.Tensor]:
    if kernel == "linear":
        return gram_linear
    if kernel == "rbf":
        return lambda x: gram_rbf(x, threshold)
    raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")


def _centred_stack(items: Sequence, to_gram: Callable, unbiased: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre each item's Gram and stack them flattened: ``(L, n*n)`` float64, plus raw energies.

    Grams are built one layer at a time straight into the preallocated stack, so only one
    layer's activations-to-Gram working memory is live at once.
    """
    stack = energy = None
    n = 0
    for index, item in enumerate(items):
        gram = to_gram(item)
        if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
            raise ValueError(f"item {index}: a Gram matrix must be square, got shape {tuple(gram.shape)}")
        if not torch.isfinite(gram).all():
            raise ValueError(f"item {index}: non-finite values (NaN/inf) in the features or Gram matrix")
        if stack is None:
            n = gram.shape[0]
            stack = torch.empty(len(items), n * n, dtype=torch.float64, device=gram.device)
            energy = torch.empty(len(items), dtype=torch.float64, device=gram.device)
        elif gram.shape[0] != n:
            raise ValueError(f"item {index} has {gram.shape[0]} samples, item 0 has {n}")
        gram = gram.to(stack.device)
        stack[index] = center_gram(gram, unbiased).reshape(-1)
        energy[index] = _raw_energy(gram, unbiased)
    if stack is None:
        raise ValueError("need at least one layer")
    return stack, energy


def cka_matrix(
    feats_a: Sequence[ArrayLike],
    feats_b: Sequence[ArrayLike] | None = None,
    kernel: str = "linear",
    debiased: bool = False,
    threshold: float = 0.5,
) -> torch.Tensor:
    """Full-batch CKA map ``(La, Lb)`` between every layer of ``feats_a`` and of ``feats_b``.

    Each entry of the lists is one layer's features for the same ``n`` samples. Without
    ``feats_b`` the map compares ``feats_a`` with itself (symmetric, computed once). Memory is
    ``(La + Lb) * n^2`` float64, so for large ``n`` prefer :class:`MinibatchCKA`.
    """
    to_gram = _gram_fn(kernel, threshold)
    stack_a, energy_a = _centred_stack(feats_a, to_gram, debiased)
    if feats_b is None:
        cross = stack_a @ stack_a.T
        self_a = torch.diagonal(cross).clone()
        return _normalise(cross, self_a, self_a, energy_a, energy_a)
    stack_b, energy_b = _centred_stack(feats_b, to_gram, debiased)
    if stack_b.shape[1] != stack_a.shape[1]:
        raise ValueError("feats_a and feats_b must hold the same samples")
    stack_b = stack_b.to(stack_a.device)
    cross = stack_a @ stack_b.T
    self_a = stack_a.square().sum(dim=1)
    self_b = stack_b.square().sum(dim=1)
    return _normalise(cross, self_a, self_b, energy_a, energy_b.to(stack_a.device))


class MinibatchCKA:
    """CKA map between all layers of two models, accumulated over minibatches.

    Following Nguyen, Raghu & Kornblith (2021), each batch adds its *unbiased* HSIC for every
    layer pair (and every layer with itself); :meth:`compute` normalises the sums at the end.
    Averaging per-batch CKA values instead would be biased. Only ``n x n`` Gram matrices of the
    current batch and the ``(La, Lb)`` accumulators are kept, so memory does not depend on the
    feature size.

    Args:
        num_layers_a: layers of model A (rows of the map).
        num_layers_b: layers of model B (columns); defaults to ``num_layers_a``.
        device: where the float64 accumulators live; defaults to the device of the first batch.
        kernel: ``"linear"`` or ``"rbf"`` (bandwidth from each batch's median distance).
        threshold: RBF bandwidth factor.

    Call ``update(feats_a, feats_b)`` with one tensor per layer (``(n, ...)`` each), or
    ``update(feats_a)`` to compare model A with itself (each Gram is built once and the map is
    symmetric). ``update_grams`` takes precomputed ``n x n`` Gram matrices instead, e.g. from
    :class:`hf_vssl.analysis.capture.LayerGramCapture`. A batch of ``n <= 3`` samples cannot
    enter the unbiased estimator: it is skipped with a :class:`RuntimeWarning`.
    """

    def __init__(
        self,
        num_layers_a: int,
        num_layers_b: int | None = None,
        device: torch.device | str | None = None,
        kernel: str = "linear",
        threshold: float = 0.5,
    ):
        if num_layers_a < 1 or (num_layers_b is not None and num_layers_b < 1):
            raise ValueError("the layer counts must be positive")
        self.num_layers_a = num_layers_a
        self.num_layers_b = num_layers_a if num_layers_b is None else num_layers_b
        self.device = torch.device(device) if device is not None else None
        self._to_gram = _gram_fn(kernel, threshold)
        self.reset()

    def reset(self) -> None:
        """Forget every accumulated batch."""
        self._state: dict[str, torch.Tensor] | None = None
        self.num_batches = 0
        self.num_samples = 0

    def _init_state(self, device: torch.device) -> None:
        if self.device is None:
            self.device = device
        la, lb = self.num_layers_a, self.num_layers_b

        def zeros(*shape):
            return torch.zeros(*shape, dtype=torch.float64, device=self.device)

        self._state = {
            "cross": zeros(la, lb),
            "self_a": zeros(la),
            "self_b": zeros(lb),
            "energy_a": zeros(la),
            "energy_b": zeros(lb),
        }

    def update(self, feats_a: Sequence[ArrayLike], feats_b: Sequence[ArrayLike] | None = None) -> None:
        """Add one batch given as per-layer features (same samples, in the same order, in both lists)."""
        self._update(feats_a, feats_b, self._to_gram)

    def update_grams(
        self, grams_a: Sequence[torch.Tensor], grams_b: Sequence[torch.Tensor] | None = None
    ) -> None:
        """Add one batch given as per-layer ``n x n`` Gram matrices (uncentred is fine)."""
        self._update(grams_a, grams_b, torch.as_tensor)

    def _update(self, items_a: Sequence, items_b: Sequence | None, to_gram: Callable) -> None:
        self._check_count(items_a, self.num_layers_a, "a")
        if items_b is not None:
            self._check_count(items_b, self.num_layers_b, "b")
        elif self.num_layers_a != self.num_layers_b:
            raise ValueError(
                "update without feats_b compares model A with itself, which needs num_layers_b == num_layers_a"
            )
        n = int(items_a[0].shape[0])
        if items_b is not None and int(items_b[0].shape[0]) != n:
            raise ValueError(f"feats_a has {n} samples but feats_b has {int(items_b[0].shape[0])}")
        if n <= 3:
            warnings.warn(
                f"skipping a batch of n={n} samples: the unbiased HSIC estimator needs n > 3",
                RuntimeWarning,
                stacklevel=3,
            )
            return
        stack_a, energy_a = _centred_stack(items_a, to_gram, unbiased=True)
        if self._state is None:
            self._init_state(stack_a.device)
        scale = _hsic_scale(n, unbiased=True)
        state = self._state
        if items_b is None:
            cross = stack_a @ stack_a.T
            self_a = torch.diagonal(cross)
            self_b, energy_b = self_a, energy_a
        else:
            stack_b, energy_b = _centred_stack(items_b, to_gram, unbiased=True)
            stack_b = stack_b.to(stack_a.device)
            cross = stack_a @ stack_b.T
            self_a = stack_a.square().sum(dim=1)
            self_b = stack_b.square().sum(dim=1)
        state["cross"] += cross.to(self.device) * scale
        state["self_a"] += self_a.to(self.device) * scale
        state["self_b"] += self_b.to(self.device) * scale
        state["energy_a"] += energy_a.to(self.device) * scale
        state["energy_b"] += energy_b.to(self.device) * scale
        self.num_batches += 1
        self.num_samples += n

    @staticmethod
    def _check_count(items: Sequence, expected: int, side: str) -> None:
        if len(items) != expected:
            raise ValueError(f"expected {expected} layers for model {side}, got {len(items)}")

    def compute(self) -> torch.Tensor:
        """The ``(La, Lb)`` float64 CKA map from every batch so far (zeros, with a warning, if none)."""
        if self._state is None:
            warnings.warn(
                "MinibatchCKA.compute() called before any usable batch", RuntimeWarning, stacklevel=2
            )
            return torch.zeros(self.num_layers_a, self.num_layers_b, dtype=torch.float64, device=self.device)
        s = self._state
        return _normalise(s["cross"], s["self_a"], s["self_b"], s["energy_a"], s["energy_b"])
