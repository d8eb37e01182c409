"""The medium (C3D, 3D ResNets) and large (Swin, MViT, TimeSformer, ViViT) backbones."""

from __future__ import annotations

import types

import pytest
import torch
from torchvision.models.video import MViT_V2_S_Weights, Swin3D_T_Weights, r2plus1d_18, r3d_18

from hf_vssl.models.backbone_c3d import build_c3d
from hf_vssl.models.backbone_resnet3d import (
    Conv2Plus1DBlock,
    Conv2Plus1DPerConv,
    Conv3x3x3,
    ResNet3D,
    build_r3d,
    build_r3d_18,
    build_r21d,
    build_r21d_18,
    matched_midplanes,
)
from hf_vssl.models.backbone_transformers import build_mvit, build_swin_t, build_timesformer, build_vivit
from hf_vssl.models.backbones import get_backbone_spec
from hf_vssl.utils.profiling import count_gflops, count_parameters

CNN_BUILDERS = {
    "c3d": build_c3d,
    "r3d": build_r3d,
    "r21d": build_r21d,
    "r3d-18": build_r3d_18,
    "r21d-18": build_r21d_18,
}
TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
TINY_KWARGS = {
    "swin-t": {"embed_dim": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]},
    "mvit": {"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]},
    "timesformer": TINY_VIT,
    "vivit": TINY_VIT,
}


def make_config(width=0.125, frames=8, size=32, **kwargs):
    return types.SimpleNamespace(
        width_multiplier=width,
        num_frames=frames,
        image_size=size,
        num_channels=3,
        backbone_kwargs=kwargs or None,
    )


# --- sizes at width 1.0 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params_m", "gflops"), [("c3d", 27.7, 77.2), ("r3d", 14.4, 39.8), ("r21d", 14.4, 42.9)]
)
def test_study_backbones_match_reference_size(name, params_m, gflops):
    model = CNN_BUILDERS[name](make_config(width=1.0))
    assert count_parameters(model) / 1e6 == pytest.approx(params_m, rel=0.03)
    assert count_gflops(model, (1, 3, 16, 112, 112)) == pytest.approx(gflops, rel=0.03)
    assert model.num_features == 512


@pytest.mark.parametrize(("name", "torchvision_builder"), [("r3d-18", r3d_18), ("r21d-18", r2plus1d_18)])
def test_18_layer_resnets_are_torchvision_without_fc(name, torchvision_builder):
    reference = torchvision_builder().eval()
    model = CNN_BUILDERS[name](make_config(width=1.0)).eval()
    fc_params = count_parameters(reference.fc)
    assert count_parameters(model) == count_parameters(reference) - fc_params
    # Same module tree: torchvision's weights load as they are and give the same features.
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    model.load_state_dict(state, strict=True)
    reference.fc = torch.nn.Identity()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x).pooled, reference(x))


def test_resnets_are_one_class_differing_by_conv_builder_and_depth():
    config = make_config()
    expected = {
        "r3d": (Conv3x3x3, (1, 1, 1, 1)),
        "r21d": (Conv2Plus1DPerConv, (1, 1, 1, 1)),
        "r3d-18": (Conv3x3x3, (2, 2, 2, 2)),
        "r21d-18": (Conv2Plus1DBlock, (2, 2, 2, 2)),
    }
    for name, (conv_builder, blocks) in expected.items():
        model = CNN_BUILDERS[name](config)
        assert type(model) is ResNet3D
        assert model.conv_builder is conv_builder and model.blocks_per_stage == blocks
        assert [len(layer) for layer in (model.layer1, model.layer2, model.layer3, model.layer4)] == list(
            blocks
        )


def test_r21d_variants_match_mid_channels_differently():
    study, torchvision_like = build_r21d(make_config(width=1.0)), build_r21d_18(make_config(width=1.0))
    # Stem: the formula on 3x7x7 (VCOP) vs torchvision's fixed 45.
    assert study.stem[0].out_channels == matched_midplanes(3, 64, (3, 7, 7)) == 83
    assert torchvision_like.stem[0].out_channels == 45
    # First block of layer2 (64 -> 128): per conv (230 then 288) vs once per block (230 twice).
    study_block, tv_block = study.layer2[0], torchvision_like.layer2[0]
    assert [study_block.conv1[0][0].out_channels, study_block.conv2[0][0].out_channels] == [230, 288]
    assert [tv_block.conv1[0][0].out_channels, tv_block.conv2[0][0].out_channels] == [230, 230]
    # The VCOP shortcut is factorised too (two 1x1x1 convs), torchvision's is one strided conv.
    assert sum(isinstance(m, torch.nn.Conv3d) for m in study_block.downsample) == 2
    assert sum(isinstance(m, torch.nn.Conv3d) for m in tv_block.downsample) == 1


# --- tiny CNN forward / backward ------------------------------------------------------------


@pytest.mark.parametrize("name", list(CNN_BUILDERS))
def test_tiny_cnn_forward_backward(name):
    model = CNN_BUILDERS[name](make_config())
    x = torch.randn(2, 3, 8, 32, 32, requires_grad=True)
    out = model(x)
    assert out.pooled.shape == (2, model.num_features) == (2, 64)
    assert len(out.stages) == len(model.stage_names) == (5 if name == "c3d" else 4)
    # Stage widths double (C3D: 8, 16, 32, 64, 64) and the last stage is at 1/8 time, 1/16 space.
    assert [s.shape[1] for s in out.stages][:4] == [8, 16, 32, 64]
    assert out.stages[-1].shape[2:] == (1, 2, 2)
    out.pooled.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ["c3d", "r21d"])
def test_cnn_accepts_channels_last_3d(name):
    model = CNN_BUILDERS[name](make_config()).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    model_cl = model.to(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        expected = model(x).pooled
        got = model_cl(x.to(memory_format=torch.channels_last_3d)).pooled
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_c3d_rejects_too_short_clips_clearly():
    with pytest.raises(ValueError, match="at least 8 frames"):
        build_c3d(make_config())(torch.randn(1, 3, 4, 32, 32))


def test_cnn_init_is_kaiming_and_unit_batchnorm():
    model = build_r3d(make_config())
    bn = model.layer1[0].conv1[1]
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(
        bn.bias, torch.zeros_like(bn.bias)
    )
    conv = model.layer4[0].conv1[0]
    fan_out = conv.out_channels * conv.weight[0, 0].numel()
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.15)


# --- transformers -----------------------------------------------------------------------------


def _tiny_transformer(name, frames, size):
    builder = {
        "swin-t": build_swin_t,
        "mvit": build_mvit,
        "timesformer": build_timesformer,
        "vivit": build_vivit,
    }
    return builder[name](make_config(width=1.0, frames=frames, size=size, **TINY_KWARGS[name]))


@pytest.mark.parametrize(
    ("name", "stage_shapes"),
    [
        ("swin-t", [(2, 12, 2, 8, 8), (2, 24, 2, 4, 4), (2, 48, 2, 2, 2), (2, 96, 2, 1, 1)]),
        ("mvit", [(2, 1 + 2 * 8 * 8, 8), (2, 1 + 2 * 4 * 4, 16), (2, 1 + 2 * 2 * 2, 32), (2, 1 + 2, 64)]),
        ("timesformer", [(2, 1 + 4 * 2 * 2, 32)] * 2),
        ("vivit", [(2, 1 + 2 * 2 * 2, 32)] * 2),
    ],
)
def test_tiny_transformer_forward_backward(name, stage_shapes):
    model = _tiny_transformer(name, frames=4, size=32)
    x = torch.randn(2, 3, 4, 32, 32, requires_grad=True)
    out = model(x)
    assert [tuple(s.shape) for s in out.stages] == stage_shapes
    assert len(model.stage_names) == len(stage_shapes)
    assert out.pooled.shape == (2, model.num_features) == (2, stage_shapes[-1][1 if name == "swin-t" else -1])
    out.pooled.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["swin-t", "mvit"])
def test_torchvision_adapter_pooled_equals_wrapped_model(name):
    model = _tiny_transformer(name, frames=4, size=32).eval()
    with torch.no_grad():
        model.model.norm.weight.uniform_(0.5, 2.0)  # make a missed/double final norm visible
        x = torch.randn(2, 3, 4, 32, 32)
        torch.testing.assert_close(model(x).pooled, model.model(x))  # head is Identity


@pytest.mark.parametrize("name", ["timesformer", "vivit"])
def test_hf_adapter_pooled_is_normed_cls_token(name):
    model = _tiny_transformer(name, frames=4, size=32).eval()
    with torch.no_grad():
        model.model.layernorm.weight.uniform_(0.5, 2.0)
        model.model.layernorm.bias.uniform_(-1.0, 1.0)
        x = torch.randn(2, 3, 4, 32, 32)
        reference = model.model(pixel_values=x.transpose(1, 2)).last_hidden_state[:, 0]
        torch.testing.assert_close(model(x).pooled, reference)
    assert model.model.config.num_frames == 4 and model.model.config.image_size == 32


@pytest.mark.parametrize(
    ("name", "weights"),
    [("swin-t", Swin3D_T_Weights.KINETICS400_V1), ("mvit", MViT_V2_S_Weights.KINETICS400_V1)],
)
def test_full_size_torchvision_transformers_match_torchvision_architecture(name, weights):
    builder = build_swin_t if name == "swin-t" else build_mvit
    model = builder(make_config(width=1.0, frames=16, size=224))
    head_params = 768 * 400 + 400  # Kinetics-400 classifier counted in the weights' metadata
    assert count_parameters(model) == weights.meta["num_params"] - head_params
    assert model.num_features == 768


def test_transformer_kwargs_and_shapes_are_validated():
    with pytest.raises(ValueError, match="hidden_sise"):
        build_timesformer(make_config(hidden_sise=32))
    with pytest.raises(ValueError, match="divisible by 32"):
        build_mvit(make_config(frames=4, size=48, **TINY_KWARGS["mvit"]))
    model = _tiny_transformer("mvit", frames=4, size=32)
    with pytest.raises(ValueError, match="built for clips"):
        model(torch.randn(1, 3, 2, 32, 32))


# --- registry minimum clip sizes ------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["c3d", "r3d", "r21d", "r3d-18", "r21d-18", "swin-t", "mvit", "timesformer", "vivit"]
)
def test_registry_minimum_clip_is_accepted(name):
    spec = get_backbone_spec(name)
    config = make_config(frames=spec.min_frames, size=spec.min_size, **TINY_KWARGS.get(name, {}))
    model = spec.builder(config)
    out = model(torch.randn(2, 3, spec.min_frames, spec.min_size, spec.min_size))
    assert out.pooled.shape == (2, model.num_features)
