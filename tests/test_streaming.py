"""Streaming shards through HF Datasets: every video once, deterministic samples, two-process runs."""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_vssl.data.clips import ClipTooLongError, UniformClipSampler
from hf_vssl.data.datasets import collate_clips
from hf_vssl.data.records import VideoRecord
from hf_vssl.data.shards import build_shards
from hf_vssl.data.streaming import StreamingClipDataset, dataset_base, load_video_dataset

REPO = Path(__file__).resolve().parents[1]


def _make_shards(make_video, out_dir, num_videos, shard_size, short=()):
    records = [
        VideoRecord(
            path=str(
                make_video(
                    f"src/{out_dir.name}/v{i:02d}.mp4",
                    num_frames=4 if i in short else 8,
                    height=16,
                    width=16,
                    seed=i,
                )
            ),
            label=i % 4,
            label_name=f"c{i % 4}",
            video_id=f"vid{i:02d}",
            source="toy",
        )
        for i in range(num_videos)
    ]
    report = build_shards(records, out_dir, shard_size=shard_size, num_workers=1)
    assert report.written == num_videos
    return [r.video_id for r in records]


@pytest.fixture
def shards(make_video, tmp_path):
    """12 videos in 4 shards of 3."""
    return tmp_path / "even", _make_shards(make_video, tmp_path / "even", 12, 3)


def _ids(stream, num_workers):
    loader = torch.utils.data.DataLoader(
        stream, batch_size=2, num_workers=num_workers, collate_fn=collate_clips
    )
    return [vid for batch in loader for vid in batch["video_ids"]]


def test_load_video_dataset_has_video_column(shards):
    shard_dir, ids = shards
    from datasets import Dataset, IterableDataset, Video

    streamed = load_video_dataset(shard_dir)
    assert isinstance(streamed, IterableDataset) and isinstance(streamed.features["video"], Video)
    assert streamed.num_shards == 4
    table = load_video_dataset(shard_dir, streaming=False)
    assert isinstance(table, Dataset) and len(table) == 12
    assert table[5]["video"].get_frames_at([0, 7]).data.shape == (2, 3, 16, 16)
    assert table[5]["json"]["video_id"] == ids[5]


def test_a_streamed_video_is_opened_once(shards, monkeypatch):
    """The rename of the video column must not decode: datasets would open each video for nothing."""
    import torchcodec.decoders

    shard_dir, ids = shards
    opened = []
    init = torchcodec.decoders.VideoDecoder.__init__
    monkeypatch.setattr(
        torchcodec.decoders.VideoDecoder,
        "__init__",
        lambda self, *a, **k: opened.append(1) or init(self, *a, **k),
    )
    row = next(iter(load_video_dataset(shard_dir)))
    assert isinstance(row["video"], torchcodec.decoders.VideoDecoder) and len(opened) == 1
    stream = StreamingClipDataset(
        load_video_dataset(shard_dir), UniformClipSampler(num_frames=4), shuffle=False
    )
    opened.clear()
    assert len(list(stream)) == len(ids) == len(opened)


def test_dataset_base_for_hub_ids_and_errors(tmp_path):
    assert dataset_base("someone/ucf101-shards") == "hf://datasets/someone/ucf101-shards"
    assert dataset_base("someone/ucf101-shards", revision="v1") == "hf://datasets/someone/ucf101-shards@v1"
    assert dataset_base(tmp_path) == str(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither a local shard directory nor a Hub dataset id"):
        dataset_base(str(tmp_path / "missing" / "deeper" / "dir"))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_stream_yields_every_sample_once(shards, num_workers):
    shard_dir, ids = shards
    stream = StreamingClipDataset(load_video_dataset(shard_dir), UniformClipSampler(num_frames=4), seed=1)
    read = _ids(stream, num_workers)
    assert sorted(read) == ids


def test_samples_do_not_depend_on_workers_and_epochs_reshuffle(shards):
    shard_dir, ids = shards

    def clips_by_id(num_workers, epoch):
        stream = StreamingClipDataset(load_video_dataset(shard_dir), UniformClipSampler(num_frames=3), seed=3)
        stream.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers)
        order, clips = [], {}
        for sample in loader:
            order.append(sample["video_id"])
            clips[sample["video_id"]] = sample["clips"][0]
            assert sample["index"] == -1 and sample["label"] == int(sample["video_id"][3:]) % 4
        return order, clips

    order0, clips0 = clips_by_id(0, epoch=0)
    order2, clips2 = clips_by_id(2, epoch=0)
    assert sorted(order0) == sorted(order2) == ids
    assert all(torch.equal(clips0[v], clips2[v]) for v in ids)  # same sample whatever the workers
    assert clips_by_id(0, epoch=0)[0] == order0  # deterministic order per epoch
    order_e1, clips_e1 = clips_by_id(0, epoch=1)
    assert sorted(order_e1) == ids and order_e1 != order0  # shards reshuffled
    assert any(not torch.equal(clips0[v], clips_e1[v]) for v in ids)  # new clip positions


def test_split_by_node_single_process_view(shards):
    shard_dir, ids = shards
    parts = [
        _ids(
            StreamingClipDataset(load_video_dataset(shard_dir), UniformClipSampler(2), rank=r, world_size=3),
            0,
        )
        for r in range(3)
    ]
    # 4 shards over 3 ranks: not divisible, datasets splits by example; still exactly once.
    assert sorted(v for part in parts for v in part) == ids and all(parts)


def test_bad_videos_are_skipped_and_counted(make_video, tmp_path):
    ids = _make_shards(make_video, tmp_path / "short", 6, 3, short={1, 4})
    stream = StreamingClipDataset(
        load_video_dataset(tmp_path / "short"),
        UniformClipSampler(6, short_video="error"),
        max_bad_fraction=0.5,
        shuffle=False,
    )
    read = [sample["video_id"] for sample in stream]
    assert read == [v for i, v in enumerate(ids) if i not in (1, 4)]
    assert [name.rsplit(":", 1)[-1] for name, _ in stream.bad_videos] == ["vid01", "vid04"]
    assert "needs 6 frames but the video has only 4" in stream.bad_videos[0][1]
    # Short videos skipped by policy are reported, not counted as corrupt; "refuse" stops.
    assert stream.tracker.totals() == {"read": 6, "corrupt": 0, "short": 2}
    strict = StreamingClipDataset(
        load_video_dataset(tmp_path / "short"),
        UniformClipSampler(6, short_video="error"),
        short_video="refuse",
        shuffle=False,
    )
    with pytest.raises(ClipTooLongError, match=r"vid01: the clip needs 6 frames but the video has only 4"):
        list(strict)
    looped = StreamingClipDataset(
        load_video_dataset(tmp_path / "short"),
        UniformClipSampler(6, short_video="error"),
        short_video="loop",
        shuffle=False,
    )
    assert [sample["video_id"] for sample in looped] == ids


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_read_every_video_exactly_once(make_video, tmp_path):
    even_ids = _make_shards(make_video, tmp_path / "even", 16, 4)  # 4 shards: 2 per rank, 1 per worker
    odd_ids = _make_shards(make_video, tmp_path / "odd", 10, 2)  # 5 shards: split by example
    out = tmp_path / "reads"
    out.mkdir()
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        str(REPO / "tests" / "_dist_read_once.py"),
        str(out),
        str(tmp_path / "even"),
        str(tmp_path / "odd"),
    ]
    result = subprocess.run(
        command, check=False, env=env, cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name, ids in (("even", even_ids), ("odd", odd_ids)):
        for epoch in (0, 1):
            per_rank = [json.loads((out / f"{name}.epoch{epoch}.rank{r}.json").read_text()) for r in (0, 1)]
            counts = collections.Counter(per_rank[0] + per_rank[1])
            assert sorted(counts) == ids and set(counts.values()) == {1}, (name, epoch, per_rank)
            assert per_rank[0] and per_rank[1]
