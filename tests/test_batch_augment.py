"""Device-side batched augmentation: the split presets (uint8 loader crop + BatchAugment) keep the
per-clip semantics of the fused presets, and a pretraining run with --augment_on device trains and
resumes exactly."""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch

import hf_vssl  # noqa: F401  (registers the Auto classes)
from hf_vssl.data.batch_augment import (
    BatchAugment,
    SeededBatchAugment,
    build_batch_augment,
    resolve_augment_on,
    train_transforms,
)
from hf_vssl.data.transforms import (
    TRANSFORM_PRESETS,
    ClipParams,
    build_loader_transform,
    build_transform,
)
from hf_vssl.models.processing_vssl import VIDEO_MEAN, VIDEO_STD

SIZE = 32
TRAIN_PRESETS = sorted(name for name in TRANSFORM_PRESETS if name != "eval")
LOW = (0 - VIDEO_MEAN[0]) / VIDEO_STD[0]
HIGH = (1 - VIDEO_MEAN[0]) / VIDEO_STD[0]


def random_clip(t=4, h=36, w=48, seed=0):
    return torch.randint(
        0, 256, (t, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def loader_batch(preset, batch=6, seed=0, clips=None):
    """A collated uint8 batch of loader-transformed clips (static frames: every frame identical)."""
    transform = build_loader_transform(preset, SIZE)
    torch.manual_seed(seed)
    items = []
    for i in range(batch * (clips or 1)):
        frame = random_clip(1, seed=seed + i).expand(4, -1, -1, -1).contiguous()
        items.append(transform(frame))
    out = torch.stack(items)
    return out.view(batch, clips, *out.shape[1:]) if clips else out


@pytest.mark.parametrize("preset", TRAIN_PRESETS)
def test_loader_part_is_cheap_uint8_of_a_fixed_size(preset):
    transform = build_loader_transform(preset, SIZE)
    augment = build_batch_augment(preset, SIZE)
    for h, w in ((36, 48), (64, 90), (20, 30)):  # as is, shrunk, enlarged
        out = transform(random_clip(h=h, w=w))
        assert out.dtype == torch.uint8 and out.shape == (4, 3, augment.input_size, augment.input_size)
    assert augment.input_size >= SIZE
    assert (augment.input_size > SIZE) == (augment.spec.rotation_degrees > 0)  # context only for rotations


@pytest.mark.parametrize("preset", TRAIN_PRESETS)
def test_output_shape_dtype_range_and_per_clip_consistency(preset):
    augment = build_batch_augment(preset, SIZE)
    for clips in (None, 2):  # (B, T, C, H, W) and (B, N, T, C, H, W)
        batch = loader_batch(preset, clips=clips)
        out = augment(batch)
        lead = batch.shape[:-4]
        assert out.dtype == torch.float32 and out.shape == (*lead, 4, 3, SIZE, SIZE)
        assert out.min() >= LOW - 1e-4 and out.max() <= HIGH + 1e-4
        flat = out.reshape(-1, 4, 3, SIZE, SIZE)
        for clip in flat:  # static input: all frames of a clip share geometry and colour
            for t in range(1, 4):
                torch.testing.assert_close(clip[t], clip[0], rtol=0, atol=1e-5)


def test_clips_of_a_batch_get_different_parameters():
    augment = build_batch_augment("vcop", SIZE)
    frame = loader_batch("vcop", batch=1)
    batch = frame.expand(16, -1, -1, -1, -1).contiguous()  # one clip, 16 times
    out = augment(batch)
    distinct = {tuple(out[i, 0, :, 5, 5].tolist()) for i in range(16)}
    assert len(distinct) > 8
    params = augment.draw(64)
    assert 0 < int(params.flip.sum()) < 64 and params.angle.unique().numel() == 64
    assert 0 < int(params.jitter.sum()) < 64
    # Multi-clip samples: each clip of a sample its own parameters (VCOP's preset shares them
    # within a tuple, tests/test_pretext_fidelity_classification.py).
    two = batch.view(8, 2, *batch.shape[1:])
    out2 = build_batch_augment("rotnet", SIZE)(two)
    assert not torch.allclose(out2[:, 0], out2[:, 1])


@pytest.mark.parametrize("preset", ["vcop", "cvrl"])
def test_matches_the_per_clip_fused_path_for_the_same_parameters(preset):
    augment = build_batch_augment(preset, SIZE)
    spec = augment.spec
    batch = loader_batch(preset, batch=12, seed=3)
    torch.manual_seed(11)
    params = augment.draw(12)
    if preset == "cvrl":  # make sure every extra shows up in a few clips
        params = params._replace(
            gamma_on=torch.arange(12) % 2 == 0,
            blur=torch.arange(12) % 3 == 0,
            solarize=torch.arange(12) % 4 == 1,
            gray=torch.arange(12) % 5 == 0,
        )
    out = augment.apply(batch, params)
    margin = spec.margin
    for i in range(12):
        one = ClipParams(*(f.double() if f.is_floating_point() else f for f in params.select(i)))
        ref = spec.apply(batch[i], (margin, margin, SIZE, SIZE), one)  # the crop: the centre of its context
        torch.testing.assert_close(out[i], ref, atol=2e-4, rtol=0)


def test_deterministic_under_a_seeded_device_generator():
    augment = build_batch_augment("cvrl", SIZE)
    batch = loader_batch("cvrl", clips=2)
    a = augment(batch, generator=torch.Generator().manual_seed(5))
    b = augment(batch, generator=torch.Generator().manual_seed(5))
    c = augment(batch, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(9)
    d = augment(batch)
    torch.manual_seed(9)
    assert torch.equal(d, augment(batch))  # the device's default generator when none is given
    seeded = SeededBatchAugment(augment, "cpu", seed=1)
    assert torch.equal(seeded(batch, 0, 3), seeded(batch, 0, 3))
    assert not torch.equal(seeded(batch, 0, 3), seeded(batch, 1, 3))
    assert seeded.batch_seed(0, 3) != SeededBatchAugment(augment, "cpu", seed=1, process_index=1).batch_seed(
        0, 3
    )


def test_loader_crop_draws_the_crop_like_the_fused_path():
    # Same global seed: the loader part cuts the same crop the fused transform resamples.
    clip = random_clip(2, 37, 48, seed=4)  # short side = resize_size(32): the crop needs no resize
    fused = build_transform("rspnet", SIZE)
    spec = fused.augment
    torch.manual_seed(2)
    u = torch.rand(56, dtype=torch.float64).tolist()
    top, left, h, w = spec.crop_box(37, 48, u)
    assert h == w == SIZE
    torch.manual_seed(2)
    out = build_loader_transform("rspnet", SIZE)(clip)
    m = spec.margin
    torch.testing.assert_close(
        out[..., m:-m, m:-m], clip[..., top : top + h, left : left + w], rtol=0, atol=0
    )


def test_bad_inputs_and_settings_are_refused():
    augment = build_batch_augment("vcop", SIZE)
    with pytest.raises(ValueError, match="uint8"):
        augment(torch.zeros(2, 4, 3, augment.input_size, augment.input_size))
    with pytest.raises(ValueError, match="build_loader_transform"):
        augment(torch.zeros(2, 4, 3, SIZE + 1, SIZE + 1, dtype=torch.uint8))
    with pytest.raises(ValueError, match="eval"):
        build_batch_augment("eval", SIZE)
    with pytest.raises(ValueError, match="valid presets"):
        build_loader_transform("simclr", SIZE)
    with pytest.raises(ValueError, match="augment_on"):
        resolve_augment_on("gpu", "cpu")
    assert resolve_augment_on("auto", "cpu") == "loader" and resolve_augment_on("auto", "cuda:0") == "device"
    transform, device_augment = train_transforms("vcop", SIZE, "device", "cpu", train=False)
    assert device_augment is None and transform.preset == "eval"
    transform, device_augment = train_transforms("vcop", SIZE, "device", "cpu")
    assert isinstance(device_augment.augment, BatchAugment) and transform(random_clip()).dtype == torch.uint8


def test_pickles():
    augment = pickle.loads(pickle.dumps(build_batch_augment("cvrl", SIZE)))
    assert augment(loader_batch("cvrl")).shape == (6, 4, 3, SIZE, SIZE)
    loader = pickle.loads(pickle.dumps(build_loader_transform("vcop", SIZE)))
    assert loader(random_clip()).dtype == torch.uint8
    assert isinstance(augment.draw(3), ClipParams)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    augment = build_batch_augment("cvrl", SIZE)
    batch = loader_batch("cvrl", batch=8)
    params = augment.draw(8)
    params = params._replace(gamma_on=torch.arange(8) % 2 == 0, blur=torch.arange(8) % 3 == 0)
    cpu = augment.apply(batch, params)
    cuda = augment.apply(batch.cuda(), ClipParams(*(f.cuda() for f in params)))
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-3, rtol=0)


# -- the training loop ------------------------------------------------------------------------


@pytest.mark.slow
def test_pretraining_with_device_augmentation_runs_and_resumes_exactly(tmp_path, tiny_corpus):
    from safetensors.torch import load_file

    from hf_vssl.training.arguments import parse_args
    from hf_vssl.training.pretraining import PretrainingArguments, run_pretraining

    common = [
        "--backbone",
        "r21d",
        "--width_multiplier",
        "0.125",
        "--num_frames",
        "8",
        "--image_size",
        "32",
        "--per_device_train_batch_size",
        "4",
        "--dataloader_num_workers",
        "0",
        "--report_to",
        "none",
        "--logging_steps",
        "1",
        "--dataset_root",
        str(tiny_corpus),
        "--pretext_task",
        "cvrl",
        "--augment_on",
        "device",
        "--save_steps",
        "2",
        "--save_total_limit",
        "5",
    ]

    def run(out, *extra):
        return run_pretraining(
            parse_args(PretrainingArguments, [*common, "--max_steps", "8", "--output_dir", str(out), *extra])
        )

    output = run(tmp_path / "run")
    expected = load_file(output / "model.safetensors")
    logs = (output / "log_history.jsonl").read_text().splitlines()
    assert len(logs) == 8
    # Back to step 4, as if killed there, then resumed: the same weights as the uninterrupted run.
    for path in (output / "checkpoints").iterdir():
        if path.name != "checkpoint-4":
            shutil.rmtree(path)
    (output / "model.safetensors").unlink()
    actual = load_file(run(output, "--resume_from_checkpoint", "latest") / "model.safetensors")
    assert expected.keys() == actual.keys()
    for key in expected:  # weights, momentum encoder and feature queue alike
        assert torch.equal(expected[key], actual[key]), key
