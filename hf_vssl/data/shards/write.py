"""Writing shards: numbered tars per split, the worker pool, the manifest and the report."""

from __future__ import annotations

import collections
import contextlib
import io
import itertools
import json
import multiprocessing
import os
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hf_vssl.data.records import VideoRecord

from .format import MANIFEST_FORMAT, MANIFEST_NAME, META_FIELDS, sample_key, video_field


@dataclass
class ShardReport:
    """What :func:`build_shards` / :func:`build_noisy_shards` did.

    ``written``: samples written; ``skipped``: ``(path, reason)`` of inputs that failed
    validation; ``shards``: tar paths written; ``manifest``: path of ``manifest.json``.
    """

    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)
    manifest: str = ""
    per_split: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"ShardReport(written={self.written}, skipped={len(self.skipped)}, shards={len(self.shards)}, "
            f"per_split={self.per_split}, {self.seconds:.1f}s)"
        )


def unique_key(video_id: str, taken: set[str]) -> str:
    """The sample key of ``video_id`` (:func:`sample_key`), suffixed ``_1``, ``_2``, ... when
    ``taken`` already holds it (the same video twice, e.g. two annotated segments); added to ``taken``."""
    key = sample_key(video_id)
    if key in taken:
        suffix = 1
        while f"{key}_{suffix}" in taken:
            suffix += 1
        key = f"{key}_{suffix}"
    taken.add(key)
    return key


@contextlib.contextmanager
def atomic_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """A tar opened for writing under a hidden ``.<name>.partial`` name, renamed to ``path`` only
    when the block completes (a reader or a resumed run never sees half a shard); removed on error."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with tarfile.open(partial, "w", format=tarfile.USTAR_FORMAT) as tar:
            yield tar
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def add_sample(tar: tarfile.TarFile, key: str, field_ext: str, data: bytes, meta: dict[str, Any]) -> None:
    """Append one sample (``<key>.<field_ext>`` video bytes + ``<key>.json`` metadata) to ``tar``."""
    for name, payload in (
        (f"{key}.{field_ext}", data),
        (f"{key}.json", json.dumps(meta, sort_keys=True).encode()),
    ):
        member = tarfile.TarInfo(name)
        member.size, member.mtime, member.mode = len(payload), 0, 0o644  # reproducible tars
        tar.addfile(member, io.BytesIO(payload))


class ShardWriter:
    """Writes samples of one split into numbered tar shards of ``shard_size`` samples each."""

    def __init__(self, out_dir: Path, prefix: str, split: str, shard_size: int):
        self.out_dir, self.prefix, self.split, self.shard_size = out_dir, prefix, split, shard_size
        self.shards: list[dict[str, Any]] = []
        self.class_counts: collections.Counter = collections.Counter()
        self._tar: tarfile.TarFile | None = None
        self._tmp: Path | None = None
        self._keys: set[str] = set()

    def _open_next(self) -> None:
        name = f"{self.prefix}-{self.split}-{len(self.shards):05d}.tar"
        self._tmp = self.out_dir / f".{name}.partial"
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115 - spans writes
        self.shards.append({"file": name, "num_videos": 0})

    def _close_current(self) -> None:
        if self._tar is not None:
            self._tar.close()
            os.replace(self._tmp, self.out_dir / self.shards[-1]["file"])  # complete shards only
            self._tar = None

    def write(self, data: bytes, meta: dict[str, Any], field_ext: str) -> None:
        if self._tar is None or self.shards[-1]["num_videos"] >= self.shard_size:
            self._close_current()
            self._open_next()
        add_sample(self._tar, unique_key(meta["video_id"], self._keys), field_ext, data, meta)
        self.shards[-1]["num_videos"] += 1
        self.class_counts[meta["label_name"]] += 1

    def close(self) -> None:
        self._close_current()


def _worker_init(initializer: Callable | None = None, initargs: tuple = ()) -> None:
    # As DataLoader workers do: one intra-op thread per forked worker (parallelism comes from
    # the processes, and OpenMP pools inherited through fork must not be used).
    torch.set_num_threads(1)
    if initializer is not None:
        initializer(*initargs)


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method of :func:`worker_pool`: fork like DataLoader workers (a spawned worker
    re-imports torch: seconds each); spawn where fork does not exist."""
    return multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )


def worker_pool(
    num_workers: int, initializer: Callable | None = None, initargs: tuple = ()
) -> ProcessPoolExecutor:
    """A pool of ``num_workers`` processes (:func:`worker_context`), one intra-op thread each;
    ``initializer(*initargs)`` also runs in each worker."""
    return ProcessPoolExecutor(
        max_workers=num_workers,
        mp_context=worker_context(),
        initializer=_worker_init,
        initargs=(initializer, initargs),
    )


def run_tasks(fn: Callable, tasks: Iterable, num_workers: int) -> Iterator:
    """``map(fn, tasks)`` in order, in worker processes when ``num_workers > 1``.

    Tasks are consumed in windows so that a large dataset never sits in memory at once
    (workers: :func:`worker_pool`).
    """
    if num_workers <= 1:
        yield from map(fn, tasks)
        return
    iterator = iter(tasks)
    with worker_pool(num_workers) as pool:
        while window := list(itertools.islice(iterator, 8 * num_workers)):
            yield from pool.map(fn, window)


def default_workers(num_workers: int | None) -> int:
    return max(1, min(8, os.cpu_count() or 1)) if num_workers is None else max(1, int(num_workers))


def write_all(
    results: Iterable[tuple],
    out_dir: Path,
    prefix: str,
    shard_size: int,
    field_ext: str | None,
    extra_manifest: dict[str, Any],
    started: float,
) -> ShardReport:
    writers: dict[str, ShardWriter] = {}
    report = ShardReport()
    label_names: dict[int, str] = {}
    containers: collections.Counter = collections.Counter()
    buffered: list[tuple[bytes, dict]] = []

    def emit(data: bytes, meta: dict) -> None:
        split = meta["split"]
        if split not in writers:
            writers[split] = ShardWriter(out_dir, prefix, split, shard_size)
        writers[split].write(data, meta, field_ext)
        label_names.setdefault(meta["label"], meta["label_name"])
        report.written += 1

    for result in results:
        if result[0] == "bad":
            report.skipped.append((result[1], result[2]))
            continue
        _, data, meta = result
        containers[meta["container"]] += 1
        if field_ext is None:
            # Keep-bytes builds pick the field from the inputs; decide after a few samples.
            buffered.append((data, meta))
            if len(buffered) < 32:
                continue
            field_ext = video_field(containers.most_common(1)[0][0])
            for item in buffered:
                emit(*item)
            buffered.clear()
            continue
        emit(data, meta)
    if buffered:
        field_ext = video_field(containers.most_common(1)[0][0])
        for item in buffered:
            emit(*item)
    for writer in writers.values():
        writer.close()

    splits = {
        split: split_entry(writer.shards, writer.class_counts) for split, writer in sorted(writers.items())
    }
    manifest = build_manifest(
        prefix,
        field_ext,
        splits,
        label_names,
        containers,
        [{"path": p, "reason": r} for p, r in report.skipped],
        extra_manifest,
    )
    manifest_path = write_manifest(out_dir, manifest)
    report.shards = [str(out_dir / s["file"]) for split in splits.values() for s in split["shards"]]
    report.manifest = str(manifest_path)
    report.per_split = {name: split["num_videos"] for name, split in splits.items()}
    report.seconds = time.perf_counter() - started
    return report


def split_entry(shards: list[dict[str, Any]], class_counts: dict[str, int]) -> dict[str, Any]:
    """A split's manifest entry: its shards (``{"file", "num_videos"}``), video count, per-class counts."""
    return {
        "num_videos": sum(s["num_videos"] for s in shards),
        "shards": shards,
        "class_counts": dict(sorted(class_counts.items())),
    }


def build_manifest(
    prefix: str,
    field_ext: str | None,
    splits: dict[str, dict[str, Any]],
    label_names: dict[int, str],
    containers: dict[str, int],
    skipped: list[dict[str, Any]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The ``manifest.json`` content (format in the package docstring); ``extra`` adds top-level keys."""
    return {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "prefix": prefix,
        "video_field": field_ext,
        "meta_fields": list(META_FIELDS),
        "written": sum(split["num_videos"] for split in splits.values()),
        "splits": splits,
        "label_names": {str(k): v for k, v in sorted(label_names.items())},
        "containers": dict(containers),
        "skipped": skipped,
        **extra,
    }


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (a reader never sees half of it); returns its path."""
    path = Path(out_dir) / MANIFEST_NAME
    partial = path.with_name(f".{MANIFEST_NAME}.partial")
    partial.write_text(json.dumps(manifest, indent=2, sort_keys=False))
    os.replace(partial, path)
    return path


def default_prefix(records: Sequence[VideoRecord]) -> str:
    """The records' common ``source`` (ignoring unset ones), else ``"videos"``."""
    sources = {r.source for r in records if r.source}
    return sample_key(sources.pop()) if len(sources) == 1 else "videos"


def prepare_out_dir(out_dir: str | os.PathLike) -> Path:
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    stale = sorted(path.glob("*.tar")) + ([path / MANIFEST_NAME] if (path / MANIFEST_NAME).exists() else [])
    if stale:
        raise FileExistsError(
            f"{path} already holds shards ({stale[0].name}, ...); write to an empty directory"
        )
    return path
