"""Noisy copies of a dataset, stored losslessly, for robustness evaluation.

Two forms: :func:`build_noisy_shards` writes a shard dataset of its own; :func:`write_noisy_split`
adds the copy to an existing shard folder as the split ``noisy_split_name(split, kind, severity)``
(``test.gaussian.s3``), whose manifest entry carries ``"noise"``, so recipes pick it by name
(``hf_vssl.data.shards.variants.published_noisy_split``). Only pixel noises have a stored form:
their noise is a function of each frame of the video (``NoiseTransform``), so a stored copy gives
exactly the clips that noise added on the fly gives. Temporal perturbations act on the sampled
clip and are always made on the fly.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence

from hf_vssl.data.decoding import VideoDecodeError, decode_all, open_video
from hf_vssl.data.noise import PIXEL_NOISES, NoiseTransform
from hf_vssl.data.records import VideoRecord
from hf_vssl.data.video_io import encode_video

from .format import MANIFEST_NAME, record_meta
from .read import iter_shard_samples, read_manifest
from .variants import noisy_split_name
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
    _check_storable(kind, severity, preset, seed)
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


def _check_storable(kind: str, severity: int, preset: str, seed: int) -> NoiseTransform:
    noise = NoiseTransform(kind, severity, preset, seed)  # validate the settings before any work
    if kind not in PIXEL_NOISES or not noise.per_frame:
        raise ValueError(
            f"noise {kind!r} severity {severity} has no stored form: only pixel noises "
            f"({', '.join(PIXEL_NOISES)}) at severities >= 1 are written; temporal perturbations act on "
            "the sampled clip and are made on the fly"
        )
    return noise


def write_noisy_split(
    shard_dir: str | os.PathLike,
    split: str,
    kind: str,
    severity: int,
    preset: str = "video-p",
    seed: int = 0,
    num_workers: int | None = None,
) -> ShardReport:
    """Add the noisy copy of ``split`` to the shard folder ``shard_dir`` as a split of its own.

    The split is named :func:`~hf_vssl.data.shards.variants.noisy_split_name` (``test.gaussian.s3``);
    its videos are those of ``split`` in the same order, noised as in :func:`build_noisy_shards`
    (FFV1, lossless) and stored under the folder's video field (decoding goes by content); its
    manifest entry carries ``"noise": {"kind", "severity", "preset", "seed"}`` and the encoding.
    The manifest entry is written last, so an interrupted call leaves the manifest as it was (a
    rerun redoes the split); calling again with the same settings once the split exists does nothing (report with
    ``written == 0``); other settings under that name are refused.
    """
    started = time.perf_counter()
    _check_storable(kind, severity, preset, seed)
    folder = os.path.abspath(os.fspath(shard_dir))
    manifest = read_manifest(folder)
    name = noisy_split_name(split, kind, severity)
    where = f"{folder}/{MANIFEST_NAME}"
    if split not in manifest["splits"]:
        raise ValueError(f"{where} has no split {split!r}; available: {', '.join(manifest['splits'])}")
    wanted = {"kind": kind, "severity": int(severity), "preset": preset, "seed": int(seed)}
    existing = manifest["splits"].get(name)
    if existing is not None:
        if existing.get("noise") != wanted:
            raise FileExistsError(
                f"{where}: split {name!r} already exists with noise {existing.get('noise')}"
            )
        return ShardReport(manifest=where, seconds=time.perf_counter() - started)
    staging = os.path.join(folder, f".{name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted call left
    tasks = (
        (data, f"{folder}:{meta['video_id']}", {**meta, "split": name}, kind, severity, preset, seed)
        for data, meta in iter_shard_samples(folder, split)
    )
    results = run_tasks(_noisy_task, tasks, default_workers(num_workers))
    report = write_all(
        results,
        prepare_out_dir(staging),
        manifest.get("prefix", "videos"),
        _shard_size(manifest, split),
        manifest["video_field"],
        {},
        started,
    )
    staged = read_manifest(staging)
    entry = staged["splits"].get(name, {"num_videos": 0, "shards": [], "class_counts": {}})
    for shard in entry["shards"]:
        os.replace(os.path.join(staging, shard["file"]), os.path.join(folder, shard["file"]))
    entry.update(noise=wanted, encoding=NOISY_ENCODING, skipped=staged["skipped"])
    manifest["splits"][name] = entry
    temporary = f"{where}.partial"
    with open(temporary, "w") as handle:
        json.dump(manifest, handle, indent=2)
    os.replace(temporary, where)
    shutil.rmtree(staging)
    report.shards = [os.path.join(folder, shard["file"]) for shard in entry["shards"]]
    report.manifest = where
    return report


def _shard_size(manifest: dict, split: str) -> int:
    """The videos per shard of ``split`` (its first shard's count), so the copy shards alike."""
    shards = manifest["splits"][split]["shards"]
    return max(1, int(shards[0]["num_videos"])) if shards else 256
