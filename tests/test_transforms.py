"""Clip-consistent augmentation: one set of random parameters per clip, eval is deterministic;
the fused geometry and colour maps match the sequential torchvision operations they replace."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.nn.functional as NF
from torchvision.transforms.v2 import functional as F

from hf_vssl.data.transforms import (
    TRANSFORM_PRESETS,
    FusedClipTransform,
    apply_colour,
    build_transform,
    crop_affine,
    gaussian_blur,
    grayscale_matrix,
    hue_matrix,
    jitter_affine,
    resample,
    resize_size,
    solarize,
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
    with pytest.raises(ValueError, match=r"cvrl.*eval|eval.*cvrl"):
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


def smooth_clip(t=2, h=36, w=48, seed=0):
    """Low-frequency content, where interpolation schemes agree closely."""
    coarse = torch.rand(t, 3, h // 4 + 2, w // 4 + 2, generator=torch.Generator().manual_seed(seed))
    return (NF.interpolate(coarse, size=(h, w), mode="bicubic").clamp(0, 1) * 255).round().to(torch.uint8)


LOW = (0 - VIDEO_MEAN[0]) / VIDEO_STD[0]
HIGH = (1 - VIDEO_MEAN[0]) / VIDEO_STD[0]


@pytest.mark.parametrize("preset", sorted(TRANSFORM_PRESETS))
def test_outputs_stay_in_the_normalised_range(preset):
    transform = build_transform(preset, SIZE)
    for seed in range(8):
        torch.manual_seed(seed)
        out = transform(random_clip(seed=seed))
        assert out.min() >= LOW - 1e-4 and out.max() <= HIGH + 1e-4


def test_fused_geometry_matches_crop_resize_flip_reference():
    clip = smooth_clip(3)
    # Unit scale (the 112-of-128 crop of 128-pixel-high frames): exactly the cropped pixels.
    for flip in (False, True):
        ours = resample(clip, crop_affine(3, 10, SIZE, SIZE, flip=flip), SIZE)
        ref = F.crop(clip, 3, 10, SIZE, SIZE)
        ref = F.horizontal_flip(ref) if flip else ref
        torch.testing.assert_close(ours, ref.float(), atol=1e-3, rtol=0)
    # Upscaling a non-square crop (CVRL): bilinear resize then flip, away from the crop's edge
    # (the fused map reads the real neighbours there, resize replicates the crop's edge).
    ours = resample(clip, crop_affine(5, 7, 24, 20, flip=True), SIZE, "border")
    ref = F.horizontal_flip(F.resized_crop(clip.float(), 5, 7, 24, 20, [SIZE, SIZE], antialias=False))
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-3, rtol=0)
    # At the frame's corner with border padding, the edge is replicated like resize does.
    ours = resample(clip, crop_affine(0, 0, 24, 20), SIZE, "border")
    ref = F.resized_crop(clip.float(), 0, 0, 24, 20, [SIZE, SIZE], antialias=False)
    torch.testing.assert_close(ours[..., :-1, :-1], ref[..., :-1, :-1], atol=1e-3, rtol=0)


def test_fused_downscale_is_antialiased():
    clip = smooth_clip(1, 128, 160)
    ours = resample(clip, crop_affine(0, 10, 120, 120), SIZE, "border")  # 3.75x smaller
    ref = F.resized_crop(clip.float(), 0, 10, 120, 120, [SIZE, SIZE], antialias=True)
    plain = F.resized_crop(clip.float(), 0, 10, 120, 120, [SIZE, SIZE], antialias=False)
    assert (ours - ref).abs().mean() < 0.6 * (plain - ref).abs().mean()


@pytest.mark.parametrize("angle", [7.0, -9.5])
def test_rotation_matches_torchvision_rotate(angle):
    clip = smooth_clip(2, 40, 40)
    ours = resample(clip, crop_affine(0, 0, 40, 40, angle=angle), 40)
    ref = F.rotate(clip.float(), angle, interpolation=F.InterpolationMode.BILINEAR)
    torch.testing.assert_close(ours, ref, atol=1e-2, rtol=0)
    assert (ours - clip.float()).abs().mean() > 5  # it really rotated


def test_rotation_rotates_a_line():
    clip = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    clip[..., 31:33, :] = 255  # a horizontal bar
    out = resample(clip, crop_affine(0, 0, 64, 64, angle=10.0), 64)[0, 0]
    # Counter-clockwise: the bar rises towards the right (y points down).
    rows = torch.arange(64.0)
    left, right = (out[:, 8] * rows).sum() / out[:, 8].sum(), (out[:, 55] * rows).sum() / out[:, 55].sum()
    assert abs(float(left - right) - 47 * math.tan(math.radians(10))) < 0.3


def test_preset_flips_and_rotates_some_clips():
    ramp = torch.linspace(0, 255, 48).round().to(torch.uint8).expand(2, 3, 36, 48).contiguous()
    transform = FusedClipTransform(SIZE, rotation_degrees=10.0, jitter_p=0.0)
    slopes, tilts = [], []
    for seed in range(16):
        torch.manual_seed(seed)
        out = transform(ramp)[0, 0]
        slopes.append(float(out[16, -4] - out[16, 3]))
        tilts.append(float(out[4, 16] - out[-5, 16]))  # vertical change: only a rotation makes one
    assert min(slopes) < 0 < max(slopes)  # some flipped, some not
    assert len({round(t, 3) for t in tilts}) > 8 and max(abs(t) for t in tilts) > 0.1


def test_jitter_changes_colours_and_geometry_does_not():
    clip = random_clip()
    plain = FusedClipTransform(SIZE, jitter_p=0.0)
    jittered = FusedClipTransform(SIZE, jitter_p=1.0)
    torch.manual_seed(3)
    a = plain(clip)
    torch.manual_seed(3)
    b = jittered(clip)
    assert not torch.allclose(a, b, atol=1e-2)
    # Same crop and flip: the colour map is affine, so the per-channel pixel order is kept.
    corr = torch.corrcoef(torch.stack([a[:, 1].flatten(), b[:, 1].flatten()]))[0, 1]
    assert corr > 0.5


def test_fused_colour_matches_sequential_adjustments():
    # One frame (torchvision's contrast pivot is per frame, ours per clip) with values that no
    # step pushes out of [0, 1], so the sequential clamps never fire.
    image = 0.3 + 0.4 * torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(1))
    b, c, s, hue = 1.2, 0.7, 1.3, 0.4
    adjust = {
        "brightness": F.adjust_brightness,
        "contrast": F.adjust_contrast,
        "saturation": F.adjust_saturation,
    }
    factor = {"brightness": b, "contrast": c, "saturation": s}
    for order in (("brightness", "contrast", "saturation"), ("saturation", "contrast", "brightness")):
        ref = image
        for name in order:
            ref = adjust[name](ref, factor[name])
        ref = apply_colour(ref, hue_matrix(hue), torch.zeros(3))
        matrix, offset = jitter_affine(image.mean(dim=(0, 2, 3)), b, c, s, hue, order)
        torch.testing.assert_close(apply_colour(image, matrix, offset), ref, atol=1e-5, rtol=0)


def test_blur_matches_torchvision():
    video = torch.rand(2, 3, 20, 24)
    torch.testing.assert_close(gaussian_blur(video, 5, 1.3), F.gaussian_blur(video, [5, 5], [1.3, 1.3]))


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_solarize_matches_torchvision(threshold):
    video = torch.rand(2, 3, 8, 8)
    video[0, 0, 0, :3] = torch.tensor([0.0, threshold, 1.0])
    torch.testing.assert_close(solarize(video, threshold), F.solarize(video, threshold))


def test_hue_rotation_keeps_grey_and_brightness():
    matrix = hue_matrix(0.5 * 2 * math.pi * 0.37)
    grey = torch.full((1, 3, 4, 4), 0.5)
    torch.testing.assert_close(apply_colour(grey, matrix, torch.zeros(3)), grey)
    red = torch.tensor([0.8, 0.2, 0.2]).view(1, 3, 1, 1).expand(1, 3, 2, 2).contiguous()
    shifted = apply_colour(red, matrix, torch.zeros(3))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert not torch.allclose(shifted, red)
    torch.testing.assert_close((shifted * luma).sum(1), (red * luma).sum(1), atol=2e-3, rtol=0)


def test_grayscale_is_folded_into_the_colour_map():
    gray = apply_colour(torch.rand(2, 3, 4, 4), grayscale_matrix(), torch.zeros(3))
    torch.testing.assert_close(gray[:, 0], gray[:, 1])
    torch.testing.assert_close(gray[:, 1], gray[:, 2])
    out = FusedClipTransform(SIZE, crop="random_resized", grayscale_p=1.0)(random_clip())
    torch.testing.assert_close(out[:, 0], out[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 1], out[:, 2], atol=1e-5, rtol=0)
    assert out.is_contiguous()


@pytest.mark.parametrize("extra", ["gamma_p", "blur_p", "solarize_p"])
def test_cvrl_extras_apply_when_drawn(extra):
    clip = random_clip()
    base = FusedClipTransform(SIZE, crop="random_resized", jitter_p=0.0)
    with_extra = FusedClipTransform(SIZE, crop="random_resized", jitter_p=0.0, **{extra: 1.0})
    torch.manual_seed(5)
    a = base(clip)
    torch.manual_seed(5)
    b = with_extra(clip)
    assert a.shape == b.shape and not torch.allclose(a, b, atol=1e-3)
    assert b.min() >= LOW - 1e-4 and b.max() <= HIGH + 1e-4
