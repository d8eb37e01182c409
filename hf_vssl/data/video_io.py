"""Writing real encoded video files with PyAV.

One encoder for the whole project: the synthetic corpus, shard re-encoding, lossless noisy
variants and the tests all write through :func:`encode_video`, so codec settings live here.
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from typing import BinaryIO

import av
import numpy as np
import torch

#: container extension -> (codec, pixel format) used when the caller does not choose.
DEFAULT_CODECS: dict[str, tuple[str, str]] = {
    "mp4": ("libx264", "yuv420p"),
    "avi": ("mpeg4", "yuv420p"),
    "webm": ("libvpx", "yuv420p"),
    "mkv": ("ffv1", "bgr0"),  # RGB-exact: yuv444p would round the colour conversion
}


def _as_thwc_uint8(frames: torch.Tensor | np.ndarray, layout: str) -> np.ndarray:
    array = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {array.dtype}")
    if array.ndim != 4:
        raise ValueError(f"frames must be 4-D ({layout}), got shape {tuple(array.shape)}")
    if layout == "TCHW":
        array = array.transpose(0, 2, 3, 1)
    elif layout != "THWC":
        raise ValueError(f"layout must be 'TCHW' or 'THWC', got {layout!r}")
    if array.shape[-1] != 3:
        raise ValueError(f"frames must have 3 colour channels, got shape {tuple(array.shape)} ({layout})")
    return np.ascontiguousarray(array)


def encode_video(
    frames: torch.Tensor | np.ndarray,
    target: str | os.PathLike | BinaryIO | None = None,
    *,
    fps: float = 25,
    container: str | None = None,
    codec: str | None = None,
    pix_fmt: str | None = None,
    gop_size: int | None = None,
    bit_rate: int | None = None,
    crf: int | None = None,
    layout: str = "TCHW",
) -> bytes | None:
    """Encode uint8 RGB ``frames`` into a real video file.

    Args:
        frames: ``(T, C, H, W)`` (default) or ``(T, H, W, C)`` uint8 RGB frames. Odd heights or
            widths are fine for lossless codecs; yuv420p codecs need even sizes.
        target: a path, a writable binary file object, or ``None`` to return the bytes.
        fps: frame rate written in the container.
        container: ``"mp4"``, ``"avi"``, ``"webm"``, ``"mkv"``; inferred from a path's extension.
        codec / pix_fmt: override :data:`DEFAULT_CODECS`. ``"ffv1"`` (lossless) keeps noise exact.
        gop_size: keyframe interval; short GOPs make random clip access cheaper.
        bit_rate / crf: quality controls (``crf`` for x264 / vpx).
    """
    array = _as_thwc_uint8(frames, layout)
    if container is None:
        if isinstance(target, (str, os.PathLike)):
            container = os.path.splitext(os.fspath(target))[1].lstrip(".").lower()
        else:
            container = "mp4"
    default_codec, default_pix_fmt = DEFAULT_CODECS.get(container, ("libx264", "yuv420p"))
    codec = codec or default_codec
    pix_fmt = pix_fmt or (
        default_pix_fmt if codec == default_codec else ("bgr0" if codec == "ffv1" else "yuv420p")
    )

    buffer = io.BytesIO() if target is None else None
    sink = (
        buffer
        if buffer is not None
        else (os.fspath(target) if isinstance(target, (str, os.PathLike)) else target)
    )
    format_name = {"mkv": "matroska"}.get(container, container)
    # bitexact: Matroska/WebM otherwise write random segment ids, and the same frames must give
    # the same file (the synthetic corpus is byte-reproducible).
    with av.open(sink, mode="w", format=format_name, options={"fflags": "+bitexact"}) as output:
        stream = output.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        # One encoder thread: files here are small, and libvpx's automatic threading costs up to
        # 50x more than it saves on tiny clips (and oversubscribes DataLoader workers).
        stream.codec_context.thread_count = 1
        stream.width = int(array.shape[2])
        stream.height = int(array.shape[1])
        stream.pix_fmt = pix_fmt
        if gop_size is not None:
            stream.codec_context.gop_size = int(gop_size)
        if bit_rate is not None:
            stream.bit_rate = int(bit_rate)
        options = {}
        if crf is not None and codec in ("libx264", "libvpx", "libvpx-vp9"):
            options["crf"] = str(crf)
        if codec == "libvpx":
            options.setdefault("deadline", "realtime")
            options.setdefault("cpu-used", "8")
            if bit_rate is None:
                stream.bit_rate = 800_000
        if codec == "libx264":
            options.setdefault("preset", "veryfast")
        if options:
            stream.options = options
        for image in array:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return buffer.getvalue() if buffer is not None else None
