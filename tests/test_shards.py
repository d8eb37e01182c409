"""WebDataset shards: round trip through datasets' webdataset builder, validation, noisy variants."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch
from _real_videos import ffprobe_count, frame_marker, pyav_frames

from hf_vssl.data.decoding import decode_frames, num_frames, open_video
from hf_vssl.data.records import VideoRecord
from hf_vssl.data.shards import (
    ReencodeOptions,
    build_noisy_shards,
    build_shards,
    iter_shard_samples,
    read_manifest,
    reencode_video,
    sample_key,
    video_field,
)


@pytest.fixture
def corpus(make_video, tmp_path):
    """6 good videos over 2 splits (one WebM, one with a segment) + a text file and an empty file."""
    records = []
    for i in range(6):
        ext = "webm" if i == 4 else "mp4"
        path = make_video(f"src/v{i}.{ext}", num_frames=10 + i, height=32, width=48, seed=i)
        records.append(
            VideoRecord(
                path=str(path),
                label=i % 3,
                label_name=f"class{i % 3}",
                video_id=f"g{i}.c{i}",
                split="train" if i < 4 else "test",
                source="synthetic",
                start=2 if i == 1 else None,
                end=8 if i == 1 else None,
            )
        )
    text = tmp_path / "src" / "notes.mp4"
    text.write_text("not a video")
    empty = tmp_path / "src" / "empty.mp4"
    empty.write_bytes(b"")
    records.insert(2, VideoRecord(path=str(text), label=0, label_name="class0", video_id="notes"))
    records.append(VideoRecord(path=str(empty), label=1, label_name="class1", video_id="empty", split="test"))
    return records


def test_keys_and_fields():
    assert sample_key("v_Apply.Eye/Makeup g01") == "v_Apply_Eye_Makeup_g01"
    assert video_field(".webm") == "mkv" and video_field("MP4") == "mp4"
    with pytest.raises(ValueError, match="flv"):
        video_field("flv")


def test_build_shards_round_trip(corpus, tmp_path):
    from hf_vssl.data.streaming import load_video_dataset

    report = build_shards(corpus, tmp_path / "shards", shard_size=3, num_workers=1)
    assert report.written == 6
    assert sorted(path.rsplit("/", 1)[-1] for path, _ in report.skipped) == ["empty.mp4", "notes.mp4"]
    assert all(reason for _, reason in report.skipped)
    assert report.per_split == {"test": 2, "train": 4}
    names = sorted(path.rsplit("/", 1)[-1] for path in report.shards)
    assert names == ["synthetic-test-00000.tar", "synthetic-train-00000.tar", "synthetic-train-00001.tar"]

    manifest = read_manifest(tmp_path / "shards")
    assert manifest["video_field"] == "mp4" and manifest["written"] == 6
    assert [s["num_videos"] for s in manifest["splits"]["train"]["shards"]] == [3, 1]
    assert manifest["splits"]["train"]["class_counts"] == {"class0": 2, "class1": 1, "class2": 1}
    assert manifest["label_names"] == {"0": "class0", "1": "class1", "2": "class2"}
    assert len(manifest["skipped"]) == 2

    with tarfile.open(tmp_path / "shards" / "synthetic-train-00000.tar") as tar:
        assert tar.getnames()[:2] == ["g0_c0.mp4", "g0_c0.json"]

    dataset = load_video_dataset(tmp_path / "shards", split="train", streaming=True)
    rows = list(dataset)
    assert [row["json"]["video_id"] for row in rows] == ["g0.c0", "g1.c1", "g2.c2", "g3.c3"]
    assert [row["json"]["label"] for row in rows] == [0, 1, 2, 0]
    assert (rows[1]["json"]["start"], rows[1]["json"]["end"]) == (2, 8) and rows[0]["json"]["start"] is None
    decoder = rows[2]["video"]  # datasets.Video decodes with torchcodec
    assert type(decoder).__name__ == "VideoDecoder" and decoder.metadata.num_frames == 12
    original = open_video(corpus[3].path)  # g2.c2 (corpus[2] is the text file)
    assert torch.equal(decoder.get_frames_at([0, 11]).data, original.get_frames_at([0, 11]).data)

    test_rows = list(load_video_dataset(tmp_path / "shards", split="test"))
    assert [r["json"]["container"] for r in test_rows] == [
        "webm",
        "mp4",
    ]  # webm stored under .mp4, decoded by content
    assert test_rows[0]["video"].metadata.codec == "vp8"
    with pytest.raises(ValueError, match="no split 'validation'"):
        load_video_dataset(tmp_path / "shards", split="validation")


def test_build_shards_refuses_non_empty_dir(corpus, tmp_path):
    build_shards(corpus[:2], tmp_path / "s", num_workers=1)
    with pytest.raises(FileExistsError, match="already holds shards"):
        build_shards(corpus[:2], tmp_path / "s", num_workers=1)


def test_split_override_and_parallel_workers(corpus, tmp_path):
    report = build_shards(corpus, tmp_path / "s", shard_size=10, split="all", num_workers=2, prefix="mine")
    assert report.per_split == {"all": 6} and len(report.skipped) == 2
    assert [m["video_id"] for _, m in iter_shard_samples(tmp_path / "s")] == [f"g{i}.c{i}" for i in range(6)]


def test_reencode_scales_and_keeps_frames(make_video, tmp_path):
    path = make_video("big.avi", num_frames=20, height=96, width=160)
    record = VideoRecord(path=str(path), label=0, label_name="a", video_id="big")
    report = build_shards(
        [record], tmp_path / "s", reencode=ReencodeOptions(short_side=32, gop_size=4), num_workers=1
    )
    assert report.written == 1 and read_manifest(tmp_path / "s")["reencode"]["gop_size"] == 4
    data, meta = next(iter_shard_samples(tmp_path / "s"))
    decoder = open_video(data, seek_mode="exact")
    assert (decoder.metadata.height, decoder.metadata.width, decoder.metadata.num_frames) == (32, 54, 20)
    assert decoder.metadata.codec == "h264" and meta["container"] == "mp4" and meta["num_frames"] == 20
    assert decoder._get_key_frame_indices().tolist() == [0, 4, 8, 12, 16]


@pytest.mark.parametrize("kind, severity", [("gaussian", 3), ("impulse", 1)])
def test_noisy_shards_are_byte_exact(corpus, tmp_path, kind, severity):
    from hf_vssl.data.noise import apply_noise, video_seed

    build_shards(corpus[:3], tmp_path / "clean", num_workers=1)
    report = build_noisy_shards(tmp_path / "clean", tmp_path / "noisy", kind, severity, seed=5, num_workers=1)
    assert report.written == 2 and report.per_split == {"train": 2}
    manifest = read_manifest(tmp_path / "noisy")
    assert manifest["video_field"] == "mkv" and manifest["noise"] == {
        "kind": kind,
        "severity": severity,
        "preset": "video-p",
        "seed": 5,
    }
    clean = {m["video_id"]: data for data, m in iter_shard_samples(tmp_path / "clean")}
    for data, meta in iter_shard_samples(tmp_path / "noisy"):
        source = open_video(clean[meta["video_id"]])
        frames = source.get_frames_in_range(0, source.metadata.num_frames).data
        # Each frame's noise has its own generator, keyed by the frame's place in the video.
        expected = torch.cat(
            [
                apply_noise(frames[f : f + 1], kind, severity, "video-p", torch.Generator().manual_seed(seed))
                for f, seed in enumerate(video_seed(5, f"{meta['video_id']}#{f}") for f in range(len(frames)))
            ]
        )
        noisy = open_video(data)
        decoded = noisy.get_frames_in_range(0, noisy.metadata.num_frames).data
        assert decoded.shape == expected.shape and torch.equal(decoded, expected)
        assert not torch.equal(decoded, frames)
        assert meta["label"] in (0, 1)


def test_noisy_shards_from_records_load_as_video(corpus, tmp_path):
    from hf_vssl.data.streaming import load_video_dataset

    report = build_noisy_shards(corpus[:3], tmp_path / "noisy", "shot", 2, num_workers=1)
    assert report.written == 2 and [p.rsplit("/", 1)[-1] for p, _ in report.skipped] == ["notes.mp4"]
    rows = list(load_video_dataset(tmp_path / "noisy"))
    assert len(rows) == 2 and rows[0]["video"].metadata.codec == "ffv1"
    assert json.loads(json.dumps(rows[0]["json"]))["container"] == "mkv"


def test_real_container_codec_combinations_survive_shards_with_every_frame(real_videos, tmp_path):
    # UCF101's XVID+MP3 AVIs and a 1080p H.264 AVI were dropped ("Requested next frame while
    # there are no more frames left to decode"); every file must be kept with all its frames,
    # counted as FFmpeg counts them, both as original bytes and re-encoded.
    records = [
        VideoRecord(str(path), i, f"c{i}", name.replace(".", "_"), "train", "real")
        for i, (name, path) in enumerate(sorted(real_videos.items()))
    ]
    expected = {record.video_id: len(pyav_frames(Path(record.path))) for record in records}
    for record in records:
        assert ffprobe_count(Path(record.path)) in (None, expected[record.video_id])
    for reencode in (None, ReencodeOptions(short_side=64, gop_size=4)):
        out = tmp_path / ("kept" if reencode is None else "reencoded")
        report = build_shards(records, out, reencode=reencode, num_workers=1)
        assert report.skipped == [] and report.written == len(records)
        for data, meta in iter_shard_samples(out):
            assert meta["num_frames"] == expected[meta["video_id"]]
            decoder = open_video(data, name=meta["video_id"])
            assert num_frames(decoder) == expected[meta["video_id"]]
            if reencode is not None:
                frames = decode_frames(decoder, list(range(num_frames(decoder))))
                assert min(frames.shape[-2:]) == 64
                if meta["video_id"] == "rotated_mov":  # displayed portrait: 64 wide, 86 high
                    assert frames.shape[-2:] == (86, 64)


def test_reencoded_b_frame_avi_keeps_frame_order(real_videos):
    path = real_videos["xvid_mp3.avi"]
    data, count = reencode_video(path, ReencodeOptions(short_side=None))
    frames = (
        decode_frames(open_video(data, name="re-encoded"), list(range(count))).permute(0, 2, 3, 1).numpy()
    )
    assert count == len(pyav_frames(path)) and frame_marker(frames).tolist() == list(range(count))
