"""Noise statistics follow docs/study_settings.md#noise; temporal perturbations do what they say."""

from __future__ import annotations

import itertools
import pickle

import pytest
import torch

from hf_vssl.data.noise import (
    NOISE_KINDS,
    NOISE_PRESETS,
    NoiseTransform,
    apply_noise,
    noise_constant,
    relative_decrease,
    relative_robustness,
)


def grey(value=128, t=4, h=64, w=64):
    return torch.full((t, 3, h, w), value, dtype=torch.uint8)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def diff(noisy, clean):
    return noisy.float() - clean.float()


def test_noise_kinds_list_pixel_then_temporal():
    assert NOISE_KINDS[:4] == ("gaussian", "shot", "impulse", "speckle")
    assert set(NOISE_KINDS[4:]) == {"sampling_rate", "reversal", "jumbled", "frozen"}


@pytest.mark.parametrize("severity", [1, 2])
def test_gaussian_std_matches_c(severity):
    clean = grey()  # mid-grey and c <= 0.12: clipping at 0/1 barely bites, so std(noise) ~ c * 255
    noisy = apply_noise(clean, "gaussian", severity, generator=gen())
    c = NOISE_PRESETS["video-p"]["gaussian"][severity - 1]
    d = diff(noisy, clean)
    assert d.std().item() == pytest.approx(c * 255, rel=0.05)
    assert abs(d.mean().item()) < 0.02 * c * 255


def test_noise_grows_with_severity():
    clean = grey()
    for kind in ("gaussian", "shot", "impulse", "speckle"):
        stds = [diff(apply_noise(clean, kind, s, generator=gen()), clean).std().item() for s in range(1, 6)]
        assert stds == sorted(stds), kind


@pytest.mark.parametrize("severity", [1, 5])
def test_impulse_fraction_of_extremes(severity):
    clean = grey()
    noisy = apply_noise(clean, "impulse", severity, generator=gen())
    c = noise_constant("impulse", severity)
    salt = (noisy == 255).float().mean().item()
    pepper = (noisy == 0).float().mean().item()
    assert salt + pepper == pytest.approx(c, rel=0.05)
    assert salt == pytest.approx(pepper, rel=0.15)
    # The rest is untouched, and values are hit per channel element, not per pixel.
    assert torch.all((noisy == 128) | (noisy == 0) | (noisy == 255))
    hit = noisy != 128
    assert not torch.equal(hit[:, 0], hit[:, 1])


@pytest.mark.parametrize("preset", ["video-p", "imagenet-c"])
def test_shot_variance_is_x_over_c(preset):
    value = 128
    clean = grey(value)
    c = noise_constant("shot", 3, preset)
    noisy = apply_noise(clean, "shot", 3, preset=preset, generator=gen())
    x = value / 255
    var01 = (diff(noisy, clean) / 255).var().item()
    # Var(Poisson(x c) / c) = x / c; rounding to uint8 adds ~1/12 / 255**2.
    assert var01 == pytest.approx(x / c + 1 / (12 * 255**2), rel=0.08)


def test_speckle_std_scales_with_intensity():
    c = noise_constant("speckle", 2)
    for value in (64, 128):
        clean = grey(value)
        d = diff(apply_noise(clean, "speckle", 2, generator=gen()), clean)
        assert d.std().item() == pytest.approx(value * c, rel=0.05)
    black = grey(0)
    assert torch.equal(apply_noise(black, "speckle", 5, generator=gen()), black)  # x * N: zero stays zero


def test_presets_differ_only_where_the_table_differs():
    clean = grey()
    for kind in ("gaussian", "impulse"):
        a = apply_noise(clean, kind, 4, preset="video-p", generator=gen())
        b = apply_noise(clean, kind, 4, preset="imagenet-c", generator=gen())
        assert torch.equal(a, b)
    for kind in ("shot", "speckle"):
        a = apply_noise(clean, kind, 4, preset="video-p", generator=gen())
        b = apply_noise(clean, kind, 4, preset="imagenet-c", generator=gen())
        assert not torch.equal(a, b)
        assert diff(b, clean).std() > diff(a, clean).std()  # imagenet-c is harsher at severity 4


@pytest.mark.parametrize("kind", ["gaussian", "shot", "impulse", "speckle"])
def test_fresh_noise_per_frame_and_generator_determinism(kind):
    clean = grey()
    a = apply_noise(clean, kind, 2, generator=gen(1))
    b = apply_noise(clean, kind, 2, generator=gen(1))
    c = apply_noise(clean, kind, 2, generator=gen(2))
    assert a.dtype == torch.uint8 and a.shape == clean.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])


def test_severity_zero_returns_a_copy():
    clean = grey()
    for kind in NOISE_KINDS:
        out = apply_noise(clean, kind, 0)
        assert torch.equal(out, clean)
        assert out.data_ptr() != clean.data_ptr()


@pytest.mark.parametrize("severity", [-1, 6, 1.0, "1", True])
def test_bad_severity_raises(severity):
    with pytest.raises(ValueError, match="severity"):
        apply_noise(grey(), "gaussian", severity)


def test_bad_kind_preset_and_input_raise():
    with pytest.raises(ValueError, match="gaussian"):
        apply_noise(grey(), "blur", 1)
    with pytest.raises(ValueError, match="imagenet-c"):
        apply_noise(grey(), "shot", 1, preset="video-c")
    with pytest.raises(ValueError, match="uint8"):
        apply_noise(grey().float(), "shot", 1)
    with pytest.raises(ValueError, match=r"\(T, C, H, W\)"):
        apply_noise(grey()[0], "shot", 1)


def frame_ids(t=16):
    """A clip whose frame i is filled with value i, so the output reveals the frame order."""
    return torch.arange(t, dtype=torch.uint8).view(t, 1, 1, 1).expand(t, 3, 4, 4).contiguous()


def order(video):
    return video[:, 0, 0, 0].tolist()


def test_reversal():
    assert order(apply_noise(frame_ids(), "reversal", 1)) == list(range(15, -1, -1))


@pytest.mark.parametrize("severity,rate", [(1, 2), (2, 4), (3, 8), (5, 32)])
def test_sampling_rate_holds_every_rth_frame(severity, rate):
    out = order(apply_noise(frame_ids(), "sampling_rate", severity))
    assert len(out) == 16
    assert out == [i // rate * rate for i in range(16)]


@pytest.mark.parametrize("severity", range(1, 6))
def test_jumbled_is_a_segment_permutation(severity):
    out = order(apply_noise(frame_ids(), "jumbled", severity, generator=gen(severity)))
    assert sorted(out) == list(range(16)) and out != list(range(16))
    # Contiguous segments are kept intact: count the breaks in the +1 chain.
    breaks = sum(1 for a, b in itertools.pairwise(out) if b != a + 1)
    assert breaks <= min(2**severity, 16) - 1


def test_frozen_holds_a_run_that_grows_with_severity():
    lengths = []
    for severity in range(1, 6):
        out = order(apply_noise(frame_ids(), "frozen", severity, generator=gen()))
        assert len(out) == 16 and out != list(range(16))
        held = sum(1 for i, v in enumerate(out) if v != i)
        assert all(v <= i for i, v in enumerate(out))  # only earlier frames are held, never future ones
        lengths.append(held)
    assert lengths == sorted(lengths) and lengths[-1] == 8 and lengths[0] == 2


def test_relative_metrics():
    assert relative_decrease(50.0, 40.0) == pytest.approx(0.2)
    assert relative_robustness(50.0, 40.0) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        relative_decrease(0.0, 1.0)


def test_noise_transform_is_keyed_by_video_id_and_picklable():
    transform = pickle.loads(pickle.dumps(NoiseTransform("gaussian", 2, seed=3)))
    clip = grey(t=2, h=8, w=8)
    torch.manual_seed(123)  # the global RNG must not matter
    a = transform(clip, "v_ApplyEyeMakeup_g01_c01")
    torch.manual_seed(456)
    b = transform(clip, "v_ApplyEyeMakeup_g01_c01")
    assert torch.equal(a, b)
    assert not torch.equal(a, transform(clip, "v_ApplyEyeMakeup_g01_c02"))
    assert not torch.equal(a, NoiseTransform("gaussian", 2, seed=4)(clip, "v_ApplyEyeMakeup_g01_c01"))
    with pytest.raises(ValueError, match="severity"):
        NoiseTransform("gaussian", 9)
