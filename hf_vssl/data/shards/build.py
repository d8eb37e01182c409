"""Building shards from records: validate every video (and re-encode it), then write."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from hf_vssl.data.decoding import VideoDecodeError, probe_video
from hf_vssl.data.records import VideoRecord

from .format import record_meta, video_field
from .reencode import ReencodeOptions, reencode_video
from .write import ShardReport, default_prefix, default_workers, prepare_out_dir, run_tasks, write_all


def encode_record(task: tuple[VideoRecord, str, ReencodeOptions | None]) -> tuple:
    """Validate (and re-encode) one ``(record, split, reencode)`` -> ``("ok", bytes, meta)`` or
    ``("bad", path, reason)``."""
    record, split, reencode = task
    path = str(record.path)
    try:
        if reencode is None:
            info = probe_video(path)
            with open(path, "rb") as handle:
                data = handle.read()
            container = Path(path).suffix.lstrip(".").lower()
            num = info["num_frames"]
        else:
            data, num = reencode_video(path, reencode)
            container = reencode.container
    except VideoDecodeError as error:
        return ("bad", path, error.reason)
    except OSError as error:
        return ("bad", path, f"cannot read file: {error.strerror or error}")
    return ("ok", data, record_meta(record, split, num, container))


def build_shards(
    records: Sequence[VideoRecord],
    out_dir: str | os.PathLike,
    shard_size: int = 256,
    reencode: ReencodeOptions | None = None,
    split: str | None = None,
    num_workers: int | None = None,
    prefix: str | None = None,
) -> ShardReport:
    """Validate ``records`` and write them as WebDataset shards + ``manifest.json`` in ``out_dir``.

    Args:
        records: the videos; each is opened and checked, bad ones go to ``ShardReport.skipped``.
        out_dir: an empty (or new) directory.
        shard_size: samples per tar shard. Prefer at least as many shards per split as
            ``world_size x DataLoader workers`` (each worker streams whole shards).
        reencode: None keeps the original bytes; :class:`ReencodeOptions` re-encodes (smaller,
            short GOP: faster random clip access).
        split: write every record under this split name (default: each record's own ``split``).
        num_workers: processes for validation / re-encoding (default: CPU count, at most 8).
        prefix: shard name prefix (default: the records' common ``source``, else ``"videos"``).

    Shards are named ``{prefix}-{split}-{00000}.tar``; sample keys are the video ids with
    anything but ``[A-Za-z0-9_-]`` replaced by ``_``.
    """
    started = time.perf_counter()
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out = prepare_out_dir(out_dir)
    if prefix is None:
        prefix = default_prefix(records)
    field_ext = video_field(reencode.container) if reencode is not None else None
    tasks = [(record, split or record.split, reencode) for record in records]
    results = run_tasks(encode_record, tasks, default_workers(num_workers))
    extra = {"reencode": asdict(reencode) if reencode is not None else None}
    return write_all(results, out, prefix, shard_size, field_ext, extra, started)
