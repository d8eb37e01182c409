"""Explicit depth padding of 3D convolutions: bf16 weight gradients on the CPU are exact and repeatable."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hf_vssl.models import VSSLConfig, build_backbone
from hf_vssl.models.conv_depth import DepthPaddedConv3d, pad_depth_explicitly


def _weight_grads(conv: nn.Conv3d, x: torch.Tensor, bf16: bool, repeats: int) -> list[torch.Tensor]:
    grads = []
    for _ in range(repeats):
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            conv(x).float().square().mean().backward()
        grads.append(conv.weight.grad.clone())
    return grads


@pytest.mark.parametrize(
    ("kernel", "padding", "depth"),
    [((3, 1, 1), (1, 0, 0), 2), ((3, 3, 3), (1, 1, 1), 2), ((5, 1, 1), (2, 0, 0), 3)],
)
def test_bf16_weight_gradient_at_short_depth_is_repeatable_and_right(kernel, padding, depth):
    torch.manual_seed(0)
    conv = pad_depth_explicitly(nn.Conv3d(72, 32, kernel, padding=padding, bias=False))
    assert type(conv) is DepthPaddedConv3d
    x = torch.randn(4, 72, depth, 4, 4)
    grads = _weight_grads(conv, x, bf16=True, repeats=8)
    reference = _weight_grads(conv, x, bf16=False, repeats=1)[0]
    for grad in grads:  # plain nn.Conv3d: differs between calls, now and then inf/NaN
        assert torch.equal(grad, grads[0])
    torch.testing.assert_close(grads[0], reference, rtol=0.05, atol=0.05 * reference.abs().max().item())


def test_explicit_padding_computes_the_same_function():
    torch.manual_seed(0)
    plain = nn.Conv3d(8, 16, (3, 3, 3), padding=(1, 1, 1), stride=(1, 2, 2))
    padded = pad_depth_explicitly(nn.Conv3d(8, 16, (3, 3, 3), padding=(1, 1, 1), stride=(1, 2, 2)))
    padded.load_state_dict(plain.state_dict())
    for depth in (1, 2, 3, 5):
        x = torch.randn(2, 8, depth, 9, 9)
        torch.testing.assert_close(padded(x), plain(x))
    assert padded.state_dict().keys() == plain.state_dict().keys()


@pytest.mark.parametrize("name", ["r21d", "r3d", "r3d-18", "c3d", "shufflenet", "squeezenet", "mobilenet"])
def test_backbones_are_built_with_explicit_depth_padding(name):
    # R3D's blocks are torchvision Conv3DSimple, a subclass of nn.Conv3d: those are covered too.
    backbone = build_backbone(VSSLConfig(backbone=name, width_multiplier=0.125))
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv3d)]
    assert convs and all(type(m) is DepthPaddedConv3d for m in convs)


@pytest.mark.parametrize("task", ["prp", "vcop", "rspnet"])
def test_pretraining_models_use_explicit_depth_padding_throughout(task):
    from hf_vssl.pretext.modeling import VSSLForPretraining

    model = VSSLForPretraining(
        VSSLConfig(backbone="r21d", width_multiplier=0.125, num_frames=8, image_size=32, pretext_task=task)
    )
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv3d)]
    plain = [
        name
        for name, m in model.named_modules()
        if not isinstance(m, DepthPaddedConv3d) and isinstance(m, nn.Conv3d) and m.kernel_size[0] > 1
    ]
    assert convs and not plain, plain  # PRP's decoder runs its first temporal convolution at depth 2
