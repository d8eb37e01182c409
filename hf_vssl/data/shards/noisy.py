"""Noisy copies of a dataset, stored losslessly, for robustness evaluation."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from hf_vssl.data.decoding import VideoDecodeError, decode_all, open_video
from hf_vssl.data.noise import NoiseTransform
from hf_vssl.data.records import VideoRecord
from hf_vssl.data.video_io import encode_video

from .format import record_meta
from .read import iter_shard_samples, read_manifest
from .write import ShardReport, default_prefix, default_workers, prepare_out_dir, run_tasks, write_all

#: Lossless RGB: FFV1 in bgr0 round-trips uint8 RGB exactly (yuv444p does not: rounding).
NOISY_ENCODING = {"container": "mkv", "codec": "ffv1", "pix_fmt": "bgr0"}


def _noisy_task(task: tuple) -> tuple:
    """Decode one video fully, add seeded noise, encode losslessly -> ``("ok", bytes, meta)``."""
    source, name, meta, kind, severity, preset, seed = task
    try:
        decoder = open_video(source, name=name, seek_mode="exact")
        frames = decode_all(decoder)
    except VideoDecodeError as error:
        return ("bad", name, error.reason)
    noisy = NoiseTransform(kind, severity, preset, seed)(frames, meta["video_id"])
    fps = float(decoder.metadata.average_fps or 25.0)
    data = encode_video(noisy, None, fps=fps, **NOISY_ENCODING)
    return ("ok", data, {**meta, "num_frames": int(noisy.shape[0]), "container": NOISY_ENCODING["container"]})


def build_noisy_shards(
    source: str | os.PathLike | Sequence[VideoRecord],
    out_dir: str | os.PathLike,
    kind: str,
    severity: int,
    preset: str = "video-p",
    seed: int = 0,
    shard_size: int = 256,
    split: str | None = None,
    num_workers: int | None = None,
) -> ShardReport:
    """Materialise a noisy copy of a dataset, losslessly, for robustness evaluation.

    ``source`` is a shard directory written by :func:`build_shards` or a list of records. Each
    video is decoded in full, perturbed by ``hf_vssl.data.noise.NoiseTransform(kind, severity,
    preset, seed)`` keyed by its video id (so the noise is the same in every run), and stored
    as FFV1 (bgr0) in Matroska: decoding gives back exactly the noisy frames, which a lossy
    codec would smooth away. Lossless noisy video is large (noise does not compress): expect
    roughly ``3 x H x W`` bytes per frame. ``split`` selects one split of a shard directory or
    renames the split of records.
    """
    started = time.perf_counter()
    NoiseTransform(kind, severity, preset, seed)  # validate the settings before any work
    out = prepare_out_dir(out_dir)
    if isinstance(source, (str, os.PathLike)):
        manifest = read_manifest(source)
        prefix = manifest.get("prefix", "videos")
        tasks = (
            (data, f"{source}:{meta['video_id']}", meta, kind, severity, preset, seed)
            for data, meta in iter_shard_samples(source, split)
        )
    else:
        prefix = default_prefix(source)
        tasks = (
            (str(r.path), str(r.path), record_meta(r, split or r.split, 0, ""), kind, severity, preset, seed)
            for r in source
        )
    prefix = f"{prefix}-{kind}{severity}"
    extra = {
        "noise": {"kind": kind, "severity": severity, "preset": preset, "seed": seed},
        "reencode": NOISY_ENCODING,
    }
    results = run_tasks(_noisy_task, tasks, default_workers(num_workers))
    return write_all(results, out, prefix, shard_size, NOISY_ENCODING["container"], extra, started)
