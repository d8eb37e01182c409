"""Which video goes into which shard: the source's records, checked, ordered for nested subsets.

Every video is checked first (:func:`hf_vssl.data.decoding.probe_video`: a scan of the whole
file and a decode of its last frame), so the subsets are drawn from videos that can be read and
a subset of ``n`` holds ``n`` videos. Probe results are appended to ``.prepare/probe.jsonl`` as
they come, so an interrupted preparation does not probe a file twice.

The split the subsets come from is written in the order :func:`hf_vssl.data.subsets.balanced_subset`
deals it: the smallest subset's videos first, then what each next size adds, then the rest of
the split; a shard closes at every subset boundary, so subset ``n`` is a prefix of the split's
shards (the contract of :mod:`hf_vssl.data.shards.variants`). Other splits keep the source's order.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hf_vssl.data.decoding import VideoDecodeError, probe_video
from hf_vssl.data.records import VideoRecord
from hf_vssl.data.shards.write import run_tasks, unique_key
from hf_vssl.data.sources import load_source
from hf_vssl.data.subsets import balanced_subset

from .arguments import PrepareArguments

#: The fields of a record a shard needs (``extra`` stays with the source).
RECORD_FIELDS = ("path", "label", "label_name", "video_id", "split", "source", "start", "end")


def display_path(path: str, root: str | None) -> str:
    """``path`` relative to the dataset root (what a published manifest or card may show)."""
    if root is not None:
        relative = os.path.relpath(path, root)
        if not relative.startswith(".."):
            return relative
    return os.path.basename(path)


def _probe(path: str) -> tuple[str, str | None]:
    try:
        probe_video(path)
    except VideoDecodeError as error:
        return path, error.reason
    except OSError as error:
        return path, f"cannot read file: {error.strerror or error}"
    return path, None


def _read_probe_cache(path: Path) -> dict[str, str | None]:
    """``{video path: None (readable) or the reason it is not}`` from earlier runs."""
    known: dict[str, str | None] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # the last line of a killed run may be cut short
                continue
            known[entry["path"]] = entry["reason"]
    return known


def probe_all(paths: Iterable[str], cache: Path, num_workers: int) -> dict[str, str | None]:
    """Probe every video once (in ``num_workers`` processes), reusing and extending ``cache``."""
    known = _read_probe_cache(cache)
    pending = sorted({path for path in paths if path not in known})
    if pending:
        with cache.open("a", encoding="utf-8") as log:
            results = run_tasks(_probe, pending, num_workers)
            for path, reason in tqdm(results, total=len(pending), desc="checking videos", unit="video"):
                known[path] = reason
                log.write(json.dumps({"path": path, "reason": reason}) + "\n")
                log.flush()
    return known


def load_records(args: PrepareArguments) -> tuple[dict[str, list[VideoRecord]], dict[int, str], list[dict]]:
    """Each split's records, the source's label space and the skipped annotation entries."""
    records: dict[str, list[VideoRecord]] = {}
    label_names: dict[int, str] = {}
    skipped: list[dict] = []
    for split in args.all_splits:
        with warnings.catch_warnings():  # the problems are reported below, each with its reason
            warnings.simplefilter("ignore", UserWarning)
            report = load_source(args.source, args.dataset_root, split, args.fold, return_report=True)
        if not report.records:
            raise ValueError(f"--splits {split}: {args.dataset} at {args.dataset_root} has no video in it")
        records[split] = report.records
        label_names = label_names or report.id2label()
        skipped += [
            {
                "path": f"{display_path(p.file, args.dataset_root)}" + (f":{p.line}" if p.line else ""),
                "reason": p.reason,
                "stage": "annotation",
            }
            for p in report.problems
        ]
    return records, label_names, skipped


def _chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def plan_split(split: str, records: list[VideoRecord], args: PrepareArguments, prefix: str) -> dict[str, Any]:
    """The shards of one split (``{"shards": [{"file", "videos": [{"record", "key"}]}], "subsets"}``)."""
    sizes = sorted(args.subset_sizes) if split == args.subset_split else []
    if sizes and sizes[-1] > len(records):
        raise ValueError(
            f"--subset_sizes {sizes[-1]}: split {split!r} has only {len(records)} readable videos"
        )
    if sizes:
        balanced_subset(records, sizes[-1], args.subset_seed)  # warns when a size cannot be balanced
        with warnings.catch_warnings():  # the tail beyond the largest subset need not be balanced
            warnings.simplefilter("ignore", UserWarning)
            records = balanced_subset(records, len(records), args.subset_seed)
    bounds = [0, *sizes, len(records)] if sizes[-1:] != [len(records)] else [0, *sizes]
    taken: set[str] = set()
    shards: list[dict[str, Any]] = []
    subsets: dict[str, dict[str, int]] = {}
    for start, end, size in zip(bounds, bounds[1:], [*sizes, None]):
        for chunk in _chunks(records[start:end], args.shard_size):
            videos = [
                {
                    "record": {name: getattr(r, name) for name in RECORD_FIELDS},
                    "key": unique_key(r.video_id, taken),
                }
                for r in chunk
            ]
            shards.append({"file": f"{prefix}-{split}-{len(shards):05d}.tar", "videos": videos})
        if size is not None:
            subsets[str(size)] = {"num_shards": len(shards), "seed": args.subset_seed}
    return {"shards": shards, "subsets": subsets}


def make_plan(args: PrepareArguments, state_dir: Path, num_workers: int) -> dict[str, Any]:
    """Parse the source, probe every video (cached in ``state_dir``) and lay out every shard."""
    records, label_names, skipped = load_records(args)
    problems = probe_all(
        (r.path for split in records.values() for r in split), state_dir / "probe.jsonl", num_workers
    )
    splits = {}
    for split, split_records in records.items():
        readable = []
        for record in split_records:
            if problems[record.path] is None:
                readable.append(record)
            else:
                path = display_path(record.path, args.dataset_root)
                skipped.append({"path": path, "reason": problems[record.path], "stage": "check"})
        if not readable:
            raise ValueError(f"split {split!r}: none of its {len(split_records)} videos can be read")
        splits[split] = plan_split(split, readable, args, args.shard_prefix)
    return {
        "label_names": {str(k): v for k, v in sorted(label_names.items())},
        "splits": splits,
        "skipped": skipped,
    }
