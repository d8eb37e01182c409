"""Writing video datasets as WebDataset tar shards that ``datasets`` streams as a Video column.

Layout of ``out_dir``::

    {prefix}-{split}-00000.tar   samples <key>.<ext> (the video file) + <key>.json (metadata)
    ...
    manifest.json                shards per split with counts, per-class counts, label names,
                                 skipped inputs, re-encode / noise settings

Why ``<key>.<ext>``: the ``webdataset`` builder of ``datasets`` (5.2,
``packaged_modules/webdataset``) names a column after everything behind the key's first dot and
makes it a ``datasets.Video`` feature (decoded by torchcodec) when the last extension is one of
``mkv, mp4, avi, mpeg, mov``. So keys must not contain dots, every sample of a dataset must use
the same field name, and ``.webm`` (not in that list) is stored under ``.mkv`` (WebM *is*
Matroska; FFmpeg recognises the content either way). A build with mixed containers uses the most
common one's field for all samples and records each file's real container in its json; decoding
goes by content, never by name. :func:`hf_vssl.data.streaming.load_video_dataset` renames the
field to ``video``.

Every input is validated before it is written (scan of the whole file, decode of its last frame,
header vs content frame count), so truncated or broken files end up in ``ShardReport.skipped``
with a reason instead of failing a training run later.

Re-encoding (:class:`ReencodeOptions`) scales videos to a short side of 128 and a short GOP: a
random clip then needs to decode at most one GOP of lead-in frames. ``benchmarks/data_pipeline.py``
measures the effect; torchcodec's decoder-side resize does the scaling.
"""

from __future__ import annotations

import collections
import io
import itertools
import json
import multiprocessing
import os
import re
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .decoding import VideoDecodeError, open_video, probe_video
from .records import VideoRecord

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "hf_vssl.webdataset"
#: Extensions the ``datasets`` webdataset builder turns into a Video column.
HF_VIDEO_EXTENSIONS = ("mkv", "mp4", "avi", "mpeg", "mov")
#: Other container extensions and the field they are stored under.
_EXTENSION_ALIASES = {"webm": "mkv", "m4v": "mp4", "mpg": "mpeg", "qt": "mov"}
#: Metadata fields of every sample's json, all always present (so streaming has a fixed schema).
META_FIELDS = (
    "label",
    "label_name",
    "video_id",
    "split",
    "source",
    "start",
    "end",
    "num_frames",
    "container",
    "filename",
)


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


def video_field(extension: str) -> str:
    """The WebDataset field (file extension) a container is stored under."""
    ext = extension.lower().lstrip(".")
    ext = _EXTENSION_ALIASES.get(ext, ext)
    if ext not in HF_VIDEO_EXTENSIONS:
        raise ValueError(
            f"container {extension!r} has no Video column in datasets' webdataset builder "
            f"(supported: {', '.join(HF_VIDEO_EXTENSIONS + tuple(_EXTENSION_ALIASES))}); re-encode with ReencodeOptions"
        )
    return ext


_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-]")


def sample_key(video_id: str) -> str:
    """A WebDataset key from a video id: no dots (the builder splits the key at the first dot),
    no slashes, nothing shell-unfriendly."""
    return _UNSAFE_KEY_CHARS.sub("_", str(video_id)) or "video"


# --- per-video work (runs in worker processes) ---------------------------------------------


def _record_meta(record: VideoRecord, split: str, num_frames: int, container: str) -> dict[str, Any]:
    return {
        "label": int(record.label),
        "label_name": str(record.label_name),
        "video_id": str(record.video_id),
        "split": split,
        "source": str(record.source),
        "start": None if record.start is None else int(record.start),
        "end": None if record.end is None else int(record.end),
        "num_frames": int(num_frames),
        "container": container,
        "filename": os.path.basename(str(record.path)),
    }


def _scaled_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    if short_side is None or min(height, width) <= short_side:
        scale = 1.0
    else:
        scale = short_side / min(height, width)

    def even(size: int) -> int:  # yuv420p needs even sizes
        return max(2, round(size * scale / 2) * 2)

    return even(height), even(width)


def reencode_video(source: Any, options: ReencodeOptions, name: str | None = None) -> tuple[bytes, int]:
    """Decode ``source`` (scaled on the decoder side) and encode it with ``options``.

    Returns ``(bytes, num_frames)``. The output is re-opened and its frame count checked.
    """
    from torchcodec.decoders import VideoDecoder
    from torchcodec.transforms import Resize

    from .video_io import encode_video

    probe = open_video(source, name=name, seek_mode="exact")  # exact: the scan sees truncation
    label = getattr(probe, "_hf_vssl_name", name)
    meta = probe.metadata
    height, width = _scaled_size(int(meta.height), int(meta.width), options.short_side)
    data = os.fspath(source) if isinstance(source, (str, os.PathLike)) else bytes(source)
    try:
        decoder = (
            probe
            if (height, width) == (meta.height, meta.width)
            else VideoDecoder(data, seek_mode="exact", transforms=[Resize((height, width))])
        )
        frames = decoder.get_frames_in_range(0, int(meta.num_frames)).data
    except (RuntimeError, ValueError) as error:
        raise VideoDecodeError(
            label, f"decoding for re-encode failed (truncated or corrupt?): {error}"
        ) from error
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


def _prepare_record(task: tuple[VideoRecord, str, ReencodeOptions | None]) -> tuple:
    """Validate (and re-encode) one record -> ``("ok", bytes, meta)`` or ``("bad", path, reason)``."""
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
    return ("ok", data, _record_meta(record, split, num, container))


# --- writing ------------------------------------------------------------------------------


class _ShardWriter:
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

    def _add(self, name: str, payload: bytes) -> None:
        member = tarfile.TarInfo(name)
        member.size, member.mtime, member.mode = len(payload), 0, 0o644  # reproducible tars
        self._tar.addfile(member, io.BytesIO(payload))

    def write(self, data: bytes, meta: dict[str, Any], field_ext: str) -> None:
        if self._tar is None or self.shards[-1]["num_videos"] >= self.shard_size:
            self._close_current()
            self._open_next()
        key = sample_key(meta["video_id"])
        if key in self._keys:  # the same video twice (e.g. two annotated segments): keep both
            suffix = 1
            while f"{key}_{suffix}" in self._keys:
                suffix += 1
            key = f"{key}_{suffix}"
        self._keys.add(key)
        self._add(f"{key}.{field_ext}", data)
        self._add(f"{key}.json", json.dumps(meta, sort_keys=True).encode("utf-8"))
        self.shards[-1]["num_videos"] += 1
        self.class_counts[meta["label_name"]] += 1

    def close(self) -> None:
        self._close_current()


def _worker_init() -> None:
    # As DataLoader workers do: one intra-op thread per forked worker (parallelism comes from
    # the processes, and OpenMP pools inherited through fork must not be used).
    import torch

    torch.set_num_threads(1)


def _run_tasks(fn: Callable, tasks: Iterable, num_workers: int) -> Iterator:
    """``map(fn, tasks)`` in order, in worker processes when ``num_workers > 1``.

    Tasks are consumed in windows so that a large dataset never sits in memory at once.
    Workers are forked like DataLoader workers (a spawned worker re-imports torch: seconds each).
    """
    if num_workers <= 1:
        yield from map(fn, tasks)
        return
    iterator = iter(tasks)
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=num_workers, mp_context=context, initializer=_worker_init) as pool:
        while window := list(itertools.islice(iterator, 8 * num_workers)):
            yield from pool.map(fn, window)


def _default_workers(num_workers: int | None) -> int:
    return max(1, min(8, os.cpu_count() or 1)) if num_workers is None else max(1, int(num_workers))


def _write_all(
    results: Iterable[tuple],
    out_dir: Path,
    prefix: str,
    shard_size: int,
    field_ext: str | None,
    extra_manifest: dict[str, Any],
    started: float,
) -> ShardReport:
    writers: dict[str, _ShardWriter] = {}
    report = ShardReport()
    label_names: dict[int, str] = {}
    containers: collections.Counter = collections.Counter()
    buffered: list[tuple[bytes, dict]] = []

    def emit(data: bytes, meta: dict) -> None:
        split = meta["split"]
        if split not in writers:
            writers[split] = _ShardWriter(out_dir, prefix, split, shard_size)
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
        split: {
            "num_videos": sum(s["num_videos"] for s in writer.shards),
            "shards": writer.shards,
            "class_counts": dict(sorted(writer.class_counts.items())),
        }
        for split, writer in sorted(writers.items())
    }
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "prefix": prefix,
        "video_field": field_ext,
        "meta_fields": list(META_FIELDS),
        "written": report.written,
        "splits": splits,
        "label_names": {str(k): v for k, v in sorted(label_names.items())},
        "containers": dict(containers),
        "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
        **extra_manifest,
    }
    manifest_path = out_dir / MANIFEST_NAME
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=False))
    report.shards = [str(out_dir / s["file"]) for split in splits.values() for s in split["shards"]]
    report.manifest = str(manifest_path)
    report.per_split = {name: split["num_videos"] for name, split in splits.items()}
    report.seconds = time.perf_counter() - started
    return report


def _default_prefix(records: Sequence[VideoRecord]) -> str:
    """The records' common ``source`` (ignoring unset ones), else ``"videos"``."""
    sources = {r.source for r in records if r.source}
    return sample_key(sources.pop()) if len(sources) == 1 else "videos"


def _prepare_out_dir(out_dir: str | os.PathLike) -> Path:
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    stale = sorted(path.glob("*.tar")) + ([path / MANIFEST_NAME] if (path / MANIFEST_NAME).exists() else [])
    if stale:
        raise FileExistsError(
            f"{path} already holds shards ({stale[0].name}, ...); write to an empty directory"
        )
    return path


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
    out = _prepare_out_dir(out_dir)
    if prefix is None:
        prefix = _default_prefix(records)
    field_ext = video_field(reencode.container) if reencode is not None else None
    tasks = [(record, split or record.split, reencode) for record in records]
    results = _run_tasks(_prepare_record, tasks, _default_workers(num_workers))
    extra = {"reencode": asdict(reencode) if reencode is not None else None}
    return _write_all(results, out, prefix, shard_size, field_ext, extra, started)


# --- noisy variants -----------------------------------------------------------------------

#: Lossless RGB: FFV1 in bgr0 round-trips uint8 RGB exactly (yuv444p does not: rounding).
NOISY_ENCODING = {"container": "mkv", "codec": "ffv1", "pix_fmt": "bgr0"}


def iter_shard_samples(
    shard_dir: str | os.PathLike, split: str | None = None
) -> Iterator[tuple[bytes, dict]]:
    """``(video bytes, meta)`` of every sample in a local shard directory, in manifest order."""
    manifest = read_manifest(shard_dir)
    for split_name, info in manifest["splits"].items():
        if split is not None and split_name != split:
            continue
        for shard in info["shards"]:
            yield from _iter_tar(Path(shard_dir) / shard["file"])


def _iter_tar(path: Path) -> Iterator[tuple[bytes, dict]]:
    pending: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path, "r") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            pending.setdefault(key, {})[ext] = tar.extractfile(member).read()
            entry = pending[key]
            video = [e for e in entry if e != "json"]
            if "json" in entry and video:
                yield entry[video[0]], json.loads(entry["json"])
                del pending[key]
    if pending:
        raise ValueError(f"{path}: samples without a video or json member: {sorted(pending)[:5]}")


def read_manifest(shard_dir: str | os.PathLike) -> dict[str, Any]:
    """Load and check ``manifest.json`` of a local shard directory."""
    path = Path(shard_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {shard_dir} is not a shard directory written by build_shards"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: unknown manifest format {manifest.get('format')!r}")
    return manifest


def _noisy_task(task: tuple) -> tuple:
    """Decode one video fully, add seeded noise, encode losslessly -> ``("ok", bytes, meta)``."""
    from .noise import NoiseTransform
    from .video_io import encode_video

    source, name, meta, kind, severity, preset, seed = task
    try:
        decoder = open_video(source, name=name, seek_mode="exact")
        frames = decoder.get_frames_in_range(0, int(decoder.metadata.num_frames)).data
    except VideoDecodeError as error:
        return ("bad", name, error.reason)
    except (RuntimeError, ValueError) as error:
        return ("bad", name, f"decoding failed (truncated or corrupt?): {error}")
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
    from .noise import NoiseTransform

    NoiseTransform(kind, severity, preset, seed)  # validate the settings before any work
    out = _prepare_out_dir(out_dir)
    if isinstance(source, (str, os.PathLike)):
        manifest = read_manifest(source)
        prefix = manifest.get("prefix", "videos")
        tasks = (
            (data, f"{source}:{meta['video_id']}", meta, kind, severity, preset, seed)
            for data, meta in iter_shard_samples(source, split)
        )
    else:
        prefix = _default_prefix(source)
        tasks = (
            (str(r.path), str(r.path), _record_meta(r, split or r.split, 0, ""), kind, severity, preset, seed)
            for r in source
        )
    prefix = f"{prefix}-{kind}{severity}"
    extra = {
        "noise": {"kind": kind, "severity": severity, "preset": preset, "seed": seed},
        "reencode": NOISY_ENCODING,
    }
    results = _run_tasks(_noisy_task, tasks, _default_workers(num_workers))
    return _write_all(results, out, prefix, shard_size, NOISY_ENCODING["container"], extra, started)


__all__ = [
    "HF_VIDEO_EXTENSIONS",
    "MANIFEST_NAME",
    "META_FIELDS",
    "ReencodeOptions",
    "ShardReport",
    "build_noisy_shards",
    "build_shards",
    "iter_shard_samples",
    "read_manifest",
    "reencode_video",
    "sample_key",
    "video_field",
]
