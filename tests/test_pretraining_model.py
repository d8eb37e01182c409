"""VSSLForPretraining: config handling, forward, checkpoints, backbone export, and DDP pieces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel

import hf_vssl  # noqa: F401  (registers the Auto classes)
from hf_vssl import VSSLConfig, VSSLModel
from hf_vssl.pretext import VSSLForPretraining, VSSLPretrainingOutput, list_pretext_tasks

TINY = {"backbone": "r21d", "width_multiplier": 0.125, "num_frames": 8, "image_size": 32}


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def pretraining_model(task: str, **pretext_config) -> VSSLForPretraining:
    if task in ("tdl", "rspnet"):
        pretext_config.setdefault("queue_size", 32)
    return VSSLForPretraining(VSSLConfig(**TINY, pretext_task=task, pretext_config=pretext_config or None))


def sampled_batch(model: VSSLForPretraining, batch: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    sampler = model.sampler()
    rng = np.random.default_rng(seed)
    plans = [sampler.plan(64, rng) for _ in range(batch)]
    clips, frames = len(plans[0].indices), len(plans[0].indices[0])
    shape = (batch, clips, frames, 3, 32, 32) if clips > 1 else (batch, frames, 3, 32, 32)
    generator = torch.Generator().manual_seed(seed)
    out = {"pixel_values": torch.randn(shape, generator=generator)}
    out.update({key: torch.tensor([plan.info[key] for plan in plans]) for key in plans[0].info})
    return out


def test_unknown_task_and_missing_task_are_refused():
    with pytest.raises(ValueError, match="Valid pretext tasks: rotnet, cvrl, vcop, tdl, prp, rspnet"):
        VSSLForPretraining(VSSLConfig(**TINY, pretext_task="jigsaw"))
    with pytest.raises(ValueError, match=r"needs config.pretext_task"):
        VSSLForPretraining(VSSLConfig(**TINY))
    with pytest.raises(ValueError, match="Valid keys: queue_size, temperature"):
        VSSLForPretraining(VSSLConfig(**TINY, pretext_task="tdl", pretext_config={"queue": 10}))


@pytest.mark.parametrize("task", list_pretext_tasks())
def test_forward_returns_loss_and_detached_metrics(task):
    model = pretraining_model(task).train()
    assert model.vssl is model.base_model and isinstance(model.vssl, VSSLModel)
    assert model.transform_preset == task
    out = model(**sampled_batch(model))
    assert isinstance(out, VSSLPretrainingOutput)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and out.loss.requires_grad
    assert 0.0 <= out.metrics["accuracy"] <= 1.0 and not out.metrics["accuracy"].requires_grad
    out.loss.backward()
    grads = [p.grad for p in model.vssl.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_momentum_encoder_starts_as_a_copy_of_the_initialised_backbone():
    model = pretraining_model("rspnet")
    key_backbone = model.pretext.key_encoder.encoders[0]
    for (name, online), (_, key) in zip(model.vssl.state_dict().items(), key_backbone.state_dict().items()):
        assert torch.equal(online, key), name
        assert online.data_ptr() != key.data_ptr()
    # post_init ran before the copy: the initialised conv weights are He-normal, not zeros/defaults.
    assert model.vssl.state_dict()[next(n for n in model.vssl.state_dict() if n.endswith("weight"))].std() > 0
    assert not any(p.requires_grad for p in model.pretext.key_encoder.parameters())


def test_momentum_encoder_moves_towards_the_query_encoder_during_training():
    model = pretraining_model("tdl").train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    batch = sampled_batch(model)

    def key_weight():
        return next(model.pretext.key_encoder.encoders[0].parameters()).clone()

    start = key_weight()
    for _ in range(2):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    online = next(model.vssl.parameters()).detach()
    moved = key_weight()
    assert not torch.equal(moved, start)
    # EMA with momentum 0.999: the key weights moved by ~0.1% of the distance, never past it.
    assert (moved - start).abs().max() < (online - start).abs().max()
    assert model.pretext.queue.pointer.item() == 8  # two steps of 4 positive keys


def test_save_and_load_round_trip_keeps_momentum_encoder_and_queue(tmp_path):
    model = pretraining_model("rspnet").train()
    model(**sampled_batch(model)).loss.backward()  # one step: the queue pointer moves
    with torch.no_grad():
        next(model.pretext.key_encoder.parameters()).add_(0.5)  # make the key encoder differ from its init
    model.save_pretrained(tmp_path)
    loaded = VSSLForPretraining.from_pretrained(tmp_path)
    assert loaded.config.pretext_task == "rspnet" and loaded.config.pretext_config["queue_size"] == 32
    assert loaded.config.pretext_config == model.pretext.settings.to_dict()  # every resolved setting recorded
    original, restored = model.state_dict(), loaded.state_dict()
    assert set(original) == set(restored)
    assert any("key_encoder" in name for name in original) and "pretext.queue.queue" in original
    for name, value in original.items():
        assert torch.equal(value, restored[name]), name
    assert loaded.pretext.queue.pointer.item() == 4


def test_export_backbone_loads_with_automodel(tmp_path):
    model = pretraining_model("vcop")
    model.export_backbone(tmp_path / "backbone")
    backbone = AutoModel.from_pretrained(tmp_path / "backbone")
    assert type(backbone) is VSSLModel
    assert backbone.config.pretext_task is None and backbone.config.pretext_config is None
    exported = backbone.state_dict()
    assert set(exported) == set(model.vssl.state_dict())
    for name, value in model.vssl.state_dict().items():
        assert torch.equal(value, exported[name]), name
    model.eval(), backbone.eval()
    clip = torch.randn(2, 8, 3, 32, 32)
    torch.testing.assert_close(backbone(clip).pooler_output, model.vssl(clip).pooler_output)


def test_validate_passthrough():
    model = pretraining_model("vcop", num_clips=5)
    with pytest.raises(ValueError, match="num_clips=4 fits"):
        model.validate(video_num_frames=70)
    assert model.min_video_frames() == 5 * 8 + 4 * 8


# -- two gloo processes -----------------------------------------------------------------------


def _distributed_worker(rank: int, world_size: int, init_file: str) -> None:
    import torch.distributed as dist

    from hf_vssl.pretext.contrastive import (
        FeatureQueue,
        batch_shuffle,
        batch_unshuffle,
        concat_all_gather,
        gather_with_grad,
        local_slice,
    )

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        local = torch.full((2, 3), float(rank)) + torch.arange(2.0)[:, None]
        gathered = concat_all_gather(local)
        assert gathered[:, 0].tolist() == [0.0, 1.0, 1.0, 2.0]

        queue = FeatureQueue(size=6, dim=3)
        queue.enqueue(local)
        queue.enqueue(local + 10)
        all_queues = concat_all_gather(queue.queue[None])
        assert torch.equal(all_queues[0], all_queues[1])  # every rank holds the same queue
        # 4 gathered keys per enqueue into 6 slots: the second batch wraps around to slots 0-1.
        assert queue.pointer.item() == 2 and queue.queue[:, 0].tolist() == [11.0, 12.0, 1.0, 2.0, 10.0, 11.0]

        # Shuffle-BN: each rank gets someone's samples; unshuffling restores every rank's own rows.
        torch.manual_seed(rank)  # different local seeds: the broadcast permutation must still agree
        shuffled, unshuffle = batch_shuffle(local)
        assert unshuffle is not None and shuffled.shape == local.shape
        assert torch.equal(local_slice(batch_unshuffle(shuffled * 2, unshuffle)), local * 2)

        # Gradients flow back through the differentiable gather.
        weight = torch.ones(3, requires_grad=True)
        gather_with_grad(local * weight).sum().backward()
        assert weight.grad is not None and weight.grad.abs().sum() > 0

        # Full contrastive steps on both ranks.
        for task in ("cvrl", "rspnet"):
            model = pretraining_model(task).train()
            batch = sampled_batch(model, batch=2, seed=rank)
            out = model(**batch)
            out.loss.backward()
            assert torch.isfinite(out.loss)
        # (Without a DDP wrapper the random initial queues differ; the enqueued keys must agree.)
        assert model.pretext.queue.pointer.item() == 4
        assert torch.equal(*concat_all_gather(model.pretext.queue.queue[None, :4]))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_contrastive_pieces_under_two_gloo_processes(tmp_path):
    torch.multiprocessing.spawn(_distributed_worker, args=(2, str(tmp_path / "init")), nprocs=2, join=True)


def test_pretraining_checkpoint_loads_its_backbone_with_remote_code(tmp_path):
    import os
    import subprocess
    import sys

    from hf_vssl import VSSLConfig, VSSLForPretraining

    model = VSSLForPretraining(
        VSSLConfig(backbone="r3d", width_multiplier=0.125, num_frames=8, image_size=32, pretext_task="rotnet")
    ).eval()
    clip = torch.randn(1, 8, 3, 32, 32)
    with torch.no_grad():
        expected = model.vssl(clip).pooler_output
    model.save_pretrained(tmp_path)
    torch.save({"clip": clip, "expected": expected}, tmp_path / "io.pt")
    script = (
        "import sys; sys.modules['hf_vssl'] = None\n"
        "import torch\nfrom transformers import AutoModel\n"
        f"model = AutoModel.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()\n"
        f"io = torch.load({str(tmp_path / 'io.pt')!r})\n"
        "with torch.no_grad():\n    out = model(io['clip']).pooler_output\n"
        "assert type(model).__name__ == 'VSSLModel' and 'transformers_modules' in type(model).__module__\n"
        "assert torch.allclose(out, io['expected'], rtol=1e-4, atol=1e-5)\nprint('OK')\n"
    )
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stdout + result.stderr
