"""bf16 training on the CPU: the oneDNN weight-gradient bug that ``models.backbone_base.Conv3d`` avoids.

oneDNN (torch 2.14) returns garbage weight gradients (1e34, inf, NaN, different on every call)
for a bf16 3D convolution whose input is shorter in time than the kernel. R(2+1)D's deeper
temporal convolutions see 2 frames of an 8-frame clip, so bf16 pretraining on the CPU diverged
or resumed inexactly. These tests fail with a plain ``nn.Conv3d``.
"""

import pytest
import torch
from torch import nn

from hf_vssl import VSSLConfig, VSSLModel
from hf_vssl.models.backbone_base import Conv3d, use_safe_conv3d


def _weight_grad(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    conv.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    out.float().square().mean().backward()
    return conv.weight.grad.clone()


@pytest.mark.parametrize("kernel", [(3, 1, 1), (3, 3, 3)])
def test_short_clip_weight_gradient_is_finite_and_close_to_fp32(kernel):
    torch.manual_seed(0)
    conv = use_safe_conv3d(nn.Conv3d(64, 32, kernel, padding=tuple(k // 2 for k in kernel), bias=False))
    assert isinstance(conv, Conv3d)
    x = torch.randn(4, 64, 2, 7, 7)  # 2 frames < a temporal kernel of 3
    reference = torch.autograd.grad(nn.functional.conv3d(x, conv.weight, padding=conv.padding).square().mean(),
                                    conv.weight)[0]
    for _ in range(3):
        grad = _weight_grad(conv, x)
        assert torch.isfinite(grad).all()
        torch.testing.assert_close(grad, reference, rtol=2e-2, atol=1e-4)


def test_long_clips_keep_bf16():
    conv = use_safe_conv3d(nn.Conv3d(8, 8, (3, 1, 1), padding=(1, 0, 0)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(torch.randn(1, 8, 4, 5, 5)).dtype == torch.bfloat16  # the fast path stays bf16
        assert conv(torch.randn(1, 8, 2, 5, 5)).dtype == torch.float32   # the short clip runs in fp32


def test_r21d_bf16_gradients_are_deterministic():
    torch.manual_seed(0)
    model = VSSLModel(VSSLConfig(backbone="r21d", width_multiplier=0.25, num_frames=8, image_size=56))
    assert all(isinstance(m, Conv3d) for m in model.modules() if isinstance(m, nn.Conv3d))
    x = torch.randn(4, 8, 3, 56, 56)
    grads = []
    for _ in range(2):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x).pooler_output
        out.float().square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.isfinite(grads[0]).all()
    assert torch.equal(grads[0], grads[1])
