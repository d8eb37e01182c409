"""CKA estimators, minibatch accumulation, Gram-capturing hooks and the heatmap."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from hf_vssl.analysis.capture import LayerGramCapture, default_layer_names
from hf_vssl.analysis.cka import (
    MinibatchCKA,
    cka_from_grams,
    cka_matrix,
    gram_linear,
    gram_rbf,
    hsic,
    linear_cka,
    rbf_cka,
)
from hf_vssl.analysis.plots import plot_cka_heatmap


def _features(n=200, p=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, p, generator=g, dtype=torch.float64)


def _related(x, q=40, noise=1.0, seed=1):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(x.shape[1], q, generator=g, dtype=torch.float64)
    return torch.relu(x @ w) + noise * torch.randn(x.shape[0], q, generator=g, dtype=torch.float64)


def _song_hsic(gram_k: torch.Tensor, gram_l: torch.Tensor) -> float:
    """Unbiased HSIC written out as in Song et al. (2012), Eq. 5, on raw (uncentred) Grams."""
    n = gram_k.shape[0]
    gram_k = gram_k.double().clone().fill_diagonal_(0)
    gram_l = gram_l.double().clone().fill_diagonal_(0)
    ones = torch.ones(n, 1, dtype=torch.float64)
    value = (
        torch.trace(gram_k @ gram_l)
        + (ones.T @ gram_k @ ones) * (ones.T @ gram_l @ ones) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (ones.T @ gram_k @ gram_l @ ones)
    )
    return float(value) / (n * (n - 3))


# ---------------------------------------------------------------- single-pair properties


@pytest.mark.parametrize("debiased", [False, True])
def test_self_similarity_is_one(debiased):
    x = _features()
    assert linear_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    assert rbf_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    # numpy input and a video-like (n, C, T, H, W) activation flatten to (n, -1)
    video = torch.randn(16, 2, 3, 4, 4)
    assert linear_cka(video.numpy(), video, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(debiased):
    x, y = _features(), _related(_features())
    q, _ = torch.linalg.qr(torch.randn(24, 24, dtype=torch.float64))
    moved = 3.7 * x @ q
    assert linear_cka(x, moved, debiased=debiased) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(moved, y, debiased=debiased) == pytest.approx(
        linear_cka(x, y, debiased=debiased), abs=1e-10
    )
    # The RBF bandwidth follows the median distance, so it is scale-free too.
    assert rbf_cka(moved, y, debiased=debiased) == pytest.approx(rbf_cka(x, y, debiased=debiased), abs=1e-10)


def test_not_invariant_to_general_invertible_maps():
    x = _features(n=300, p=16)
    u, _ = torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64))
    stretch = u @ torch.diag(torch.logspace(0, 2, 16, dtype=torch.float64)) @ v.T  # invertible, cond 100
    assert torch.linalg.matrix_rank(stretch) == 16
    assert linear_cka(x, x @ stretch) < 0.8


def test_one_dimensional_linear_cka_is_squared_pearson():
    x = torch.randn(500, dtype=torch.float64)
    y = 0.5 * x + torch.randn(500, dtype=torch.float64)
    r = np.corrcoef(x.numpy(), y.numpy())[0, 1]
    assert linear_cka(x, y) == pytest.approx(r**2, rel=1e-10)
    assert linear_cka(x[:, None], y[:, None].numpy()) == pytest.approx(r**2, rel=1e-10)


def test_unbiased_hsic_matches_song_formula_on_raw_grams():
    x, y = _features(n=40, p=8), _related(_features(n=40, p=8))
    # Raw Gram matrices of uncentred, offset features: the U-centring must absorb the offsets.
    gram_k = (x + 3.0) @ (x + 3.0).T
    gram_l = y @ y.T
    assert hsic(gram_k, gram_l, debiased=True) == pytest.approx(_song_hsic(gram_k, gram_l), rel=1e-10)
    assert hsic(gram_k, gram_k, debiased=True) == pytest.approx(_song_hsic(gram_k, gram_k), rel=1e-10)


def test_feature_space_and_gram_paths_agree():
    x, y = _features(n=100, p=10), _related(_features(n=100, p=10), q=12)
    feature_space = linear_cka(x, y)  # both widths < n: computed from X^T Y
    gram_form = cka_from_grams(gram_linear(x), gram_linear(y))
    assert feature_space == pytest.approx(gram_form, abs=1e-12)
    xc, yc = x - x.mean(0), y - y.mean(0)
    direct = torch.linalg.norm(yc.T @ xc) ** 2 / (torch.linalg.norm(xc.T @ xc) * torch.linalg.norm(yc.T @ yc))
    assert feature_space == pytest.approx(float(direct), abs=1e-12)


def test_debiased_removes_the_small_sample_bias():
    def gap(n):
        x, y = _features(n=n, p=64, seed=2), _features(n=n, p=64, seed=3)  # independent
        return linear_cka(x, y), linear_cka(x, y, debiased=True)

    biased_small, debiased_small = gap(32)
    biased_large, debiased_large = gap(1024)
    assert biased_small > 0.5  # biased CKA of independent wide features is far from 0 at small n
    assert abs(debiased_small) < 0.15
    assert abs(biased_large - debiased_large) < abs(biased_small - debiased_small) / 4
    assert abs(debiased_large) < 0.02


def test_rbf_cka_sanity():
    x = torch.rand(400, 1, dtype=torch.float64) * 2 - 1
    y = x**2  # dependent but uncorrelated
    assert linear_cka(x, y) < 0.05
    assert rbf_cka(x, y, threshold=0.5) > 0.3
    # A very wide RBF kernel is 1 - d^2 / (2 t^2 m) to first order, whose centred form is the
    # centred linear kernel: RBF CKA tends to linear CKA.
    a, b = _features(n=120, p=6), _related(_features(n=120, p=6), q=5)
    assert rbf_cka(a, b, threshold=200.0) == pytest.approx(linear_cka(a, b), abs=1e-4)
    k = gram_rbf(a)
    assert torch.allclose(torch.diagonal(k), torch.ones(120, dtype=torch.float64))
    assert torch.allclose(k, k.T)


# ---------------------------------------------------------------- maps and minibatches


def _layers(n=512, seed=0):
    """Three 'layers' of one network: a base signal and two noisy nonlinear views of it."""
    x = _features(n=n, p=32, seed=seed)
    return [x, _related(x, q=48, noise=0.5, seed=seed + 1), _related(x, q=16, noise=4.0, seed=seed + 2)]


def test_cka_matrix_matches_pairwise_functions():
    layers = _layers(n=96)
    for debiased in (False, True):
        full = cka_matrix(layers, debiased=debiased)
        assert full.shape == (3, 3)
        assert torch.equal(full, full.T)
        for i in range(3):
            for j in range(3):
                assert float(full[i, j]) == pytest.approx(
                    linear_cka(layers[i], layers[j], debiased), abs=1e-12
                )
    across = cka_matrix(layers[:2], layers, kernel="rbf")
    assert across.shape == (2, 3)
    assert float(across[1, 2]) == pytest.approx(rbf_cka(layers[1], layers[2]), abs=1e-12)


def test_single_minibatch_equals_full_batch_debiased():
    layers = _layers()
    cka = MinibatchCKA(3)
    cka.update(layers)
    assert torch.allclose(cka.compute(), cka_matrix(layers, debiased=True), atol=1e-12)


def test_minibatch_accumulates_hsic_not_cka():
    layers_a, layers_b = _layers(), _layers(seed=7)[:2]
    batches = [slice(start, start + 64) for start in range(0, 512, 64)]
    cka = MinibatchCKA(3, 2)
    for rows in batches:
        cka.update([f[rows] for f in layers_a], [f[rows] for f in layers_b])
    result = cka.compute()
    assert cka.num_batches == 8 and cka.num_samples == 512

    # Direct loop: mean per-batch unbiased HSIC for every pair, normalised once at the end.
    expected = torch.zeros(3, 2, dtype=torch.float64)
    mean_of_batch_cka = torch.zeros(3, 2, dtype=torch.float64)
    for i, fa in enumerate(layers_a):
        for j, fb in enumerate(layers_b):
            xy = xx = yy = 0.0
            for rows in batches:
                gram_k, gram_l = fa[rows] @ fa[rows].T, fb[rows] @ fb[rows].T
                b_xy, b_xx, b_yy = (
                    _song_hsic(gram_k, gram_l),
                    _song_hsic(gram_k, gram_k),
                    _song_hsic(gram_l, gram_l),
                )
                xy, xx, yy = xy + b_xy / 8, xx + b_xx / 8, yy + b_yy / 8
                mean_of_batch_cka[i, j] += b_xy / (b_xx * b_yy) ** 0.5 / 8
            expected[i, j] = xy / (xx * yy) ** 0.5
    assert torch.allclose(result, expected, atol=1e-10)
    # The test can tell the two aggregations apart.
    assert (result - mean_of_batch_cka).abs().max() > 1e-4
    # And the minibatch estimate approaches the full-batch debiased CKA.
    full = cka_matrix(layers_a, layers_b, debiased=True)
    assert (result - full).abs().max() < 0.05


def test_symmetric_map_and_two_model_map_agree():
    layers = _layers(n=200)
    symmetric, across = MinibatchCKA(3), MinibatchCKA(3, 3)
    for rows in (slice(0, 100), slice(100, 200)):
        symmetric.update([f[rows] for f in layers])
        across.update([f[rows] for f in layers], [f[rows] for f in layers])
    assert torch.equal(symmetric.compute(), symmetric.compute().T)
    assert torch.allclose(symmetric.compute(), across.compute(), atol=1e-12)
    assert torch.allclose(torch.diagonal(symmetric.compute()), torch.ones(3, dtype=torch.float64))


def test_minibatch_rejects_mismatched_inputs():
    cka = MinibatchCKA(2, 3)
    x = torch.randn(8, 4)
    with pytest.raises(ValueError, match="expected 2 layers"):
        cka.update([x], [x, x, x])
    with pytest.raises(ValueError, match="samples"):
        cka.update([x, x], [x, x, torch.randn(9, 4)])
    with pytest.raises(ValueError, match="num_layers_b"):
        cka.update([x, x])


# ---------------------------------------------------------------- numerics and degenerate input


def test_constant_features_give_zero_with_a_warning():
    x = torch.randn(50, 10)
    constant = torch.full((50, 7), 3.0)
    for fn in (
        lambda: linear_cka(x, constant),
        lambda: linear_cka(x, constant, debiased=True),
        lambda: rbf_cka(x, constant),
        lambda: rbf_cka(constant, x, debiased=True),
    ):
        with pytest.warns(RuntimeWarning, match="zero self-HSIC"):
            assert fn() == 0.0
    cka = MinibatchCKA(2)
    cka.update([x, constant])
    with pytest.warns(RuntimeWarning, match="zero self-HSIC"):
        result = cka.compute()
    assert torch.isfinite(result).all()
    assert result[0, 0] == pytest.approx(1.0) and result[1, 1] == 0 and result[0, 1] == 0


def test_tiny_batches_are_skipped_with_a_warning():
    cka = MinibatchCKA(1)
    with pytest.warns(RuntimeWarning, match="before any usable batch"):
        assert torch.equal(cka.compute(), torch.zeros(1, 1, dtype=torch.float64))
    with pytest.warns(RuntimeWarning, match="n > 3"):
        cka.update([torch.randn(3, 5)])
    assert cka.num_batches == 0
    cka.update([torch.randn(10, 5)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cka.compute()[0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="more than 3"):
        linear_cka(torch.randn(3, 4), torch.randn(3, 4), debiased=True)


def test_non_finite_features_raise():
    x = torch.randn(10, 4)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        cka_matrix([x])


def test_fp16_activations_do_not_overflow():
    # Post-ReLU-like activations with a large mean: fp16 X X^T would overflow (entries ~1e8).
    x = (torch.rand(64, 2048) * 50 + 300).half()
    y = (x.float() * torch.linspace(0.5, 2, 2048)).half()
    value = linear_cka(x, y, debiased=True)
    assert np.isfinite(value)
    assert value == pytest.approx(linear_cka(x.double(), y.double(), debiased=True), abs=1e-12)
    assert torch.isfinite(gram_linear(x)).all()


def test_gram_blocks_match_one_product(monkeypatch):
    import hf_vssl.analysis.cka as cka_module

    x = torch.randn(20, 50, dtype=torch.float64)
    whole = gram_linear(x)
    monkeypatch.setattr(cka_module, "_BLOCK_ELEMENTS", 20 * 7)  # 7 columns per block
    centred = x - x.mean(0)
    assert torch.allclose(gram_linear(x), whole, atol=1e-10)
    assert torch.allclose(whole, centred @ centred.T, atol=1e-10)


# ---------------------------------------------------------------- hooks and plots


def _conv_net():
    return (
        nn.Sequential(
            nn.Conv3d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv3d(4, 6, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv3d(6, 8, 3, stride=2, padding=1),
        )
        .double()
        .eval()
    )


def test_capture_hooks_give_the_same_map_as_features():
    model = _conv_net()
    names = ["1", "3", "4"]
    clips = torch.randn(24, 3, 4, 8, 8, dtype=torch.float64)
    hooked, direct = MinibatchCKA(3), MinibatchCKA(3)
    with LayerGramCapture(model, names) as capture, torch.no_grad():
        for rows in (slice(0, 12), slice(12, 24)):
            model(clips[rows])
            grams = capture.grams()
            assert [g.shape for g in grams] == [(12, 12)] * 3
            hooked.update_grams(grams)
            h1 = model[:2](clips[rows])
            h3 = model[2:4](h1)
            direct.update([h1, h3, model[4](h3)])
    assert torch.allclose(hooked.compute(), direct.compute(), atol=1e-12)
    # Hooks are gone after the context: nothing is recorded any more.
    capture.clear()
    model(clips[:4])
    with pytest.raises(RuntimeError, match="no activation captured"):
        capture.grams()


def test_capture_default_layers_and_extension_point():
    model = _conv_net()
    assert default_layer_names(model) == ["0", "1", "2", "3", "4"]
    model.cka_layer_names = ["0", "4"]
    assert LayerGramCapture(model).layer_names == ["0", "4"]
    assert LayerGramCapture(model, layer_resolver=lambda m: ["2"]).layer_names == ["2"]
    with pytest.raises(ValueError, match="no module named"):
        LayerGramCapture(model, ["nope"])


def test_heatmap_is_written(tmp_path):
    cka_map = cka_matrix(_layers(n=64), debiased=True)
    labels = ["stem", "stage1", "stage2"]
    path = plot_cka_heatmap(cka_map, labels, labels, "r21d vs r21d", tmp_path / "maps" / "cka.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 2000
    with pytest.raises(ValueError, match="does not match"):
        plot_cka_heatmap(cka_map, labels[:2], labels, "bad", tmp_path / "bad.png")
