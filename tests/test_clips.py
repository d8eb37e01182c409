"""Clip plans, union decoding, the map-style clip dataset and collate."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from hf_vssl.data.clips import (
    ClipPlan,
    ClipSampler,
    ClipTooLongError,
    UniformClipSampler,
    clip_indices,
    decode_plan,
    sample_clips,
)
from hf_vssl.data.datasets import BadVideoTracker, VideoClipDataset, collate_clips
from hf_vssl.data.decoding import VideoDecodeError, open_video
from hf_vssl.data.records import VideoRecord
from hf_vssl.data.video_io import encode_video


def counter_video(path, num_frames=32, step=8, **kwargs):
    """Frame t is grey ``step * t``; ``ids`` below reads t back through codec loss."""
    values = (torch.arange(num_frames) * step).to(torch.uint8)
    encode_video(values.view(-1, 1, 1, 1).expand(num_frames, 3, 16, 16).contiguous(), path, **kwargs)
    return path


def ids(frames, step=8):
    return [round(v) for v in (frames.float().mean(dim=(1, 2, 3)) / step).tolist()]


# --- clip_indices --------------------------------------------------------------------------


def test_clip_indices_inside_video():
    assert clip_indices(3, 4, 2, 20).tolist() == [3, 5, 7, 9]
    assert clip_indices(3, 4, 2, 20).dtype == np.int64


@pytest.mark.parametrize("policy, expected", [("loop", [6, 8, 0, 2]), ("pad", [6, 8, 9, 9])])
def test_clip_indices_short_video_policies(policy, expected):
    assert clip_indices(6, 4, 2, 10, policy).tolist() == expected


def test_clip_indices_error_names_counts():
    with pytest.raises(ClipTooLongError, match="needs 13 frames but the video has only 10") as info:
        clip_indices(6, 4, 2, 10, "error")
    assert (info.value.needed, info.value.available) == (13, 10)
    with pytest.raises(ValueError, match="short_video"):
        clip_indices(0, 4, 1, 10, "wrap")


# --- UniformClipSampler --------------------------------------------------------------------


def test_sampler_is_a_clip_sampler_and_validates():
    assert isinstance(UniformClipSampler(), ClipSampler)
    with pytest.raises(ValueError, match="num_frames"):
        UniformClipSampler(num_frames=0)
    with pytest.raises(ValueError, match="uniform"):
        UniformClipSampler(num_clips=2, interval=4, mode="uniform")
    with pytest.raises(ValueError, match="mode"):
        UniformClipSampler(mode="middle")


def test_min_frames_needed():
    assert UniformClipSampler(16, stride=2).min_frames_needed() == 31
    assert UniformClipSampler(16, num_clips=3, interval=8).min_frames_needed() == 3 * 16 + 2 * 8
    assert UniformClipSampler(16, num_clips=3).min_frames_needed() == 16


def test_random_mode_stays_inside_and_varies():
    sampler = UniformClipSampler(8, stride=2, num_clips=2)
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(50):
        plan = sampler.plan(40, rng)
        assert len(plan.indices) == 2 and plan.info == {}
        for clip in plan.indices:
            assert clip.min() >= 0 and clip.max() < 40 and np.all(np.diff(clip) == 2)
            starts.add(int(clip[0]))
    assert len(starts) > 10 and max(starts) <= 40 - 15


def test_center_mode():
    plan = UniformClipSampler(4, stride=1, mode="center").plan(10, np.random.default_rng(0))
    assert plan.indices[0].tolist() == [3, 4, 5, 6]


def test_uniform_mode_spreads_clips_over_segments():
    plan = UniformClipSampler(4, num_clips=3, mode="uniform").plan(30, np.random.default_rng(0))
    assert [c.tolist() for c in plan.indices] == [[3, 4, 5, 6], [13, 14, 15, 16], [23, 24, 25, 26]]
    # Deterministic: no randomness in uniform mode.
    again = UniformClipSampler(4, num_clips=3, mode="uniform").plan(30, np.random.default_rng(99))
    assert all(np.array_equal(a, b) for a, b in zip(plan.indices, again.indices))


def test_interval_makes_consecutive_clips():
    sampler = UniformClipSampler(4, stride=1, num_clips=3, interval=2, mode="center")
    plan = sampler.plan(sampler.min_frames_needed() + 4, np.random.default_rng(0))
    assert [c.tolist() for c in plan.indices] == [[2, 3, 4, 5], [8, 9, 10, 11], [14, 15, 16, 17]]
    rng = np.random.default_rng(1)
    for _ in range(20):
        clips = sampler.plan(40, rng).indices
        assert all(clips[k + 1][0] - clips[k][-1] == 3 for k in range(2))  # 2 frames skipped between
        assert clips[-1][-1] < 40


def test_jitter_shifts_within_bounds():
    sampler = UniformClipSampler(4, num_clips=3, mode="uniform", jitter=2)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        for k, clip in enumerate(sampler.plan(30, rng).indices):
            base = [3, 13, 23][k]
            assert abs(int(clip[0]) - base) <= 2 and clip[-1] < 30
            seen.add(int(clip[0]) - base)
    assert seen == {-2, -1, 0, 1, 2}


@pytest.mark.parametrize("policy", ["loop", "pad"])
def test_short_video_policies_in_sampler(policy):
    plan = UniformClipSampler(8, stride=2, short_video=policy).plan(5, np.random.default_rng(0))
    clip = plan.indices[0]
    assert len(clip) == 8 and clip.min() >= 0 and clip.max() < 5
    expected = [0, 2, 4, 1, 3, 0, 2, 4] if policy == "loop" else [0, 2, 4, 4, 4, 4, 4, 4]
    assert clip.tolist() == expected


def test_short_video_error_in_sampler():
    sampler = UniformClipSampler(16, num_clips=2, interval=4, short_video="error")
    with pytest.raises(ClipTooLongError, match="needs 36 frames but the video has only 30"):
        sampler.plan(30, np.random.default_rng(0))


# --- decode_plan -------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["mp4", "avi", "webm"])
def test_decode_plan_returns_the_planned_frames(tmp_path, ext):
    path = counter_video(tmp_path / f"c.{ext}", bit_rate=2_000_000, gop_size=8)
    plan = ClipPlan(indices=[np.array([5, 7, 9]), np.array([9, 1, 1, 30])])
    clips = decode_plan(path, plan)
    assert [c.shape[0] for c in clips] == [3, 4] and all(c.dtype == torch.uint8 for c in clips)
    assert [ids(c) for c in clips] == [[5, 7, 9], [9, 1, 1, 30]]


def test_decode_plan_respects_segment(tmp_path):
    path = counter_video(tmp_path / "c.mp4")
    clips = decode_plan(path, ClipPlan([np.array([0, 1, 4])]), start=10, end=15)
    assert ids(clips[0]) == [10, 11, 14]
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        decode_plan(path, ClipPlan([np.array([0, 5])]), start=10, end=15)
    # An annotated end past the file is clamped; a segment outside the file is a bad video.
    assert ids(decode_plan(path, ClipPlan([np.array([1])]), start=30, end=40)[0]) == [31]
    with pytest.raises(VideoDecodeError, match="segment"):
        decode_plan(path, ClipPlan([np.array([0])]), start=32, end=40)


def test_decode_plan_decodes_the_union_once(tmp_path):
    path = counter_video(tmp_path / "c.mp4")
    decoder = open_video(path)
    calls = []
    original = decoder.get_frames_at

    def spy(indices):
        calls.append(list(indices))
        return original(indices)

    decoder.get_frames_at = spy
    clips = decode_plan(decoder, ClipPlan([np.array([4, 6, 8]), np.array([8, 6, 2])]))
    assert calls == [[2, 4, 6, 8]]
    assert [ids(c) for c in clips] == [[4, 6, 8], [8, 6, 2]]


def test_sample_clips_plans_on_segment_length(tmp_path):
    path = counter_video(tmp_path / "c.mp4")
    clips, plan = sample_clips(
        path, UniformClipSampler(4, mode="center"), np.random.default_rng(0), start=20, end=30
    )
    assert plan.indices[0].tolist() == [3, 4, 5, 6]
    assert ids(clips[0]) == [23, 24, 25, 26]
    with pytest.raises(ClipTooLongError, match=r"c.mp4: the clip needs 16"):
        sample_clips(
            path, UniformClipSampler(16, short_video="error"), np.random.default_rng(0), start=20, end=30
        )


# --- VideoClipDataset + collate ----------------------------------------------------------


class RatePlanSampler:
    """A sampler with plan info, as pretext tasks have (e.g. PRP's playback rate)."""

    def plan(self, num_video_frames, rng):
        rate = int(rng.choice([1, 2]))
        start = int(rng.integers(0, num_video_frames - 4 * rate + 1))
        return ClipPlan(
            [start + np.arange(4) * rate, start + np.arange(4)], info={"rate": rate, "scale": 0.5}
        )


def _records(tmp_path, n, bad=()):
    tmp_path.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        path = tmp_path / f"v{i}.mp4"
        if i in bad:
            path.write_bytes(b"")
        else:
            counter_video(path, num_frames=20 + i)
        records.append(VideoRecord(path=str(path), label=i % 3, label_name=f"c{i % 3}", video_id=f"v{i}"))
    return records


def test_dataset_samples_and_collate(tmp_path):
    dataset = VideoClipDataset(
        _records(tmp_path, 4), RatePlanSampler(), transform=lambda c: c.float() / 255, seed=3
    )
    sample = dataset[1]
    assert sample["label"] == 1 and sample["video_id"] == "v1" and sample["index"] == 1
    assert len(sample["clips"]) == 2 and sample["clips"][0].dtype == torch.float32
    batch = collate_clips([dataset[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 2, 4, 3, 16, 16)
    assert batch["labels"].tolist() == [0, 1, 2, 0] and batch["index"].tolist() == [0, 1, 2, 3]
    assert batch["rate"].dtype == torch.int64 and batch["rate"].shape == (4,)
    assert batch["scale"].dtype == torch.float32
    one = collate_clips([VideoClipDataset(_records(tmp_path, 1), UniformClipSampler(4))[0]] * 2)
    assert one["pixel_values"].shape == (2, 4, 3, 16, 16)


def test_dataset_is_deterministic_per_epoch_and_index(tmp_path):
    records = _records(tmp_path, 3)

    def transform(clip):  # random augmentation drawn from torch's global RNG
        return clip.float() + torch.rand(())

    a = VideoClipDataset(records, UniformClipSampler(4), transform=transform, seed=1)
    b = VideoClipDataset(records, UniformClipSampler(4), transform=transform, seed=1)
    order_a = [a[i]["clips"][0] for i in (0, 1, 2)]
    order_b = [b[i]["clips"][0] for i in (2, 1, 0)][::-1]  # different read order, same samples
    assert all(torch.equal(x, y) for x, y in zip(order_a, order_b))
    a.set_epoch(1)
    assert not torch.equal(a[0]["clips"][0], order_a[0])
    a.set_epoch(0)
    assert torch.equal(a[0]["clips"][0], order_a[0])


def test_dataset_replaces_bad_videos_and_reports(tmp_path, caplog):
    records = _records(tmp_path, 10, bad={2})
    dataset = VideoClipDataset(records, UniformClipSampler(4), max_bad_fraction=0.2)
    with caplog.at_level(logging.WARNING):
        sample = dataset[2]
        again = dataset[2]
    assert sample["index"] == 3 and again["index"] == 3 and sample["video_id"] == "v3"
    assert dataset.bad_videos == [(records[2].path, "file is empty (0 bytes)")]
    assert sum("v2.mp4" in message for message in caplog.messages) == 1  # reported once


def test_dataset_raises_when_too_many_bad(tmp_path):
    records = _records(tmp_path, 5, bad={0, 3})
    dataset = VideoClipDataset(records, UniformClipSampler(4), max_bad_fraction=0.2)
    with pytest.raises(RuntimeError, match=r"2 of 5 videos .*max_bad_fraction=20\.0%.*v0.mp4"):
        for i in range(5):
            dataset[i]


def test_short_videos_follow_the_policy_video_by_video(tmp_path):
    # A too-short video used to count as corrupt (and one among the first 32 probed refused the
    # run); now each short video gets the dataset's policy when it is read.
    records = _records(tmp_path, 3)  # 20, 21, 22 frames
    sampler = UniformClipSampler(21, short_video="error", mode="center")
    skip = VideoClipDataset(records, sampler, max_bad_fraction=0.0)
    assert skip[0]["index"] == 1 and skip[2]["index"] == 2  # skipped, not a corruption: no raise
    assert [v["video_id"] for v in skip.skipped_videos()["short"]] == ["v0"]
    assert skip.skipped_videos()["corrupt"] == [] and skip.tracker.totals()["short"] == 1
    loop = VideoClipDataset(records, sampler, short_video="loop")[0]
    pad = VideoClipDataset(records, sampler, short_video="pad")[0]
    assert loop["index"] == pad["index"] == 0
    assert ids(loop["clips"][0]) == [*range(20), 0] and ids(pad["clips"][0]) == [*range(20), 19]
    refuse = VideoClipDataset(records, sampler, short_video="refuse")
    assert refuse[1]["index"] == 1  # the long videos are read
    with pytest.raises(
        ClipTooLongError, match=r"v0\.mp4: the clip needs 21 frames but the video has only 20"
    ):
        refuse[0]
    with pytest.raises(ValueError, match="short_video must be one of"):
        VideoClipDataset(records, sampler, short_video="error")


def test_evaluation_dataset_skips_bad_videos_without_substitutes(tmp_path):
    records = _records(tmp_path, 5, bad={2})
    dataset = VideoClipDataset(records, UniformClipSampler(4), max_bad_fraction=0.5, substitute=False)
    samples = [dataset[i] for i in range(5)]
    assert samples[2]["skipped"] and samples[2]["video_id"] == "v2"
    assert [s["index"] for s in samples] == [0, 1, 2, 3, 4]  # nobody stands in for v2
    batch = collate_clips(samples[1:4])
    assert batch["index"].tolist() == [1, 3] and batch["video_ids"] == ["v1", "v3"]
    assert batch["skipped_video_ids"] == ["v2"] and batch["skipped_index"].tolist() == [2]
    assert batch["pixel_values"].shape[0] == 2
    empty = collate_clips([samples[2]])
    assert (
        empty["pixel_values"] is None
        and empty["labels"].numel() == 0
        and empty["skipped_video_ids"] == ["v2"]
    )
    assert dataset.skipped_videos()["corrupt"] == [{"index": 2, "video_id": "v2", "path": records[2].path}]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_video_tolerance_does_not_depend_on_worker_count(tmp_path, num_workers):
    # Per-worker counts let two workers pass data that stops a run with none; the tolerance is
    # now a fraction of all the videos, counted in memory every worker shares.
    def run(records, **kwargs):
        dataset = VideoClipDataset(records, UniformClipSampler(4), **kwargs)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=2, num_workers=num_workers, collate_fn=collate_clips
        )
        return dataset, [index for batch in loader for index in batch["index"].tolist()]

    one_bad = _records(tmp_path / "one", 10, bad={7})
    dataset, read = run(one_bad, max_bad_fraction=0.1)  # 1 of 10 is within 10 %
    assert read == [0, 1, 2, 3, 4, 5, 6, 8, 8, 9]  # training: v7 replaced by the next video
    assert [v["index"] for v in dataset.skipped_videos()["corrupt"]] == [7]  # seen by the main process
    dataset, read = run(one_bad, max_bad_fraction=0.1, substitute=False)
    assert read == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    with pytest.raises(RuntimeError, match=r"2 of 10 videos could not be used"):
        run(_records(tmp_path / "two", 10, bad={2, 7}), max_bad_fraction=0.1)


def test_noise_applied_before_transform_with_video_id_key(tmp_path):
    seen = []

    def noise(clip, key):
        seen.append((clip.dtype, key))
        return clip

    VideoClipDataset(_records(tmp_path, 2), RatePlanSampler(), noise=noise, transform=lambda c: c.float())[1]
    assert seen == [(torch.uint8, "v1"), (torch.uint8, "v1/clip1")]


def test_collate_rejects_mixed_shapes():
    a = {"clips": [torch.zeros(4, 3, 8, 8)], "info": {}, "label": 0, "video_id": "a", "index": 0}
    b = {"clips": [torch.zeros(4, 3, 8, 9)], "info": {}, "label": 0, "video_id": "b", "index": 1}
    with pytest.raises(ValueError, match="one shape"):
        collate_clips([a, b])


def test_tracker_rule_on_counts_summed_over_ranks():
    # Each rank counts its own reads; the loop sums totals() over ranks and applies one rule.
    ranks = [BadVideoTracker(max_bad_fraction=0.25, min_seen=4) for _ in range(2)]
    for rank, tracker in enumerate(ranks):
        tracker.ok()
        tracker.bad(f"r{rank}", f"video{rank}.mp4", "corrupt")  # 1 of 2 on each rank: under min_seen
    sums = {key: sum(t.totals()[key] for t in ranks) for key in ("read", "corrupt", "short")}
    assert sums == {"read": 4, "corrupt": 2, "short": 0}
    with pytest.raises(
        RuntimeError, match=r"2 of 4 videos could not be used \(50\.0% > max_bad_fraction=25\.0%\)"
    ):
        ranks[0].check_totals(sums["corrupt"], sums["read"])
    ranks[0].check_totals(1, 4)  # within the tolerance
