"""Re-encoding: scale to a short side and a short GOP, so a random clip decodes little lead-in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hf_vssl.data.decoding import VideoDecodeError, decode_all, open_video
from hf_vssl.data.video_io import encode_video


@dataclass(frozen=True)
class ReencodeOptions:
    """How :func:`build_shards` re-encodes videos (None there keeps the original bytes).

    ``short_side`` scales the shorter side to this many pixels (never upscales; sizes rounded to
    even for yuv420p); ``gop_size`` is the keyframe interval (short = cheap random access);
    ``fps=None`` keeps the source frame rate (and with it every frame index, so records'
    ``start``/``end`` stay valid).
    """

    short_side: int | None = 128
    gop_size: int = 16
    codec: str = "libx264"
    crf: int | None = 23
    container: str = "mp4"
    pix_fmt: str = "yuv420p"


def scaled_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    scale = 1.0 if short_side is None or min(height, width) <= short_side else short_side / min(height, width)

    def even(size: int) -> int:  # yuv420p needs even sizes
        return max(2, round(size * scale / 2) * 2)

    return even(height), even(width)


def reencode_video(source: Any, options: ReencodeOptions, name: str | None = None) -> tuple[bytes, int]:
    """Decode ``source`` (scaled on the decoder side) and encode it with ``options``.

    Returns ``(bytes, num_frames)``. The output is re-opened and its frame count checked.
    """
    probe = open_video(source, name=name, seek_mode="exact")  # exact: the scan sees truncation
    label = getattr(probe, "_hf_vssl_name", name)
    meta = probe.metadata
    height, width = scaled_size(int(meta.height), int(meta.width), options.short_side)
    frames = decode_all(probe, size=(height, width))
    fps = float(meta.average_fps or 25.0)
    encoded = encode_video(
        frames,
        None,
        fps=fps,
        container=options.container,
        codec=options.codec,
        pix_fmt=options.pix_fmt,
        gop_size=options.gop_size,
        crf=options.crf,
    )
    check = open_video(encoded, name=f"{label} (re-encoded)")
    if int(check.metadata.num_frames) != frames.shape[0]:
        raise VideoDecodeError(
            label, f"re-encoded file has {check.metadata.num_frames} frames, expected {frames.shape[0]}"
        )
    return encoded, int(frames.shape[0])
