"""Class-balanced, nested training subsets (the study's K400 10k / 30k / 50k / 100k) and their files.

``balanced_subset`` deals videos round by round: each class's videos are sorted by
``video_id`` and shuffled with the seed, the classes are put in a seeded order, and round ``r``
takes the ``r``-th video of every class in that order. The subset of size ``n`` is the first
``n`` videos dealt. Hence, for one seed and corpus:

- balanced: per-class counts differ by at most one;
- nested: the subset of size 10k is a prefix of (so inside) the subset of size 30k, and so on;
- deterministic: it depends on the seed and the set of ``video_id``s, not on the input order.

When a class runs out of videos, the next rounds skip it and keep dealing the other classes:
classes with videos left still differ by at most one, the exhausted ones hold all they have
(a ``UserWarning`` says so). A size larger than the corpus is a ``ValueError``.

A subset is shared as a small JSON file (ids, seed, size, per-class counts): ``save_subset``,
``load_subset`` and ``select_by_ids`` rebuild it from any copy of the corpus.
"""

from __future__ import annotations

import json
import random
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hf_vssl.data.records import VideoRecord

SUBSET_FORMAT_VERSION = 1


def _deal_order(records: Sequence[VideoRecord], seed: int) -> tuple[list[VideoRecord], int]:
    """All records in dealing order, and the largest size at which every class is within one."""
    by_class: dict[int, list[VideoRecord]] = defaultdict(list)
    for record in records:
        by_class[record.label].append(record)
    rng = random.Random(seed)  # stdlib Mersenne Twister: the same order on every platform
    labels = sorted(by_class)
    queues = []
    for label in labels:
        queue = sorted(by_class[label], key=lambda r: (r.video_id, r.path))
        rng.shuffle(queue)
        queues.append(queue)
    rng.shuffle(queues)
    rounds = max(len(q) for q in queues)
    order = [q[r] for r in range(rounds) for q in queues if r < len(q)]
    smallest = min(len(q) for q in queues)
    return order, sum(min(len(q), smallest + 1) for q in queues)


def balanced_subset(records: Sequence[VideoRecord], size: int, seed: int = 0) -> list[VideoRecord]:
    """A class-balanced subset of ``size`` records, nested across sizes for one ``seed``.

    See the module docstring for the algorithm and what happens when classes run out.
    """
    records = list(records)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if size > len(records):
        raise ValueError(f"size {size} is larger than the corpus ({len(records)} videos)")
    ids = Counter(r.video_id for r in records)
    duplicates = [i for i, n in ids.items() if n > 1]
    if duplicates:
        raise ValueError(f"video_id must be unique; repeated: {duplicates[:5]}")
    order, balanced_up_to = _deal_order(records, seed)
    if size > balanced_up_to:
        warnings.warn(
            f"a subset of {size} cannot be balanced (the smallest class runs out beyond {balanced_up_to}): "
            "exhausted classes contribute all their videos, the others stay within one of each other",
            UserWarning,
            stacklevel=2,
        )
    return order[:size]


def class_counts(records: Iterable[VideoRecord]) -> dict[str, int]:
    """Videos per class, keyed by ``label_name`` (or the label index when it has no name)."""
    counts = Counter(r.label_name or str(r.label) for r in records)
    return dict(sorted(counts.items()))


def save_subset(
    records_or_ids: Iterable[VideoRecord | str], path: str | Path, seed: int | None = None
) -> Path:
    """Write a subset as JSON: ``{"version", "size", "seed", "class_counts", "ids"}``.

    ``seed`` is recorded for provenance (pass the one given to :func:`balanced_subset`);
    ``class_counts`` is filled when records (not bare ids) are given.
    """
    items = list(records_or_ids)
    records = [item for item in items if isinstance(item, VideoRecord)]
    if records and len(records) != len(items):
        raise TypeError("save_subset takes either VideoRecords or video id strings, not a mix")
    ids = [r.video_id for r in records] if records else [str(item) for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("a subset cannot list the same video_id twice")
    payload: dict[str, Any] = {
        "version": SUBSET_FORMAT_VERSION,
        "size": len(ids),
        "seed": seed,
        "class_counts": class_counts(records) if records else None,
        "ids": ids,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path


def load_subset(path: str | Path) -> list[str]:
    """The video ids saved by :func:`save_subset`, in their saved order."""
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(payload, dict) or not isinstance(payload.get("ids"), list):
        raise ValueError(f"{path} is not a subset file (no 'ids' list)")  # noqa: TRY004 (bad file content)
    if payload.get("size", len(payload["ids"])) != len(payload["ids"]):
        raise ValueError(f"{path}: 'size' is {payload['size']} but {len(payload['ids'])} ids are listed")
    return [str(i) for i in payload["ids"]]


def select_by_ids(records: Iterable[VideoRecord], ids: Iterable[str]) -> list[VideoRecord]:
    """The records whose ``video_id`` is in ``ids``, in the order of ``ids``.

    Raises ``KeyError`` naming (up to five of) the ids the corpus lacks.
    """
    by_id: dict[str, VideoRecord] = {}
    for record in records:
        if record.video_id in by_id:
            raise ValueError(f"video_id must be unique; repeated: {record.video_id!r}")
        by_id[record.video_id] = record
    ids = list(ids)
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise KeyError(f"{len(missing)} subset ids are not in the corpus, e.g. {missing[:5]}")
    return [by_id[i] for i in ids]
