"""The three small backbones: ShuffleNet V1, MobileNetV2 and SqueezeNet 1.1 (3D)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from hf_vssl.models.backbone_base import VideoBackbone
from hf_vssl.models.backbone_mobilenet import build_mobilenet
from hf_vssl.models.backbone_shufflenet import build_shufflenet, channel_shuffle, pooled_shortcut
from hf_vssl.models.backbone_squeezenet import build_squeezenet
from hf_vssl.models.backbones import get_backbone_spec
from hf_vssl.utils.profiling import count_gflops, count_parameters

CL = torch.channels_last_3d

# name: (builder, feature dim at width 1.0, stage count, GFLOPs and params (M) without classifier)
SMALL = {
    "shufflenet": (build_shufflenet, 1920, 4, 1.1, 3.6),
    "mobilenet": (build_mobilenet, 1280, 6, 1.1, 2.35),
    "squeezenet": (build_squeezenet, 512, 5, 1.8, 1.9),
}


def make_config(width_multiplier: float = 0.25, num_frames: int = 16, image_size: int = 32):
    return SimpleNamespace(
        width_multiplier=width_multiplier,
        num_frames=num_frames,
        image_size=image_size,
        num_channels=3,
        backbone_kwargs=None,
    )


def build(name: str, width_multiplier: float = 0.25) -> VideoBackbone:
    return SMALL[name][0](make_config(width_multiplier))


@pytest.mark.parametrize("name", list(SMALL))
def test_tiny_forward_backward(name):
    model = build(name)
    assert isinstance(model, VideoBackbone)
    out = model(torch.randn(2, 3, 8, 32, 32))
    assert out.pooled.shape == (2, model.num_features)
    assert len(out.stages) == len(model.stage_names) == SMALL[name][2]
    assert all(stage.dim() == 5 and stage.shape[0] == 2 for stage in out.stages)
    assert out.stages[-1].shape[1] == model.num_features
    # Every net downsamples time by 16 and space by 32 overall (padded strides round up).
    assert out.stages[-1].shape[2:] == (1, 1, 1)
    out.pooled.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", list(SMALL))
def test_channels_last_matches_contiguous(name):
    model = build(name).eval()
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        reference = model(x)
        model.to(memory_format=CL)
        result = model(x.contiguous(memory_format=CL))
    torch.testing.assert_close(result.pooled, reference.pooled, rtol=1e-4, atol=1e-5)
    for got, want in zip(result.stages, reference.stages):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(SMALL))
def test_cost_matches_the_study(name):
    _, features, _, gflops, params_m = SMALL[name]
    model = build(name, width_multiplier=1.0)
    assert model.num_features == features
    assert count_gflops(model, (1, 3, 16, 112, 112)) == pytest.approx(gflops, rel=0.10)
    assert count_parameters(model) / 1e6 == pytest.approx(params_m, rel=0.10)


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("frames", [None, 7])
def test_registry_minimum_clip_and_odd_lengths(name, frames):
    spec = get_backbone_spec(name)
    model = build(name).eval()
    frames = frames or spec.min_frames
    with torch.no_grad():
        out = model(torch.randn(1, 3, frames, spec.min_size, spec.min_size))
    assert out.pooled.shape == (1, model.num_features)
    assert torch.isfinite(out.pooled).all()


@pytest.mark.parametrize("width_multiplier", [0.125, 0.25, 0.5])
def test_shufflenet_widths_keep_groups_divisible(width_multiplier):
    model = build("shufflenet", width_multiplier)
    for module in model.modules():
        if isinstance(module, nn.Conv3d) and module.groups == 3:
            assert module.in_channels % 3 == 0 and module.out_channels % 3 == 0
    assert model.num_features % 12 == 0


def test_width_multiplier_must_be_positive():
    for name in SMALL:
        with pytest.raises(ValueError, match="width_multiplier"):
            build(name, width_multiplier=0.0)


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).reshape(1, 6, 1, 1, 1).expand(2, 6, 2, 3, 3).contiguous()
    shuffled = channel_shuffle(x, groups=3)
    assert shuffled[0, :, 0, 0, 0].tolist() == [0, 2, 4, 1, 3, 5]
    with pytest.raises(ValueError, match="divisible"):
        channel_shuffle(x, groups=4)


def test_channel_shuffle_channels_last():
    x = torch.randn(2, 12, 3, 4, 5)
    expected = channel_shuffle(x, groups=3)
    result = channel_shuffle(x.contiguous(memory_format=CL), groups=3)
    assert result.is_contiguous(memory_format=CL)
    assert torch.equal(result, expected)
    assert expected.is_contiguous()


def test_pooled_shortcut_matches_reference_pool_and_strided_conv():
    x = torch.randn(2, 6, 8, 9, 10)
    reference = nn.AvgPool3d(kernel_size=(2, 3, 3), stride=2, padding=(0, 1, 1))(x)
    torch.testing.assert_close(pooled_shortcut(x), reference)
    strided = nn.Conv3d(6, 6, 3, stride=2, padding=1)
    for shape in [(1, 1, 1), (3, 2, 2), (5, 7, 4), (2, 3, 3)]:
        small = torch.randn(1, 6, *shape)
        assert pooled_shortcut(small).shape == strided(small).shape
    # An odd length repeats its last frame: the final window averages that frame with itself.
    odd = torch.randn(1, 6, 3, 4, 4)
    last_frame_twice = odd[:, :, 2:].repeat(1, 1, 2, 1, 1)
    torch.testing.assert_close(pooled_shortcut(odd)[:, :, -1], pooled_shortcut(last_frame_twice)[:, :, 0])
