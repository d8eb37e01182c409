"""Decoding: every kind of bad input becomes a VideoDecodeError naming the file and the problem."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from _real_videos import REAL_VIDEO_MAKERS, ffprobe_count, frame_marker, pyav_frames

from hf_vssl.data.decoding import (
    VideoDecodeError,
    decode_all,
    decode_frames,
    decode_sequential,
    num_frames,
    open_video,
    probe_video,
    stream_facts,
)
from hf_vssl.data.video_io import encode_video


def counter_frames(num_frames: int, height: int = 32, width: int = 48) -> torch.Tensor:
    """Frame ``t`` is uniformly grey with value ``8 * t`` (t < 32): decodable back to ``t`` through codec loss."""
    assert num_frames <= 32
    values = (torch.arange(num_frames) * 8).to(torch.uint8)
    return values.view(-1, 1, 1, 1).expand(num_frames, 3, height, width).contiguous()


def frame_ids(frames: torch.Tensor) -> list[int]:
    return [round(v) for v in (frames.float().mean(dim=(1, 2, 3)) / 8).tolist()]


@pytest.mark.parametrize("ext", ["mp4", "avi", "webm", "mkv"])
def test_frame_count_and_random_access(tmp_path, ext):
    # 31 frames at 29.97 fps: approximate mode would report 30 for Matroska; "auto" must not.
    path = tmp_path / f"counter.{ext}"
    encode_video(counter_frames(31), path, fps=30000 / 1001, gop_size=8, bit_rate=2_000_000)
    decoder = open_video(path)
    assert num_frames(decoder) == 31
    indices = [30, 3, 3, 0, 17, 30]
    frames = decode_frames(decoder, indices)
    assert frames.dtype == torch.uint8 and frames.shape == (6, 3, 32, 48)
    assert frame_ids(frames) == indices


def test_open_from_bytes_names_the_source(tmp_path):
    data = encode_video(counter_frames(8), None, container="mp4")
    decoder = open_video(data, name="sample-7.mp4")
    assert frame_ids(decode_frames(decoder, [7, 0])) == [7, 0]
    with pytest.raises(VideoDecodeError, match=r"sample-7.mp4.*not a readable video"):
        open_video(data[: len(data) // 3], name="sample-7.mp4")


def test_decode_frames_rejects_out_of_range(make_video):
    decoder = open_video(make_video(num_frames=10))
    with pytest.raises(IndexError, match=r"\[0, 10\)"):
        decode_frames(decoder, [0, 10])


def _audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for _ in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _no_frames(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("missing", "file not found"),
        ("directory", "is a directory"),
        ("zero_bytes", r"empty \(0 bytes\)"),
        ("truncated", "not a readable video"),
        ("text", "not a readable video"),
        ("audio_only", "no video stream.*audio"),
        ("no_frames", "no frames"),
    ],
)
def test_bad_inputs_raise_video_decode_error(tmp_path, make_video, kind, reason):
    path = tmp_path / f"bad_{kind}.avi" if kind == "no_frames" else tmp_path / f"bad_{kind}.mp4"
    if kind == "directory":
        path.mkdir()
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "truncated":
        good = make_video("good.mp4").read_bytes()
        path.write_bytes(good[: len(good) // 2])
    elif kind == "text":
        path.write_text("definitely not a video\n" * 20)
    elif kind == "audio_only":
        _audio_only(path)
    elif kind == "no_frames":
        _no_frames(path)
    with pytest.raises(VideoDecodeError, match=reason) as info:
        open_video(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value)
    with pytest.raises(VideoDecodeError, match=reason):
        probe_video(path)


def test_truncated_avi_fails_at_decode_and_in_probe(tmp_path, make_video):
    # AVI declares its length in the header, so approximate open succeeds; decoding past the cut
    # and the shard-time probe must both report it.
    good = make_video("good.avi", num_frames=24).read_bytes()
    path = tmp_path / "cut.avi"
    path.write_bytes(good[: len(good) // 2])
    decoder = open_video(path)
    with pytest.raises(VideoDecodeError, match=r"cut.avi.*truncated or corrupt"):
        decode_frames(decoder, [0, 23])
    with pytest.raises(VideoDecodeError, match=r"cut.avi.*header declares 24 frames"):
        probe_video(path)


def test_probe_reports_metadata(make_video):
    info = probe_video(make_video("ok.webm", num_frames=12, height=32, width=40))
    assert info["num_frames"] == 12 and (info["height"], info["width"]) == (32, 40) and info["codec"] == "vp8"


def test_error_pickles():
    import pickle

    error = pickle.loads(pickle.dumps(VideoDecodeError("a.mp4", "file not found")))
    assert (error.source, error.reason) == ("a.mp4", "file not found")


# --- real-world container/codec combinations ---------------------------------------------------


def _stored_order(frames: np.ndarray, name: str) -> np.ndarray:
    """Frames as stored (the rotated MOV is displayed turned by -90 degrees: turn it back)."""
    return np.rot90(frames, k=1, axes=(1, 2)) if name == "rotated.mov" else frames


@pytest.mark.parametrize("name", sorted(REAL_VIDEO_MAKERS))
def test_real_container_codec_combinations_give_the_frames_ffmpeg_reads(real_videos, name):
    # B-frame AVIs (XVID as in UCF101, H.264) made torchcodec return frames two off and fail at
    # the end; approximate seeking in a VFR MP4 returned other frames. Every index must give the
    # frame FFmpeg decodes at that position, the last one included.
    path = real_videos[name]
    reference = pyav_frames(path)
    total = len(reference)
    assert ffprobe_count(path) in (None, total)
    decoder = open_video(path)
    assert num_frames(decoder) == total
    indices = [total - 1, 0, 7, 8, 9, total // 2, 8]
    got = decode_frames(decoder, indices).permute(0, 2, 3, 1).numpy()
    assert got.shape == (len(indices), *reference.shape[1:])
    assert frame_marker(_stored_order(got, name)).tolist() == indices
    assert np.abs(got.astype(np.int16) - reference[indices]).mean() < 1.0
    every = decode_all(open_video(path)).permute(0, 2, 3, 1).numpy()
    assert frame_marker(_stored_order(every, name)).tolist() == list(range(total))
    assert probe_video(path)["num_frames"] == total


def test_b_frame_avis_are_read_sequentially_and_other_files_by_index(real_videos):
    facts = {name: stream_facts(path) for name, path in real_videos.items()}
    assert facts["xvid_mp3.avi"].sequential and facts["h264_1080p.avi"].sequential
    assert not facts["vfr.mp4"].sequential and facts["vfr.mp4"].variable_frame_rate
    assert facts["rotated.mov"] == (False, False)


def test_facts_of_streamed_bytes_are_read_once_per_content(real_videos, monkeypatch):
    from hf_vssl.data import decoding

    reads = []
    monkeypatch.setattr(decoding, "_bytes_facts", {})
    monkeypatch.setattr(
        decoding, "_read_facts", lambda data: reads.append(len(data)) or decoding.StreamFacts(True, False)
    )
    xvid, vfr = real_videos["xvid_mp3.avi"].read_bytes(), real_videos["vfr.mp4"].read_bytes()
    assert (
        stream_facts(xvid) == stream_facts(bytearray(xvid)) == (True, False)
    )  # a stream's second read of a video
    stream_facts(vfr)
    assert reads == [len(xvid), len(vfr)]


def test_sequential_decoding_names_a_file_that_ends_before_the_frame(real_videos):
    data = real_videos["xvid_mp3.avi"].read_bytes()
    with pytest.raises(VideoDecodeError, match=r"'cut\.avi': truncated or corrupt"):
        decode_sequential(data[: len(data) // 3], [39], name="cut.avi")
