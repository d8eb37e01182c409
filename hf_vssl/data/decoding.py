"""Opening and decoding videos with torchcodec, with failures turned into one readable error.

Every way a video can be unusable (missing path, directory, zero bytes, truncated, not a video
at all, audio only, no frames) surfaces as :class:`VideoDecodeError` naming the file and the
problem, so datasets can count and skip bad videos instead of crashing a DataLoader worker with
an FFmpeg traceback.

Seek mode (measured on this project's machine, see the module tests and the data benchmark):
``"approximate"`` skips the scan of the whole file that ``"exact"`` does on open; that saves
~15-20% of a random 16-frame clip on a 600-frame video and nothing measurable on short ones.
It is only safe where the container header states the frame count (MP4/MOV, AVI): for
Matroska/WebM, approximate mode estimates the count from duration x fps and is one frame short
(measured: 23 instead of 24 at 29.97 fps). So the default ``seek_mode="auto"`` opens in
approximate mode and re-opens in exact mode when the header has no frame count. Approximate
mode trusts the header: a truncated AVI opens with its declared length and fails when the
missing frames are decoded; :func:`decode_frames` raises :class:`VideoDecodeError` then, and
:func:`probe_video` (used when building shards) scans the file and reports the truncation
up front.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import torch
from torchcodec.decoders import VideoDecoder

VideoSource = str | os.PathLike | bytes | bytearray

SEEK_MODES = ("auto", "approximate", "exact")


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or decoded. ``source`` names the file, ``reason`` the problem."""

    def __init__(self, source: str, reason: str):
        self.source = str(source)
        self.reason = reason
        super().__init__(f"cannot decode video {self.source!r}: {reason}")

    def __reduce__(self):  # picklable across DataLoader worker processes
        return (type(self), (self.source, self.reason))


def _source_name(source: VideoSource, name: str | None) -> str:
    if name is not None:
        return str(name)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes in memory>"
    return os.fspath(source)


def _check_path(path: str) -> None:
    """Cheap checks that give better messages than FFmpeg's 'Invalid data found'."""
    if not os.path.exists(path):
        raise VideoDecodeError(path, "file not found")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "is a directory, not a video file")
    if not os.access(path, os.R_OK):
        raise VideoDecodeError(path, "file is not readable (permission denied)")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")


def _diagnose(source: VideoSource, error: Exception) -> str:
    """Explain why torchcodec refused ``source``; runs only on the failure path (uses PyAV)."""
    import av

    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    detail = detail.split(", ")[-1] if "SingleStreamDecoder" in detail else detail  # drop C++ file:line
    try:
        handle = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else os.fspath(source)
        with av.open(handle) as container:
            kinds = [stream.type for stream in container.streams]
            if not container.streams.video:
                found = ", ".join(kinds) if kinds else "no streams at all"
                return f"no video stream (found: {found}); audio-only or not a video file"
            stream = container.streams.video[0]
            has_frame = any(True for _ in container.decode(stream))
            if not has_frame:
                return "the video stream contains no frames"
    except av.error.FFmpegError as av_error:
        return (
            f"not a readable video (corrupt, truncated or not a video file): {av_error.strerror or av_error}"
        )
    except (OSError, ValueError, RuntimeError):  # best effort: fall back to torchcodec's message
        return f"torchcodec could not open it: {detail}"
    return f"torchcodec could not open it: {detail}"


def open_video(
    source: VideoSource,
    name: str | None = None,
    *,
    seek_mode: str = "auto",
    num_threads: int = 1,
) -> VideoDecoder:
    """Open ``source`` (a path or the bytes of a video file) as a torchcodec ``VideoDecoder``.

    Args:
        source: a file path or the encoded bytes (e.g. a WebDataset sample).
        name: how errors name the video (defaults to the path; set it for bytes).
        seek_mode: ``"auto"`` (approximate where the header has the frame count, else exact),
            ``"approximate"`` or ``"exact"``; see the module docstring.
        num_threads: FFmpeg threads per decoder. Keep 1 in DataLoader workers (parallelism comes
            from the workers); more only helps a single large decode.

    Raises:
        VideoDecodeError: the file is missing, empty, not a video, has no video stream or no frames.
    """
    if seek_mode not in SEEK_MODES:
        raise ValueError(f"seek_mode must be one of {SEEK_MODES}, got {seek_mode!r}")
    label = _source_name(source, name)
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise VideoDecodeError(label, "no data (0 bytes)")
        data: str | bytes = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = os.fspath(source)
        _check_path(data)
    else:
        raise TypeError(f"source must be a path or bytes, got {type(source).__name__}")

    mode = "approximate" if seek_mode == "auto" else seek_mode
    try:
        decoder = VideoDecoder(data, seek_mode=mode, num_ffmpeg_threads=num_threads)
        if seek_mode == "auto" and decoder.metadata.num_frames_from_header is None:
            decoder = VideoDecoder(data, seek_mode="exact", num_ffmpeg_threads=num_threads)
    except (RuntimeError, ValueError) as error:
        raise VideoDecodeError(label, _diagnose(source, error)) from error
    if not decoder.metadata.num_frames:
        raise VideoDecodeError(label, "the video stream contains no frames")
    decoder._hf_vssl_name = label  # lets decode_frames name the file in its errors
    return decoder


def num_frames(decoder: VideoDecoder) -> int:
    """Number of frames torchcodec can index in ``decoder``."""
    return int(decoder.metadata.num_frames)


def decode_frames(
    decoder: VideoDecoder, indices: Sequence[int] | np.ndarray | torch.Tensor, name: str | None = None
) -> torch.Tensor:
    """Decode frames ``indices`` (any order, repeats allowed) -> uint8 ``(N, C, H, W)``.

    Each distinct frame is decoded once, in increasing order (one forward pass through each
    GOP), and the result is re-expanded to the requested order, so a looped or re-ordered
    clip costs no more than its distinct frames.

    Raises:
        IndexError: an index is outside ``[0, num_frames)`` (a bug in the caller's plan).
        VideoDecodeError: the file stops before a requested frame (truncated / corrupt data).
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    label = name if name is not None else getattr(decoder, "_hf_vssl_name", "<video>")
    if idx.size == 0:
        raise ValueError(f"{label}: no frame indices requested")
    total = num_frames(decoder)
    unique, inverse = np.unique(idx, return_inverse=True)
    if unique[0] < 0 or unique[-1] >= total:
        raise IndexError(
            f"{label}: frame indices must lie in [0, {total}), got min {unique[0]} max {unique[-1]}"
        )
    try:
        frames = decoder.get_frames_at(unique.tolist()).data
    except (RuntimeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise VideoDecodeError(
            label,
            f"decoding frames {unique[0]}..{unique[-1]} of {total} failed (truncated or corrupt?): {reason}",
        ) from error
    if unique.size == idx.size and np.array_equal(unique, idx):
        return frames
    return frames.index_select(0, torch.from_numpy(inverse.reshape(-1)))


def probe_video(source: VideoSource, name: str | None = None) -> dict:
    """Thorough validity check for offline use (building shards), not for the training hot path.

    Scans the whole file (exact mode), decodes its last frame, and compares the frame count the
    header declares with the frames actually present, so truncated files are caught here
    rather than mid-training. Returns ``{"num_frames", "height", "width", "fps", "codec"}``.
    """
    label = _source_name(source, name)
    decoder = open_video(source, name=label, seek_mode="exact")
    meta = decoder.metadata
    total = num_frames(decoder)
    declared = meta.num_frames_from_header
    # Allow a tiny mismatch (some AVI muxers count a dummy packet); a real cut loses much more.
    if declared and total < declared - max(1, int(0.02 * declared)):
        raise VideoDecodeError(
            label, f"truncated: the header declares {declared} frames but only {total} are present"
        )
    decode_frames(decoder, [total - 1], name=label)
    return {
        "num_frames": total,
        "height": int(meta.height),
        "width": int(meta.width),
        "fps": float(meta.average_fps or 0.0),
        "codec": str(meta.codec),
    }


__all__ = ["SEEK_MODES", "VideoDecodeError", "decode_frames", "num_frames", "open_video", "probe_video"]
