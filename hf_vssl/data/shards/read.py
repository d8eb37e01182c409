"""Reading local shards back: the manifest and every sample's bytes and metadata."""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .format import MANIFEST_FORMAT, MANIFEST_NAME


def iter_shard_samples(
    shard_dir: str | os.PathLike, split: str | None = None
) -> Iterator[tuple[bytes, dict]]:
    """``(video bytes, meta)`` of every sample in a local shard directory, in manifest order."""
    manifest = read_manifest(shard_dir)
    for split_name, info in manifest["splits"].items():
        if split is not None and split_name != split:
            continue
        for shard in info["shards"]:
            yield from iter_tar(Path(shard_dir) / shard["file"])


def iter_tar(path: Path) -> Iterator[tuple[bytes, dict]]:
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
