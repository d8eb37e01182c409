"""Videos in the container/codec combinations real datasets ship, encoded here with PyAV.

- ``xvid_mp3_avi``: MPEG-4 part 2 with B-frames, FourCC ``XVID``, MP3 audio, in AVI (UCF101's
  encoding);
- ``h264_avi``: H.264 with B-frames and MP3 in AVI, 1080p;
- ``vfr_mp4``: H.264 in MP4 whose frame durations vary (33 ms and 100 ms);
- ``rotated_mov``: H.264 in QuickTime with a display matrix turning the picture by 90 degrees.

Every frame carries its index in a corner patch (``frame_marker``), so a test can tell which
frame a decoder returned. ``pyav_frames`` / ``ffprobe_count`` are the references: what FFmpeg
itself reads.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

MARKER = 16  # side of each block of the frame-index code
BITS = 7  # blocks in the top row: frame indices up to 127


def _frame(index: int, height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([(xx * 255 // width), (yy * 255 // height), np.full_like(xx, 128)], -1).astype(np.uint8)
    image = np.roll(image, 3 * index, axis=1)
    for bit in range(BITS):  # the index in binary: black or white blocks, robust to compression
        image[:MARKER, bit * MARKER : (bit + 1) * MARKER] = 255 * ((index >> bit) & 1)
    return image


def frame_marker(frames: np.ndarray) -> np.ndarray:
    """The index encoded in the top row of each ``(N, H, W, 3)`` frame as stored (undo a display
    rotation first)."""
    inner = slice(4, MARKER - 4)
    bits = [
        frames[:, inner, bit * MARKER + 4 : (bit + 1) * MARKER - 4].astype(np.float32).mean(axis=(1, 2, 3))
        > 128
        for bit in range(BITS)
    ]
    return sum(bit.astype(int) << k for k, bit in enumerate(bits))


def _write(
    path: Path,
    container: str,
    codec: str,
    num_frames: int,
    size: tuple[int, int],
    *,
    tag: str | None = None,
    b_frames: int = 2,
    audio: str | None = None,
    pts_ms: list[int] | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    height, width = size
    with av.open(str(path), "w", format=container) as out:
        video = out.add_stream(codec, rate=25)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.max_b_frames = b_frames
        video.codec_context.gop_size = 12
        if tag is not None:
            video.codec_context.codec_tag = tag
        if options:
            video.options = options
        if pts_ms is not None:
            video.codec_context.time_base = Fraction(1, 1000)
        sound = out.add_stream(audio, rate=44100) if audio else None
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(_frame(index, height, width), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[index], Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            t = np.arange(44100 * num_frames // 25) / 44100
            wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            samples = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
            samples.sample_rate = 44100
            out.mux(sound.encode(samples))
            out.mux(sound.encode())
    return path


def xvid_mp3_avi(path: Path, num_frames: int = 40) -> Path:
    return _write(path, "avi", "mpeg4", num_frames, (240, 320), tag="XVID", audio="libmp3lame")


def h264_avi(path: Path, num_frames: int = 10) -> Path:
    return _write(
        path,
        "avi",
        "libx264",
        num_frames,
        (1080, 1920),
        b_frames=3,
        audio="libmp3lame",
        options={"preset": "ultrafast", "bframes": "3"},
    )


def vfr_mp4(path: Path, num_frames: int = 40) -> Path:
    steps = [33 if i % 4 else 100 for i in range(1, num_frames)]
    return _write(
        path,
        "mp4",
        "libx264",
        num_frames,
        (240, 320),
        pts_ms=np.cumsum([0, *steps]).tolist(),
        options={"preset": "ultrafast"},
    )


def rotated_mov(path: Path, num_frames: int = 30) -> Path:
    """A 320x240 H.264 MOV whose track matrix rotates the picture (displayed 240 wide, 320 high)."""
    _write(path, "mov", "libx264", num_frames, (240, 320), options={"preset": "ultrafast"})
    data = bytearray(path.read_bytes())
    box = data.find(b"tkhd")
    # tkhd v0: version/flags, times, track id, reserved, duration, reserved, layer, group,
    # volume, reserved = 40 bytes before the 3x3 matrix (16.16 fixed point, w in 2.30).
    offset = box + 4 + (40 if data[box + 4] == 0 else 52)
    identity = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    assert data[offset : offset + 36] == identity
    data[offset : offset + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))
    return path


REAL_VIDEO_MAKERS = {
    "xvid_mp3.avi": xvid_mp3_avi,
    "h264_1080p.avi": h264_avi,
    "vfr.mp4": vfr_mp4,
    "rotated.mov": rotated_mov,
}


def pyav_frames(path: Path) -> np.ndarray:
    """Every frame FFmpeg decodes, ``(N, H, W, 3)`` uint8, turned by the display rotation."""
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="rgb24")
            turns = (int(round(frame.rotation or 0)) // 90) % 4
            frames.append(np.rot90(image, k=turns) if turns else image)
    return np.stack(frames)


def ffprobe_count(path: Path) -> int | None:
    """Frames ``ffprobe -count_frames`` reads (None without the ffprobe command)."""
    if shutil.which("ffprobe") is None:
        return None
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.strip().split(",")[0])
