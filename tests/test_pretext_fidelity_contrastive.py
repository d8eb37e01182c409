"""RSPNet, TDL and CVRL against their original code (docs/pretext_fidelity.md).

Each test pins one setting the original implementations fix and the library once got wrong:
the other-speed key's augmentation, the heads and their init, TDL's hard negative and mixup,
CVRL's head depth and loss, the optimiser rules, the queues and key encoders after
``from_pretrained``, generator-only randomness and the collapse diagnostics.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hf_vssl  # noqa: F401  (registers the Auto classes)
from hf_vssl import VSSLConfig
from hf_vssl.data.batch_augment import build_batch_augment
from hf_vssl.data.transforms import (
    build_loader_transform,
    build_transform,
    fused_spec,
    transform_sample_clips,
)
from hf_vssl.data.transforms.fused import FusedClipTransform
from hf_vssl.data.transforms.params import NUM_CLIP_UNIFORMS
from hf_vssl.pretext import VSSLForPretraining, build_pretext_task
from hf_vssl.pretext.contrastive import logit_gap, symmetric_info_nce
from hf_vssl.pretext.tdl import intra_video_mixup

T, SIZE, BATCH = 8, 32, 4
TINY = {"backbone": "r21d", "width_multiplier": 0.125, "num_frames": T, "image_size": SIZE}
CONTRASTIVE = ("rspnet", "tdl", "cvrl")


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def pretraining_model(task: str) -> VSSLForPretraining:
    config = {"queue_size": 32} if task in ("rspnet", "tdl") else None
    return VSSLForPretraining(VSSLConfig(**TINY, pretext_task=task, pretext_config=config))


def batch_for(model: VSSLForPretraining, seed: int = 0, video_frames: int = 64) -> dict[str, torch.Tensor]:
    """Random pixels shaped as the task's sampler and the data layer would give them."""
    sampler = model.sampler()
    rng = np.random.default_rng(seed)
    plans = [sampler.plan(video_frames, rng) for _ in range(BATCH)]
    shape = (BATCH, len(plans[0].indices), len(plans[0].indices[0]), 3, SIZE, SIZE)
    out = {"pixel_values": torch.randn(shape, generator=torch.Generator().manual_seed(seed))}
    out.update({key: torch.tensor([plan.info[key] for plan in plans]) for key in plans[0].info})
    return out


def augmented_rspnet_batch(model: VSSLForPretraining, where: str) -> dict[str, torch.Tensor]:
    """A batch through the real sampler and the real ``rspnet`` augmentation, one transform call per
    sampled clip as the datasets do (``where="loader"``), or the device half (``"device"``)."""
    torch.manual_seed(0)
    video = torch.randint(0, 256, (60, 3, 48, 64), dtype=torch.uint8)
    sampler, rng = model.sampler(), np.random.default_rng(0)
    plans = [sampler.plan(len(video), rng) for _ in range(BATCH)]
    if where == "loader":
        transform = build_transform("rspnet", SIZE)
        pixels = torch.stack([torch.stack([transform(video[ix]) for ix in plan.indices]) for plan in plans])
    else:
        loader = build_loader_transform("rspnet", SIZE)
        uint8 = torch.stack([torch.stack([loader(video[ix]) for ix in plan.indices]) for plan in plans])
        pixels = build_batch_augment("rspnet", SIZE)(uint8)
    info = {key: torch.tensor([plan.info[key] for plan in plans]) for key in plans[0].info}
    return {"pixel_values": pixels, **info}


# -- RSPNet ------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["loader", "device"])
def test_rspnet_other_speed_key_is_cut_from_the_augmented_key(where, monkeypatch):
    """The key and the other-speed key are read from one augmented tensor: same start frame, same
    crop, flip and colour, so their first frames are identical; only the speed differs."""
    model = pretraining_model("rspnet").train()
    batch = augmented_rspnet_batch(model, where)
    seen = {}
    encode = model.pretext.encode_keys

    def spy(clips, *args, **kwargs):
        seen["keys"] = clips.clone()
        return encode(clips, *args, **kwargs)

    monkeypatch.setattr(model.pretext, "encode_keys", spy)
    model(**batch)
    key, other = seen["keys"].chunk(2)
    assert key.shape == other.shape == (BATCH, T, 3, SIZE, SIZE)
    torch.testing.assert_close(key[:, 0], other[:, 0], rtol=0, atol=0)  # same frame, same augmentation
    fast = torch.where(batch["query_speed"] == 0, 1, 0)  # the 2x clip of each pair
    slow = 1 - fast
    rows = torch.arange(BATCH)
    pairs = torch.stack([key, other], dim=1)
    # Frame 2 of the 1x clip is frame 1 of the 2x clip (identical), not frame 1 of the 1x clip.
    torch.testing.assert_close(pairs[rows, slow, 2], pairs[rows, fast, 1], rtol=0, atol=0)
    assert not torch.equal(pairs[rows, slow, 1], pairs[rows, fast, 1])


def test_rspnet_heads_keep_pytorch_default_init():
    model = pretraining_model("rspnet")
    features = model.vssl.num_features
    bound = 1 / math.sqrt(features)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for head in model.pretext.heads:
        layer = head.output_layer
        assert type(layer) is torch.nn.Linear and layer.in_features == features
        for tensor in (layer.weight, layer.bias):
            assert tensor.abs().max() <= bound
            assert tensor.std() > 0.8 * bound / math.sqrt(3)  # uniform std; N(0, 0.01) is ~7x smaller
    assert model.pretext.heads[0].output_layer.bias.abs().sum() > 0  # not the zero bias of the re-init


def test_rspnet_learning_rate_is_quoted_per_64_samples():
    defaults = build_pretext_task("rspnet", 64).optimizer_defaults
    assert (defaults["learning_rate"], defaults["reference_batch_size"]) == (0.05, 64)
    assert (defaults["momentum"], defaults["weight_decay"]) == (0.9, 1e-4)


def test_rspnet_logs_speed_head_diagnostics_and_warns_on_collapse():
    model = pretraining_model("rspnet").train()
    out = model(**batch_for(model))
    metrics = out.metrics
    for name in (
        "speed_logit_gap",
        "speed_key_cosine",
        "speed_head_weight_norm",
        "speed_head_bias_norm",
        "logit_gap",
    ):
        assert metrics[name].ndim == 0 and not metrics[name].requires_grad, name
    head = model.pretext.heads[1].output_layer
    assert metrics["speed_head_weight_norm"] == pytest.approx(head.weight.norm().item())
    logged = {k: float(v) for k, v in metrics.items()}
    assert model.pretext.check_collapse(logged) is None
    # A speed head that maps every clip to one point: both keys coincide, the ranking sees nothing.
    for task_head in (model.pretext.heads[1], model.pretext.key_encoder.encoders[2]):
        with torch.no_grad():
            task_head.output_layer.weight.zero_()
            task_head.output_layer.bias.fill_(1.0)
    collapsed = {k: float(v) for k, v in model(**batch_for(model, seed=1)).metrics.items()}
    assert collapsed["speed_key_cosine"] == pytest.approx(1.0)
    assert collapsed["speed_logit_gap"] == pytest.approx(0.0, abs=1e-4)
    warning = model.pretext.check_collapse(collapsed)
    assert warning is not None and "speed head looks collapsed" in warning


# -- TDL ---------------------------------------------------------------------------------------


def test_tdl_hard_negative_is_encoded_online_with_gradient():
    model = pretraining_model("tdl").train()
    batch = batch_for(model)
    pixels = batch.pop("pixel_values").requires_grad_(True)
    model(pixel_values=pixels, **batch).loss.backward()
    anchor, positive, negative = pixels.grad.unbind(1)
    assert negative.abs().sum() > 0  # the same-video negative went through the online encoder
    assert anchor.abs().sum() > 0
    assert positive.abs().sum() == 0  # the positive key comes from the momentum encoder, no gradient


def test_tdl_head_is_one_linear_layer_with_l2_and_pytorch_init():
    task = build_pretext_task("tdl", 512)
    (head,) = task.heads
    assert [type(m) for m in head.mlp] == [torch.nn.Linear]
    assert (head.output_layer.in_features, head.output_layer.out_features) == (512, 128)
    assert head.keep_pytorch_init
    out = head(torch.randn(3, 512))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    defaults = task.optimizer_defaults
    assert (defaults["learning_rate"], defaults["weight_decay"], defaults["reference_batch_size"]) == (
        3e-3,
        1e-4,
        8,
    )


def test_tdl_augmentation_is_the_originals():
    """TDL's original: +-10 deg rotation, resize + crop, jitter (0.5, 0.5, 0.25, hue 0.5) on every
    clip, no flip (the study states none for TDL)."""
    spec = fused_spec("tdl", SIZE)
    assert (spec.rotation_degrees, spec.flip_p, spec.jitter_p, spec.crop) == (10.0, 0.0, 1.0, "short_side")
    u = torch.rand(5000, NUM_CLIP_UNIFORMS, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    params = spec.clip_params(u)
    assert params.jitter.all() and not params.flip.any()
    low, high = params.factors.min(dim=0).values, params.factors.max(dim=0).values
    torch.testing.assert_close(low, torch.tensor([0.5, 0.5, 0.75], dtype=torch.float64), atol=2e-3, rtol=0)
    torch.testing.assert_close(high, torch.tensor([1.5, 1.5, 1.25], dtype=torch.float64), atol=2e-3, rtol=0)
    assert params.hue.abs().max() == pytest.approx(math.pi, rel=1e-3)


def test_intra_video_mixup_blends_each_clip_with_one_of_its_own_frames():
    clips = torch.randn(5, T, 3, 4, 4)
    generator = torch.Generator().manual_seed(3)
    mixed = intra_video_mixup(clips, 0.1, generator)
    generator.manual_seed(3)
    weight = torch.rand((), generator=generator) * 0.1
    frames = torch.randint(T, (5,), generator=generator)
    assert 0 < weight < 0.1
    for b in range(5):
        expected = (1 - weight) * clips[b] + weight * clips[b, frames[b]]
        torch.testing.assert_close(mixed[b], expected)
    assert torch.equal(intra_video_mixup(clips, 0.0, generator), clips)


# -- CVRL --------------------------------------------------------------------------------------


def test_cvrl_head_has_three_hidden_layers_and_glorot_init():
    task = build_pretext_task("cvrl", 512)
    layers = list(task.projector.mlp)
    linears = [m for m in layers if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (512, 2048),
        (2048, 2048),
        (2048, 2048),
        (2048, 128),
    ]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in layers) == 3
    assert sum(isinstance(m, torch.nn.ReLU) for m in layers) == 3 and isinstance(layers[-1], torch.nn.Linear)
    model = pretraining_model("cvrl")  # through VSSLPreTrainedModel's init, not just the constructor
    for layer in (m for m in model.pretext.projector.mlp if isinstance(m, torch.nn.Linear)):
        limit = math.sqrt(6 / (layer.in_features + layer.out_features))  # Glorot-uniform bound
        assert layer.weight.abs().max() <= limit and layer.weight.std() > 0.8 * limit / math.sqrt(3)
    assert (
        build_pretext_task("cvrl", 64, {"projection_hidden_layers": 0}).projector.mlp[0].out_features == 128
    )


def test_cvrl_loss_adds_both_directions():
    model = pretraining_model("cvrl").train()
    batch = batch_for(model)
    z = {}
    projector = model.pretext.projector
    hook = projector.register_forward_hook(lambda module, args, out: z.setdefault(len(z), out))
    out = model(**batch)
    hook.remove()
    mean_loss, _ = symmetric_info_nce(z[0], z[1], temperature=0.1)
    torch.testing.assert_close(out.loss, 2 * mean_loss)  # loss_a + loss_b of the reference
    assert {"logit_gap", "concentration"} <= set(out.metrics)


def test_cvrl_augmentation_is_asymmetric_with_strong_jitter():
    """The reference's pair: blur always on view 1, p=0.1 on view 2; solarize p=0.2 on view 2
    only; jitter strength 0.8 (factors in [0.2, 1.8], hue +-0.2 of a turn), p=0.8; grayscale 0.2."""
    spec = fused_spec("cvrl", SIZE)
    n = 20000
    u = torch.rand(n, NUM_CLIP_UNIFORMS, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    first = spec.clip_params(u, torch.zeros(n, dtype=torch.long))
    second = spec.clip_params(u, torch.ones(n, dtype=torch.long))
    assert first.blur.all() and not first.solarize.any()
    assert second.blur.double().mean() == pytest.approx(0.1, abs=0.01)
    assert second.solarize.double().mean() == pytest.approx(0.2, abs=0.01)
    for params in (first, second):
        assert params.jitter.double().mean() == pytest.approx(0.8, abs=0.01)
        assert params.gray.double().mean() == pytest.approx(0.2, abs=0.01)
        assert 0.2 <= params.factors.min() < 0.21 and 1.79 < params.factors.max() <= 1.8
        assert params.hue.abs().max() == pytest.approx(2 * math.pi * 0.2, rel=1e-3)
    # The device half draws each clip of a (B, 2, ...) batch with its position's view.
    drawn = build_batch_augment("cvrl", SIZE).draw(
        2 * 500, generator=torch.Generator().manual_seed(1), clips_per_sample=2
    )
    assert drawn.blur[0::2].all() and not drawn.solarize[0::2].any() and drawn.solarize[1::2].any()


def test_cvrl_loader_path_gives_each_clip_its_view(monkeypatch):
    views = []
    draw = FusedClipTransform._draw

    def spy(self, video, view=None):
        views.append(view)
        return draw(self, video, view)

    monkeypatch.setattr(FusedClipTransform, "_draw", spy)
    video = torch.randint(0, 256, (T, 3, 40, 48), dtype=torch.uint8)
    clips = transform_sample_clips(build_transform("cvrl", SIZE), [video, video])
    assert views == [0, 1] and all(c.shape == (T, 3, SIZE, SIZE) for c in clips)


# -- all three: init, loading, randomness, diagnostics ------------------------------------------


@pytest.mark.parametrize("task", ["rspnet", "tdl"])
def test_key_encoder_starts_as_a_copy_of_backbone_and_heads(task, tmp_path):
    model = pretraining_model(task)

    def assert_copy(m):
        online = [m.vssl, *m.pretext.heads]
        for key_module, module in zip(m.pretext.key_encoder.encoders, online, strict=True):
            keys, queries = key_module.state_dict(), module.state_dict()
            assert keys.keys() == queries.keys()
            for name, value in queries.items():
                assert torch.equal(keys[name], value), name
        assert not any(p.requires_grad for p in m.pretext.key_encoder.parameters())

    assert_copy(model)
    # From a backbone-only checkpoint (built on the meta device, key encoder and heads missing):
    # the key encoder copies the *loaded* backbone, not the meta tensors or a fresh init.
    model.export_backbone(tmp_path / "backbone")
    config = {"queue_size": 32}
    loaded = VSSLForPretraining.from_pretrained(
        tmp_path / "backbone", pretext_task=task, pretext_config=config
    )
    for name, value in model.vssl.state_dict().items():
        assert torch.equal(loaded.vssl.state_dict()[name], value), name
    assert_copy(loaded)


@pytest.mark.parametrize("task", ["rspnet", "tdl"])
def test_queue_after_from_pretrained_is_fresh_or_restored(task, tmp_path):
    model = pretraining_model(task).train()
    model.export_backbone(tmp_path / "backbone")
    fresh = VSSLForPretraining.from_pretrained(
        tmp_path / "backbone", pretext_task=task, pretext_config={"queue_size": 32}
    )
    queue = fresh.pretext.queue
    torch.testing.assert_close(queue.queue.norm(dim=1), torch.ones(32))
    assert queue.pointer.item() == 0 and queue.queue.std(dim=0).min() > 0.01  # random rows, not one row
    # A full checkpoint keeps the trained queue, pointer and the (no longer equal) EMA key encoder.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(2):
        optimizer.zero_grad()
        model(**batch_for(model)).loss.backward()
        optimizer.step()
    model.save_pretrained(tmp_path / "full")
    restored = VSSLForPretraining.from_pretrained(tmp_path / "full")
    assert restored.pretext.queue.pointer.item() == 2 * BATCH
    for name, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], value), name
    key_weight = next(restored.pretext.key_encoder.encoders[0].parameters())
    assert not torch.equal(key_weight, next(restored.vssl.parameters()))


@pytest.mark.parametrize("task", CONTRASTIVE)
def test_generator_alone_drives_the_forward_randomness(task):
    model = pretraining_model(task).train()
    batch = batch_for(model)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    losses = []
    for step, seed in enumerate((5, 5, 6)):
        model.load_state_dict(initial)  # same weights, queue and BN statistics every time
        torch.manual_seed(100 + step)  # a different global state every time
        before = torch.get_rng_state()
        losses.append(model(**batch, generator=torch.Generator().manual_seed(seed)).loss.detach())
        assert torch.equal(torch.get_rng_state(), before), "forward drew from the global RNG"
    assert torch.equal(losses[0], losses[1])
    if task == "tdl":  # the anchor's mixup weight and frame come from the generator
        assert not torch.equal(losses[0], losses[2])


@pytest.mark.parametrize("task", ["tdl", "cvrl"])
def test_instance_tasks_log_logit_gap_and_warn_on_collapse(task):
    model = pretraining_model(task).train()
    metrics = {k: float(v) for k, v in model(**batch_for(model)).metrics.items()}
    assert math.isfinite(metrics["logit_gap"]) and 0 < metrics["concentration"] < 1
    assert model.pretext.check_collapse(metrics) is None
    warning = model.pretext.check_collapse({**metrics, "concentration": 0.999})
    assert warning is not None and "collapsed" in warning


def test_logit_gap_is_zero_for_collapsed_embeddings_and_positive_for_good_ones():
    same = torch.ones(4, 5)
    assert logit_gap(same) == 0
    good = torch.full((4, 5), -1.0)
    good[:, 0] = 1.0
    assert logit_gap(good) == pytest.approx(2.0)
    masked = good.clone()
    masked[:, 1] = torch.finfo(torch.float32).min  # a masked self-similarity is not a negative
    positive = torch.zeros(4, dtype=torch.long)
    assert logit_gap(masked, positive) == pytest.approx(2.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_logit_gap_leaves_out_masked_self_similarities_in_any_dtype(dtype):
    # Under bf16 autocast the masked diagonal holds bf16's minimum, which is not float32's.
    logits = torch.tensor([[2.0, 0.0, 1.0], [1.0, 3.0, 0.0], [0.0, 1.0, 4.0]]).to(dtype)
    logits = logits.masked_fill(torch.eye(3, dtype=torch.bool), torch.finfo(dtype).min)
    positive = torch.tensor([2, 0, 1])  # positives 1.0, 1.0, 1.0; the other negatives 0.0
    gap = logit_gap(logits, positive)
    assert torch.isfinite(gap) and gap.item() == pytest.approx(1.0)
