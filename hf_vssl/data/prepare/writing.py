"""Writing the planned shards in worker processes, resumably, and the manifest from what was written.

A shard is written under a hidden partial name and renamed when complete
(:func:`hf_vssl.data.shards.write.atomic_tar`); then its done-marker
``.prepare/done/<shard>.json`` (videos and per-class counts written, inputs skipped) is saved,
also atomically. A resumed run writes only the shards without a marker.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hf_vssl.data.records import VideoRecord
from hf_vssl.data.shards import ReencodeOptions, video_field
from hf_vssl.data.shards.build import encode_record
from hf_vssl.data.shards.write import (
    add_sample,
    atomic_tar,
    build_manifest,
    split_entry,
    worker_context,
    worker_pool,
)

from .plan import display_path


def save_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (rename of a complete hidden file)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    os.replace(partial, path)


def _no_progress() -> None:
    pass


#: Called after each video a shard task finished: advances the progress bar (in the parent
#: directly, in a worker through a queue the parent reads).
_on_video: Callable[[], None] = _no_progress


def _report_through(queue) -> None:
    """Worker initializer: report each finished video on ``queue``."""
    global _on_video  # a per-process setting, made once when the worker starts
    _on_video = functools.partial(queue.put, 1)


def write_planned_shard(task: tuple) -> dict[str, Any]:
    """Re-encode one planned shard's videos into its tar; save and return its done-marker."""
    out_dir, done_dir, split, shard, reencode, root = task
    field_ext = video_field(reencode.container)
    class_counts: collections.Counter = collections.Counter()
    skipped = []
    with atomic_tar(out_dir / shard["file"]) as tar:
        for video in shard["videos"]:
            result = encode_record((VideoRecord(**video["record"]), split, reencode))
            _on_video()
            if result[0] == "bad":
                skipped.append(
                    {"path": display_path(result[1], root), "reason": result[2], "stage": "re-encode"}
                )
                continue
            _, data, meta = result
            add_sample(tar, video["key"], field_ext, data, meta)
            class_counts[meta["label_name"]] += 1
    marker = {
        "file": shard["file"],
        "num_videos": sum(class_counts.values()),
        "class_counts": dict(sorted(class_counts.items())),
        "skipped": skipped,
    }
    save_json(done_dir / f"{shard['file']}.json", marker)
    return marker


def read_markers(out_dir: Path, done_dir: Path) -> dict[str, dict[str, Any]]:
    """``{shard file: done-marker}`` of the shards finished so far (their tar present too)."""
    markers = {}
    for path in sorted(done_dir.glob("*.json")):
        marker = json.loads(path.read_text(encoding="utf-8"))
        if (out_dir / marker["file"]).is_file():
            markers[marker["file"]] = marker
    return markers


def write_shards(
    plan: dict[str, Any],
    out_dir: Path,
    done_dir: Path,
    reencode: ReencodeOptions,
    root: str | None,
    num_workers: int,
) -> tuple[dict[str, dict[str, Any]], int]:
    """Write every planned shard that has no done-marker, ``num_workers`` shards at a time.

    Returns ``({shard file: marker}, number of shards reused from an earlier run)``.
    """
    markers = read_markers(out_dir, done_dir)
    reused = len(markers)
    tasks = [
        (out_dir, done_dir, split, shard, reencode, root)
        for split, entry in plan["splits"].items()
        for shard in entry["shards"]
        if shard["file"] not in markers
    ]
    total = sum(len(task[3]["videos"]) for task in tasks)
    with tqdm(total=total, desc="writing shards", unit="video") as progress:
        if num_workers <= 1 or len(tasks) <= 1:
            _write_here(tasks, markers, progress)
        else:
            _write_in_pool(tasks, min(num_workers, len(tasks)), markers, progress)
    return markers, reused


def _write_here(tasks: list[tuple], markers: dict[str, dict[str, Any]], progress) -> None:
    global _on_video  # this process's progress callback, restored below
    _on_video = functools.partial(progress.update, 1)
    try:
        for task in tasks:
            marker = write_planned_shard(task)
            markers[marker["file"]] = marker
    finally:
        _on_video = _no_progress


def _write_in_pool(
    tasks: list[tuple], num_workers: int, markers: dict[str, dict[str, Any]], progress
) -> None:
    queue = worker_context().SimpleQueue()  # one item per finished video
    with worker_pool(num_workers, _report_through, (queue,)) as pool:
        pending = {pool.submit(write_planned_shard, task) for task in tasks}
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    marker = future.result()
                    markers[marker["file"]] = marker
                while not queue.empty():
                    queue.get()
                    progress.update(1)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # finished shards keep their markers
            raise


def assemble_manifest(
    plan: dict[str, Any],
    markers: dict[str, dict[str, Any]],
    reencode: ReencodeOptions,
    prefix: str,
    extra: dict[str, Any],
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """The manifest of the written shards: per split its shards, counts and nested subsets; the
    noisy splits an earlier run added (``previous``) are kept."""
    splits: dict[str, dict[str, Any]] = {}
    skipped = list(plan["skipped"])
    for split, entry in plan["splits"].items():
        shard_markers = [markers[shard["file"]] for shard in entry["shards"]]
        counts: collections.Counter = collections.Counter()
        prefix_counts = []  # class counts of the first i + 1 shards
        for marker in shard_markers:
            counts.update(marker["class_counts"])
            prefix_counts.append(dict(sorted(counts.items())))
            skipped += marker["skipped"]
        splits[split] = split_entry(
            [{"file": m["file"], "num_videos": m["num_videos"]} for m in shard_markers], counts
        )
        if entry["subsets"]:
            splits[split]["subsets"] = {
                size: {
                    "num_shards": subset["num_shards"],
                    "num_videos": sum(prefix_counts[subset["num_shards"] - 1].values()),
                    "seed": subset["seed"],
                    "class_counts": prefix_counts[subset["num_shards"] - 1],
                }
                for size, subset in entry["subsets"].items()
            }
    for name, entry in ((previous or {}).get("splits") or {}).items():
        if "noise" in entry and name not in splits:
            splits[name] = entry
    written = sum(splits[split]["num_videos"] for split in plan["splits"])
    manifest = build_manifest(
        prefix,
        video_field(reencode.container),
        splits,
        {int(k): v for k, v in plan["label_names"].items()},
        {reencode.container: written},
        skipped,
        {"reencode": dataclasses.asdict(reencode), **extra},
    )
    manifest["written"] = written
    return manifest
