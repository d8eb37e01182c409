"""Clip-consistent augmentation: one set of random parameters per clip, eval is deterministic."""

from __future__ import annotations

import pickle

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from hf_vssl.data.transforms import (
    TRANSFORM_PRESETS,
    RandomHue,
    RandomVideoGrayscale,
    SeparableGaussianBlur,
    build_transform,
    resize_size,
)
from hf_vssl.models.processing_vssl import VIDEO_MEAN, VIDEO_STD

SIZE = 32


def random_clip(t=4, h=36, w=48, seed=0):
    return torch.randint(
        0, 256, (t, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def static_clip(t=4, h=36, w=48):
    """Every frame identical: any per-frame randomness would make output frames differ."""
    return random_clip(1, h, w).expand(t, -1, -1, -1).contiguous()


@pytest.mark.parametrize("preset", sorted(TRANSFORM_PRESETS))
def test_every_preset_outputs_normalised_float_and_is_clip_consistent(preset):
    transform = build_transform(preset, SIZE)
    for _ in range(5):  # random steps with p < 1 fire on some of the draws
        out = transform(static_clip())
        assert out.dtype == torch.float32 and out.shape == (4, 3, SIZE, SIZE)
        assert type(out) is torch.Tensor  # no tv_tensors leaking into collate
        for t in range(1, 4):
            torch.testing.assert_close(out[t], out[0], rtol=0, atol=0)


@pytest.mark.parametrize("preset", ["vcop", "cvrl"])
def test_two_calls_differ(preset):
    transform = build_transform(preset, SIZE)
    clip = random_clip()
    assert not torch.equal(transform(clip), transform(clip))


def test_global_rng_makes_it_reproducible():
    transform = build_transform("cvrl", SIZE)
    clip = random_clip()
    torch.manual_seed(7)
    a = transform(clip)
    torch.manual_seed(7)
    assert torch.equal(a, transform(clip))


def test_eval_is_deterministic_center_crop_normalised():
    transform = build_transform("vcop", SIZE, train=False)
    assert transform.preset == "eval" and not transform.train
    # 36 x 48 frames, shortest side scaled to resize_size(32) = 37: the center crop of 32 is a
    # 31 x 31 square in the original frames, at rows 2..33, columns 8..39.
    clip = random_clip()
    side = round(SIZE * 36 / resize_size(SIZE))
    top, left = (36 - side) // 2, (48 - side) // 2
    expected = F.resize(clip[:, :, top : top + side, left : left + side], [SIZE, SIZE], antialias=True)
    expected = (expected.float() / 255 - torch.tensor(VIDEO_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        VIDEO_STD
    ).view(1, 3, 1, 1)
    out = transform(clip)
    torch.testing.assert_close(out, expected)
    assert torch.equal(out, transform(clip))


def test_normalisation_constants():
    clip = torch.full((2, 3, 40, 40), 255, dtype=torch.uint8)
    out = build_transform("eval", SIZE)(clip)
    torch.testing.assert_close(out, torch.full_like(out, (1 - VIDEO_MEAN[0]) / VIDEO_STD[0]))


def test_train_crop_keeps_the_resize_ratio():
    # A clip whose left half is black and right half white; a 112-of-128 crop can't be all one side.
    clip = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    clip[..., 32:] = 255
    transform = build_transform("rspnet", SIZE)
    for _ in range(5):
        out = transform(clip)
        assert out.min() < 0 < out.max()


def test_frames_keep_their_own_content():
    """Consistency must not mean copying: distinct frames stay distinct, in order."""
    clip = torch.stack([torch.full((3, 36, 48), v, dtype=torch.uint8) for v in (20, 120, 220)])
    out = build_transform("eval", SIZE)(clip)
    means = out.mean(dim=(1, 2, 3))
    assert means[0] < means[1] < means[2]


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match="cvrl.*eval|eval.*cvrl"):
        build_transform("simclr", SIZE)


def test_bad_inputs_raise():
    transform = build_transform("eval", SIZE)
    with pytest.raises(ValueError, match="uint8"):
        transform(random_clip().float())
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\)"):
        transform(random_clip()[0])
    with pytest.raises(ValueError, match="image_size"):
        build_transform("eval", 0)


def test_transform_pickles():
    transform = pickle.loads(pickle.dumps(build_transform("cvrl", SIZE)))
    assert transform(random_clip()).shape == (4, 3, SIZE, SIZE)


def test_blur_matches_torchvision():
    video = tv_tensors.Video(torch.rand(2, 3, 20, 24))
    ours = SeparableGaussianBlur(5).transform(video, {"sigma": 1.3})
    torch.testing.assert_close(
        ours.as_subclass(torch.Tensor), F.gaussian_blur(video, [5, 5], [1.3, 1.3]).as_subclass(torch.Tensor)
    )


def test_hue_rotation_keeps_grey_and_brightness():
    hue = RandomHue(0.5)
    grey = tv_tensors.Video(torch.full((1, 3, 4, 4), 0.5))
    params = hue.make_params([grey])
    torch.testing.assert_close(
        hue.transform(grey, params).as_subclass(torch.Tensor), grey.as_subclass(torch.Tensor)
    )
    red = tv_tensors.Video(torch.tensor([0.8, 0.2, 0.2]).view(1, 3, 1, 1).expand(1, 3, 2, 2).contiguous())
    shifted = hue.transform(red, params)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert not torch.allclose(shifted, red)
    torch.testing.assert_close((shifted * luma).sum(1), (red * luma).sum(1), atol=2e-3, rtol=0)


def test_grayscale_applies_to_videos():
    video = tv_tensors.Video(torch.rand(2, 3, 4, 4))
    out = RandomVideoGrayscale(p=1.0)(video)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    assert out.is_contiguous()
