"""The six pretext tasks: samplers and their labels, on-device targets, heads, losses, shared pieces."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import hf_vssl  # noqa: F401  (registers the Auto classes)
from hf_vssl import VSSLConfig
from hf_vssl.models import VSSLModel
from hf_vssl.pretext import (
    FeatureQueue,
    MomentumEncoder,
    batch_instance_accuracy,
    build_pretext_task,
    concat_all_gather,
    info_nce,
    list_pretext_tasks,
    symmetric_info_nce,
)
from hf_vssl.pretext.prp import PRPTask, motion_weights
from hf_vssl.pretext.rotnet import rotate_clips
from hf_vssl.pretext.sampling import VideoTooShortError

T, SIZE, BATCH = 8, 32, 4
SMALL_QUEUE = {"queue_size": 64}


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def tiny_backbone(backbone: str = "r21d") -> VSSLModel:
    return VSSLModel(VSSLConfig(backbone=backbone, width_multiplier=0.125, num_frames=T, image_size=SIZE))


def make_batch(task, rng: np.random.Generator, batch: int = BATCH, video_frames: int = 200):
    """A batch shaped exactly as the data layer would collate the task's plans (random pixels)."""
    sampler = task.sampler(T)
    plans = [sampler.plan(video_frames, rng) for _ in range(batch)]
    clips, frames = len(plans[0].indices), len(plans[0].indices[0])
    shape = (batch, clips, frames, 3, SIZE, SIZE) if clips > 1 else (batch, frames, 3, SIZE, SIZE)
    info = {key: torch.tensor([plan.info[key] for plan in plans]) for key in plans[0].info}
    return torch.randn(shape), info, plans


def test_registry_lists_the_six_tasks_and_refuses_unknown_names():
    assert list_pretext_tasks() == ["rotnet", "cvrl", "vcop", "tdl", "prp", "rspnet"]
    with pytest.raises(ValueError, match="Valid pretext tasks: rotnet, cvrl, vcop, tdl, prp, rspnet"):
        build_pretext_task("jigsaw", 64)


def test_unknown_setting_lists_valid_keys():
    with pytest.raises(ValueError, match=r"\['num_rotation'\].*Valid keys: num_rotations"):
        build_pretext_task("rotnet", 64, {"num_rotation": 3})


def test_defaults_follow_the_reference():
    assert build_pretext_task("rspnet", 64).settings.to_dict() == {
        "speeds": [1, 2],
        "queue_size": 16384,
        "temperature": 0.07,
        "momentum": 0.999,
        "projection_dim": 128,
        "margin": 2.0,
        "appearance_weight": 1.0,
        "speed_weight": 1.0,
        "head_layers": 1,
    }
    tdl = build_pretext_task("tdl", 64).settings
    assert (tdl.queue_size, tdl.temperature, tdl.momentum) == (500, 0.07, 0.999)
    assert build_pretext_task("cvrl", 64).settings.temperature == 0.1
    assert build_pretext_task("prp", 64).settings.rates == (1, 2, 4, 8)
    assert build_pretext_task("vcop", 64).num_classes == 6


@pytest.mark.parametrize(
    "name, knob, classes",
    [
        ("rotnet", {"num_rotations": 2}, 2),
        ("rotnet", {"num_rotations": 3}, 3),
        ("rotnet", {}, 4),
        ("vcop", {"num_clips": 4}, 24),
        ("vcop", {"num_clips": 5}, 120),
        ("prp", {"rates": [1, 2]}, 2),
        ("prp", {"rates": [1, 4, 8]}, 3),
    ],
)
def test_complexity_knobs_change_the_number_of_classes(name, knob, classes):
    task = build_pretext_task(name, 64, knob)
    assert task.num_classes == classes
    last_linear = [m for m in task.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert last_linear.out_features == classes


def test_rspnet_heads_are_linear_by_default_and_mlp_on_request():
    def linears(task):
        return [[type(m) for m in head.mlp] for head in task.heads]

    assert linears(build_pretext_task("rspnet", 64)) == [[torch.nn.Linear]] * 2
    assert (
        linears(build_pretext_task("rspnet", 64, {"head_layers": 2}))
        == [[torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]] * 2
    )
    with pytest.raises(ValueError, match="head_layers must be 1"):
        build_pretext_task("rspnet", 64, {"head_layers": 3})


def test_head_widths_scale_with_tiny_backbones():
    assert build_pretext_task("vcop", 512).head.pair_mlp.out_features == 512
    assert build_pretext_task("vcop", 64).head.pair_mlp.out_features == 64
    assert build_pretext_task("cvrl", 512).projector.mlp[0].out_features == 2048
    assert (
        build_pretext_task("cvrl", 512, {"projection_hidden_size": 300}).projector.mlp[0].out_features == 300
    )


# -- samplers and targets -------------------------------------------------------------------


def test_vcop_label_indexes_the_permutation_applied():
    task = build_pretext_task("vcop", 64, {"num_clips": 4, "interval": 3})
    sampler = task.sampler(T, stride=2)
    rng = np.random.default_rng(1)
    permutations = list(itertools.permutations(range(4)))
    seen = set()
    for _ in range(40):
        plan = sampler.plan(120, rng)
        ordered = sorted(plan.indices, key=lambda clip: clip[0])
        order = permutations[plan.info["permutation"]]
        for shown, position in zip(plan.indices, order):
            np.testing.assert_array_equal(shown, ordered[position])
        steps = np.diff([clip[0] for clip in ordered])
        assert (steps == (T - 1) * 2 + 1 + 3).all()  # clip span at stride 2 + interval
        assert all((np.diff(clip) == 2).all() and clip.max() < 120 for clip in plan.indices)
        seen.add(plan.info["permutation"])
    assert len(seen) > 10


def test_prp_rate_label_matches_the_stride_of_the_input_frames():
    task = build_pretext_task("prp", 64)
    sampler = task.sampler(T, stride=1)
    rng = np.random.default_rng(0)
    for _ in range(40):
        plan = sampler.plan(100, rng)
        (clip,) = plan.indices
        rate = task.settings.rates[plan.info["rate"]]
        assert len(clip) == 2 * T and clip.max() < 100
        assert (np.diff(clip[0::2]) == rate).all()  # the model's input: every other frame
        if rate == 1:
            assert plan.info["interpolate"] == 1 and (clip[0::2] == clip[1::2]).all()
        else:
            assert plan.info["interpolate"] == 0 and (np.diff(clip) == rate // 2).all()


def test_prp_interpolates_missing_target_frames_only_where_asked():
    clip = torch.arange(8.0).repeat_interleave(2).view(1, 16, 1, 1, 1).expand(2, 16, 3, 2, 2).clone()
    inputs, target = PRPTask.split_clip(clip, torch.tensor([1, 0]))
    assert inputs.shape == (2, 8, 3, 2, 2)
    assert target[0, :6, 0, 0, 0].tolist() == [0, 0.5, 1, 1.5, 2, 2.5]
    assert target[0, -1, 0, 0, 0] == 7  # no frame after the last one: repeat it
    assert torch.equal(target[1], clip[1])


def test_motion_weights_emphasise_moving_pixels():
    target = torch.zeros(1, 4, 3, 16, 16)
    target[:, 1::2, :, :4, :4] = 1.0  # a flickering corner
    weights = motion_weights(target, 0.8, 2.0, kernel=1)
    assert weights.shape == (1, 4, 1, 16, 16)
    assert torch.isclose(weights.max(), torch.tensor(2.0)) and torch.isclose(weights.min(), torch.tensor(0.8))
    assert weights[0, 0, 0, 0, 0] == 2.0 and weights[0, 0, 0, 10, 10] == 0.8


def test_rotnet_rotates_each_clip_by_its_label():
    task = build_pretext_task("rotnet", 64)
    clips = torch.randn(4, 2, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3])
    rotated = task.rotate(clips, labels)
    for i, k in enumerate(labels.tolist()):
        assert torch.equal(rotated[i], torch.rot90(clips[i], k, dims=(-2, -1)))
    two = build_pretext_task("rotnet", 64, {"num_rotations": 2})
    assert torch.equal(
        two.rotate(clips, torch.tensor([1, 0, 1, 0]))[0], torch.rot90(clips[0], 2, dims=(-2, -1))
    )
    rect = torch.randn(2, 2, 3, 8, 6)
    assert torch.equal(two.rotate(rect, torch.tensor([1, 0]))[0], torch.rot90(rect[0], 2, dims=(-2, -1)))
    with pytest.raises(ValueError, match="square"):
        task.rotate(rect, torch.tensor([1, 0]))
    assert torch.equal(rotate_clips(clips, torch.zeros(4, dtype=torch.long)), clips)


def test_rspnet_clips_play_at_the_labelled_speeds():
    """The sampler's two windows, cut by the task on the device, give the query and the key at
    speed a and the other-speed key at speed b, from the key's window (same start)."""
    task = build_pretext_task("rspnet", 64)
    sampler = task.sampler(T, stride=2)
    rng = np.random.default_rng(3)
    plans = [sampler.plan(60, rng) for _ in range(30)]
    # Each "frame" of a window carries its video frame index, so the cut shows which frames it read.
    windows = torch.tensor(np.stack([np.stack(plan.indices) for plan in plans]), dtype=torch.float32)
    windows = windows.view(*windows.shape, 1, 1, 1)
    same = torch.tensor([plan.info["query_speed"] for plan in plans])
    other = torch.tensor([plan.info["other_speed"] for plan in plans])
    query, key, other_key = (
        clip.view(len(plans), T).long().numpy() for clip in task.cut_clips(windows, same, other)
    )
    for i, plan in enumerate(plans):
        a = task.settings.speeds[plan.info["query_speed"]] * 2
        b = task.settings.speeds[plan.info["other_speed"]] * 2
        assert a != b
        assert (
            (np.diff(query[i]) == a).all()
            and (np.diff(key[i]) == a).all()
            and (np.diff(other_key[i]) == b).all()
        )
        assert query[i][0] == plan.indices[0][0] and key[i][0] == other_key[i][0] == plan.indices[1][0]
        assert max(window.max() for window in plan.indices) < 60
    assert len(plans[0].indices[0]) == 12  # 8 frames at 1x and 2x share 4: the window decodes 12, not 16


def test_tdl_negative_starts_two_or_more_frames_from_the_anchor():
    """As the reference (start distance >= 2, overlap allowed), every allowed start reachable."""
    sampler = build_pretext_task("tdl", 64).sampler(T)
    rng = np.random.default_rng(0)
    offsets = []
    for _ in range(2000):
        anchor, positive, negative = sampler.plan(17, rng).indices
        np.testing.assert_array_equal(anchor, positive)
        assert (np.diff(negative) == 1).all() and max(anchor.max(), negative.max()) < 17
        offsets.append(int(negative[0]) - int(anchor[0]))
    assert min(abs(o) for o in offsets) == 2 and {-9, -2, 2, 9} <= set(offsets)
    assert any(abs(o) < T for o in offsets)  # overlapping intervals are allowed
    disjoint = build_pretext_task("tdl", 64, {"negative_min_offset": T}).sampler(T)
    for _ in range(50):
        anchor, _, negative = disjoint.plan(17, rng).indices
        assert not set(anchor) & set(negative)
    with pytest.raises(VideoTooShortError):
        sampler.plan(T + 1, rng)  # one start too few for a second one 2 frames away


def test_cvrl_interval_distribution_decreases_linearly():
    sampler = build_pretext_task("cvrl", 64).sampler(T)
    rng = np.random.default_rng(0)
    distances = np.array(
        [
            abs(int(p.indices[1][0]) - int(p.indices[0][0]))
            for p in (sampler.plan(108, rng) for _ in range(4000))
        ]
    )
    max_distance = 108 - T
    assert distances.max() <= max_distance
    assert abs(distances.mean() - max_distance / 3) < 3  # mean of p(t) ∝ (M - t) is M / 3
    histogram = np.histogram(distances, bins=4, range=(0, max_distance))[0]
    assert (np.diff(histogram) < 0).all()


@pytest.mark.parametrize(
    "name, config, frames, video, hint",
    [
        ("vcop", {"num_clips": 5}, 16, 100, "num_clips=4 fits"),
        ("prp", {}, 16, 64, r"rates=\[1, 2, 4\] fit"),
        ("tdl", {}, 16, 17, "num_frames<=15"),
        ("rspnet", {}, 16, 20, "num_frames<=10"),
    ],
)
def test_validate_refuses_impossible_settings_with_a_way_out(name, config, frames, video, hint):
    task = build_pretext_task(name, 64, config)
    with pytest.raises(ValueError, match=hint) as error:
        task.validate(frames, video)
    assert f"at least {task.min_video_frames(frames)} frames" in str(error.value)
    with pytest.raises(VideoTooShortError):
        task.sampler(frames).plan(video, np.random.default_rng(0))
    task.validate(frames, task.min_video_frames(frames))  # exactly enough is fine


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="rates"):
        build_pretext_task("prp", 64, {"rates": [1, 3]})
    with pytest.raises(ValueError, match="num_rotations"):
        build_pretext_task("rotnet", 64, {"num_rotations": 5})


# -- shared contrastive pieces ---------------------------------------------------------------


def test_feature_queue_wraps_around():
    queue = FeatureQueue(size=5, dim=2)
    keys = torch.arange(12.0).view(6, 2)
    queue.enqueue(keys[:3])
    assert queue.pointer.item() == 3 and torch.equal(queue.queue[:3], keys[:3])
    queue.enqueue(keys[3:6])  # slots 3, 4, then wraps to 0
    assert queue.pointer.item() == 1
    assert torch.equal(queue.queue, torch.stack([keys[5], keys[1], keys[2], keys[3], keys[4]]))
    queue.enqueue(torch.arange(14.0).view(7, 2))  # larger than the queue: the newest 5 remain
    assert sorted(queue.queue[:, 0].tolist()) == [4, 6, 8, 10, 12]
    assert {"queue", "pointer"} <= set(queue.state_dict())


def test_momentum_update_is_an_ema():
    online = torch.nn.Linear(3, 2)
    ema = MomentumEncoder(online, momentum=0.9)
    assert all(not p.requires_grad for p in ema.parameters())
    before = ema.encoders[0].weight.clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    ema.update(online)
    torch.testing.assert_close(ema.encoders[0].weight, 0.9 * before + 0.1 * online.weight)
    assert ema.encoders[0].weight.data_ptr() != online.weight.data_ptr()


def test_info_nce_and_gather_in_one_process():
    x = torch.randn(4, 3)
    assert concat_all_gather(x) is x
    q = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    loss, acc = info_nce(q, q, torch.nn.functional.normalize(torch.randn(16, 8), dim=1), temperature=0.07)
    assert acc == 1.0 and loss < 0.5
    loss, acc = symmetric_info_nce(q, q.clone(), temperature=0.1)
    assert acc == 1.0
    manual = torch.nn.functional.cross_entropy(
        (torch.cat([q, q]) @ torch.cat([q, q]).t() / 0.1).fill_diagonal_(float("-inf")),
        torch.tensor([4, 5, 6, 7, 0, 1, 2, 3]),
    )
    torch.testing.assert_close(loss, manual)


def test_batch_instance_accuracy_counts_own_key_as_nearest():
    q = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
    assert batch_instance_accuracy(q, q) == 1.0
    assert batch_instance_accuracy(q, q.roll(1, dims=0)) == 0.0  # every own key replaced by another's
    keys = q.clone()
    keys[0] = -q[0]  # query 0's own key now points away: another key is nearer
    assert batch_instance_accuracy(q, keys) == pytest.approx(5 / 6)


@pytest.mark.parametrize("name", ["rspnet", "tdl"])
def test_moco_tasks_report_batch_accuracy(name):
    """batch_accuracy compares each query with the batch's positive keys (clip 1 of each sample):
    with the key encoder still equal to the query encoder (eval mode: no EMA step, running BN
    statistics), a positive clip equal to the query clip is always found, one from another
    sample never."""
    torch.manual_seed(0)
    backbone = tiny_backbone()
    task = build_pretext_task(name, backbone.num_features, dict(SMALL_QUEUE))
    task.attach_backbone(backbone)
    backbone.eval()
    task.eval()
    pixel_values, info, _ = make_batch(task, np.random.default_rng(0))
    if (
        name == "rspnet"
    ):  # one speed for all, so a key cut from another sample's window is that sample's query
        info = {
            "query_speed": torch.zeros(BATCH, dtype=torch.long),
            "other_speed": torch.ones(BATCH, dtype=torch.long),
        }
    own = pixel_values.clone()
    own[:, 1] = own[:, 0]
    _, metrics = task(backbone, own, **info)
    assert float(metrics["batch_accuracy"]) == 1.0
    other = pixel_values.clone()
    other[:, 1] = other[:, 0].roll(1, dims=0)
    _, metrics = task(backbone, other, **info)
    assert float(metrics["batch_accuracy"]) == 0.0


# -- every task end to end ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list_pretext_tasks())
def test_task_overfits_a_fixed_batch(name):
    torch.manual_seed(0)
    backbone = tiny_backbone()
    config = dict(SMALL_QUEUE) if name in ("tdl", "rspnet") else {}
    task = build_pretext_task(name, backbone.num_features, config)
    task.attach_backbone(backbone)
    pixel_values, info, _ = make_batch(task, np.random.default_rng(0))
    if name == "rotnet":
        info["rotation"] = torch.tensor([0, 1, 2, 3])
    queue = getattr(task, "queue", None)
    initial_queue = queue.queue.clone() if queue is not None else None
    params = [p for p in list(backbone.parameters()) + list(task.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=2e-3)
    losses = []
    for _ in range(20):
        if queue is not None:  # fixed negatives: re-enqueued copies of this batch would become negatives
            queue.queue.copy_(initial_queue)
        loss, metrics = task(backbone, pixel_values, **info)
        assert loss.ndim == 0 and torch.isfinite(loss)
        assert "accuracy" in metrics and all(not v.requires_grad and v.ndim == 0 for v in metrics.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
