"""PRP, VCOP and RotNet against their original implementations (docs/pretext_fidelity.md).

Each test pins one setting where the library used to differ from the original code: PRP's
loss frames, target range, branches and learning rates; VCOP's per-tuple augmentation and
per-position backbone passes; RotNet's batching; and, for all three, per-step randomness from
the step's generator and a model that is whole after ``from_pretrained``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hf_vssl  # noqa: F401  (registers the Auto classes)
from hf_vssl import VSSLConfig, VSSLModel
from hf_vssl.data.batch_augment import build_batch_augment
from hf_vssl.data.transforms import TRANSFORM_PRESETS, build_loader_transform, build_transform
from hf_vssl.models.processing_vssl import VIDEO_MEAN, VIDEO_STD
from hf_vssl.pretext import VSSLForPretraining, build_pretext_task
from hf_vssl.pretext.prp import chunk_motion_weights
from hf_vssl.training.optim import build_optimizer, build_scheduler, resolve_optimizer_settings

T, SIZE = 8, 32
TINY = {"backbone": "r21d", "width_multiplier": 0.125, "num_frames": T, "image_size": SIZE}
TASKS = ("prp", "vcop", "rotnet")


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def model_for(task: str, **pretext_config) -> VSSLForPretraining:
    return VSSLForPretraining(VSSLConfig(**TINY, pretext_task=task, pretext_config=pretext_config or None))


def batch_for(model: VSSLForPretraining, batch: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch shaped as the data layer collates the task's plans (random normalised pixels)."""
    sampler = model.sampler()
    rng = np.random.default_rng(seed)
    plans = [sampler.plan(128, rng) for _ in range(batch)]
    clips, frames = len(plans[0].indices), len(plans[0].indices[0])
    shape = (batch, clips, frames, 3, SIZE, SIZE) if clips > 1 else (batch, frames, 3, SIZE, SIZE)
    out = {"pixel_values": torch.randn(shape, generator=torch.Generator().manual_seed(seed))}
    out.update({key: torch.tensor([plan.info[key] for plan in plans]) for key in plans[0].info})
    return out


class FixedOutput(nn.Module):
    """A stand-in decoder that returns a given tensor (to read the loss's gradient per frame)."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output

    def forward(self, feature_map, size):
        return self.output


def prp_with_decoder(output: torch.Tensor, **config):
    backbone = VSSLModel(VSSLConfig(**TINY))
    task = build_pretext_task("prp", backbone.num_features, config)
    task.decoder = FixedOutput(output)
    return backbone, task


# -- PRP ----------------------------------------------------------------------------------------


def test_prp_loss_leaves_out_the_averaged_frames_of_rate_1():
    pixel_values = torch.randn(2, 2 * T, 3, SIZE, SIZE)
    reconstruction = torch.zeros(2, 2 * T, 3, SIZE, SIZE, requires_grad=True)
    backbone, task = prp_with_decoder(reconstruction)
    loss, _ = task(backbone, pixel_values, rate=torch.tensor([0, 1]), interpolate=torch.tensor([1, 0]))
    (grad,) = torch.autograd.grad(loss, reconstruction)
    per_frame = grad.abs().flatten(2).sum(-1)  # (B, 2T)
    assert (per_frame[0, 1::2] == 0).all(), "rate 1: the averaged in-between frames carry no loss"
    assert (per_frame[0, 0::2] > 0).all() and (per_frame[1] > 0).all()

    _, old = prp_with_decoder(reconstruction, reconstruct_averaged_frames=True)
    loss, _ = old(backbone, pixel_values, rate=torch.tensor([0, 1]), interpolate=torch.tensor([1, 0]))
    (grad,) = torch.autograd.grad(loss, reconstruction)
    assert grad[0, 1::2].abs().sum() > 0, "the named option puts them back"


def test_prp_reconstructs_frames_in_unit_range():
    pixel_values = torch.rand(2, 2 * T, 3, SIZE, SIZE)
    mean, std = torch.tensor(VIDEO_MEAN).view(1, 1, 3, 1, 1), torch.tensor(VIDEO_STD).view(1, 1, 3, 1, 1)
    normalised = (pixel_values - mean) / std
    backbone, task = prp_with_decoder(pixel_values)  # a perfect reconstruction of the [0, 1] frames
    _, metrics = task(backbone, normalised, rate=torch.tensor([1, 2]), interpolate=torch.tensor([0, 0]))
    assert float(metrics["reconstruction_loss"]) < 1e-10
    _, legacy = prp_with_decoder(pixel_values, normalized_targets=True)
    _, metrics = legacy(backbone, normalised, rate=torch.tensor([1, 2]), interpolate=torch.tensor([0, 0]))
    assert float(metrics["reconstruction_loss"]) > 0.1


def test_prp_has_separate_branches_and_a_nonnegative_original_decoder():
    model = model_for("prp").train()
    task = model.pretext
    assert isinstance(task.classification_branch[0], nn.Conv3d)
    assert task.classification_branch[0] is not task.reconstruction_branch[0]
    batch = batch_for(model)
    out = model(**batch)
    out.loss.backward()
    for branch in (task.classification_branch, task.reconstruction_branch):
        assert branch[0].weight.grad.abs().sum() > 0
    with torch.no_grad():
        output = model.vssl(batch["pixel_values"][:, 0::2], return_dict=True).last_hidden_state
        frames = task.decoder(task.reconstruction_branch(output), (2 * T, SIZE, SIZE))
    assert frames.shape == (4, 2 * T, 3, SIZE, SIZE) and frames.min() >= 0  # ReLU output, like [0, 1] targets
    assert not hasattr(model_for("prp", separate_branches=False).pretext, "classification_branch")


def test_prp_rate_classifier_trains_at_ten_times_the_base_rate():
    model = model_for("prp")
    settings = resolve_optimizer_settings(model.pretext.optimizer_defaults, total_batch_size=16)
    assert settings["learning_rate"] == pytest.approx(0.02)  # 0.01 per 8 clips, the original's rate
    optimizer = build_optimizer(model, settings)
    classifier = {id(p) for p in model.pretext.classifier.parameters()}
    rates = {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            rates[id(parameter)] = group["lr"]
    assert all(rates[i] == pytest.approx(0.2) for i in classifier)
    assert all(rate == pytest.approx(0.02) for key, rate in rates.items() if key not in classifier)
    assert len(rates) == sum(1 for p in model.parameters() if p.requires_grad)
    scheduler = build_scheduler(optimizer, "cosine", total_steps=10, warmup_ratio=0.0)
    optimizer.step()
    scheduler.step()
    lrs = sorted({group["lr"] for group in optimizer.param_groups})
    assert lrs[1] == pytest.approx(10 * lrs[0])  # the schedule keeps the ratio


def test_prp_motion_mask_marks_the_moving_region_per_chunk():
    target = torch.zeros(2, 2 * T, 3, SIZE, SIZE)
    target[:, :, :, :8, :8] = torch.linspace(0, 1, 2 * T).view(1, -1, 1, 1, 1)  # the top-left corner changes
    weights = chunk_motion_weights(target, torch.tensor([0, 3]), (1, 2, 4, 8), 0.8, 2.0)
    assert weights.shape == target.shape
    assert weights.max() <= 2.0 + 1e-5 and weights.min() >= 0.8 - 1e-5
    assert (weights[:, :, :, 1, 1] > 1.5).all() and (weights[:, :, :, 28, 28] < 0.81).all()
    still = chunk_motion_weights(
        torch.rand(1, 1, 1, 1, 1).expand(1, 2 * T, 3, SIZE, SIZE), torch.tensor([1]), (1, 2, 4, 8), 0.8, 2.0
    )
    assert torch.equal(still, torch.ones_like(still))


def test_prp_original_augmentation_is_the_centre_crop():
    assert model_for("prp").transform_preset == "prp"
    assert model_for("prp", augmentation="original").transform_preset == "eval"
    with pytest.raises(ValueError, match="augmentation must be one of"):
        model_for("prp", augmentation="random")


# -- VCOP ---------------------------------------------------------------------------------------


def recorded_draws(preset: str, tuples: int = 8, clips: int = 3):
    """The crop box and parameters each clip of ``tuples`` VCOP-style samples was transformed with."""
    transform = build_transform(preset, SIZE)
    draws = []

    def record(video, box, params):
        draws.append((tuple(box), params))
        return torch.zeros(1)

    transform.augment.apply = record  # the instance attribute shadows the method: a spy
    torch.manual_seed(0)
    video = torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8)
    for _ in range(tuples):
        transform.transform_clips([video] * clips)
    return [draws[i : i + clips] for i in range(0, len(draws), clips)]


def test_vcop_tuple_shares_one_flip_rotation_and_jitter_but_crops_each_clip():
    shared = recorded_draws("vcop")
    for tuple_draws in shared:
        first = tuple_draws[0][1]
        for _, params in tuple_draws[1:]:
            assert all(torch.equal(a, b) for a, b in zip(first, params))
    assert any(len({box for box, _ in tuple_draws}) > 1 for tuple_draws in shared), "crops stay per clip"
    assert len({bool(t[0][1].flip) for t in shared}) == 2  # flips still vary between tuples
    independent = recorded_draws("rotnet")  # single-clip presets keep one draw per clip
    assert any(not torch.equal(t[0][1].angle, t[1][1].angle) for t in independent)


def test_vcop_device_augmentation_shares_parameters_within_a_tuple():
    assert TRANSFORM_PRESETS["vcop"](SIZE).per_sample_params
    loader = build_loader_transform("vcop", SIZE)
    torch.manual_seed(0)
    clip = loader(torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8))
    batch = clip.expand(6, 3, *clip.shape).contiguous()  # 6 tuples of 3 identical loader crops
    out = build_batch_augment("vcop", SIZE)(batch, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out[:, 1], out[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(out[:, 2], out[:, 0], rtol=0, atol=0)
    assert not torch.allclose(out[0, 0], out[1, 0])  # tuples differ from each other


def test_vcop_runs_the_backbone_once_per_tuple_position():
    calls = []
    for joint in (False, True):
        model = model_for("vcop", joint_batch=joint).train()
        handle = model.vssl.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
        model(**batch_for(model))
        handle.remove()
    assert calls == [4, 4, 4, 12]  # three passes of B clips (BatchNorm per position), or one of B * N


# -- RotNet -------------------------------------------------------------------------------------


def test_rotnet_all_rotations_puts_every_rotation_of_each_clip_in_the_batch():
    model = model_for("rotnet", all_rotations=True).train()
    task = model.pretext
    seen = []
    handle = model.vssl.register_forward_hook(lambda m, args, out: seen.append(args[0].detach().clone()))
    batch = batch_for(model, batch=2)
    model(**batch)
    handle.remove()
    (clips,) = seen
    assert clips.shape[0] == 8
    for b in range(2):
        for k in range(4):
            assert torch.equal(clips[4 * b + k], torch.rot90(batch["pixel_values"][b], k, dims=(-2, -1)))
    assert isinstance(task.classifier.layers[0], nn.Linear) and task.classifier.layers[0].out_features == 64


def test_rotnet_uses_the_original_optimiser():
    settings = resolve_optimizer_settings(model_for("rotnet").pretext.optimizer_defaults, total_batch_size=8)
    assert settings["learning_rate"] == pytest.approx(0.1 * 8 / 32) and settings["weight_decay"] == 1e-3


# -- all three: per-step randomness, buffers after from_pretrained --------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_forward_draws_only_from_the_step_generator(task):
    model = model_for(task).train()
    batch = batch_for(model)
    if task == "rotnet":
        batch.pop("rotation", None)
    results = []
    for seed in (3, 3):
        torch.manual_seed(seed)  # the global state must not matter ...
        state = torch.get_rng_state()
        out = model(**batch, generator=torch.Generator().manual_seed(11))
        assert torch.equal(torch.get_rng_state(), state), "... nor be consumed"
        results.append(out.loss.detach())
    assert torch.equal(results[0], results[1])


def test_rotnet_rotations_follow_the_generator():
    task = build_pretext_task("rotnet", 64)
    seen = []

    class Spy(nn.Module):
        def forward(self, clips, return_dict=True):
            seen.append(clips)
            return type("Out", (), {"pooler_output": torch.zeros(clips.shape[0], 64)})()

    clips = torch.randn(16, 2, 3, 8, 8)
    for seed in (0, 0, 1):
        task(Spy(), clips, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[0], seen[2])


@pytest.mark.parametrize("task", TASKS)
def test_save_and_from_pretrained_give_the_same_model(task, tmp_path):
    model = model_for(task).eval()
    assert all(name in model.state_dict() for name, _ in model.named_buffers()), "no non-persistent buffers"
    model.save_pretrained(tmp_path)
    loaded = VSSLForPretraining.from_pretrained(tmp_path).eval()
    batch = batch_for(model)
    if task == "rotnet":
        batch.pop("rotation", None)
    with torch.no_grad():
        expected = model(**batch, generator=torch.Generator().manual_seed(5))
        got = loaded(**batch, generator=torch.Generator().manual_seed(5))
    assert torch.equal(expected.loss, got.loss)
    for key, value in expected.metrics.items():
        assert torch.equal(value, got.metrics[key]), key
