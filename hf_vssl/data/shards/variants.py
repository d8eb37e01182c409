"""Named variants inside one shard dataset: nested class-balanced subsets and noisy copies.

The manifest (``manifest.json``) of a prepared corpus describes both, so a recipe can pick them
by name from a local folder or a Hub repo without listing files:

- **Nested subsets** are shard *prefixes* of a split. The corpus preparation writes the videos
  of the smallest subset first, then those the next size adds, and so on, closing a shard at
  every subset boundary; subset ``n`` is then the first ``num_shards`` shards of the split::

      "splits": {"train": {..., "subsets": {"10000": {"num_shards": 40, "num_videos": 10000,
                                                       "seed": 0}, ...}}}

- **Noisy variants** are splits of their own, named :func:`noisy_split_name` (``test.gaussian.s3``;
  HF split names allow ``\\w+`` parts joined by dots), whose entry carries the noise settings::

      "splits": {"test.gaussian.s3": {..., "noise": {"kind": "gaussian", "severity": 3,
                                                      "preset": "video-p", "seed": 0}}}
"""

from __future__ import annotations

from typing import Any


def noisy_split_name(split: str, kind: str, severity: int) -> str:
    """The split holding the noisy copy of ``split``: ``f"{split}.{kind}.s{severity}"``."""
    return f"{split}.{kind}.s{int(severity)}"


def published_subsets(manifest: dict[str, Any], split: str) -> dict[int, dict[str, Any]]:
    """``{size: entry}`` of the nested subsets the manifest publishes for ``split`` (maybe empty)."""
    entry = manifest.get("splits", {}).get(split, {})
    return {int(size): value for size, value in (entry.get("subsets") or {}).items()}


def subset_shards(manifest: dict[str, Any], split: str, subset_size: int | None, where: str) -> list[dict]:
    """The shard entries of ``split``, or of its published nested subset of ``subset_size`` videos.

    ``where`` names the dataset in errors. A size the manifest does not publish is refused in one
    line listing the sizes it does (a stream cannot draw a new balanced subset without reading
    every shard).
    """
    splits = manifest.get("splits", {})
    if split not in splits:
        raise ValueError(f"{where} has no split {split!r}; available: {', '.join(splits)}")
    shards = list(splits[split]["shards"])
    if subset_size is None or subset_size >= splits[split]["num_videos"]:
        return shards
    subsets = published_subsets(manifest, split)
    if subset_size not in subsets:
        sizes = ", ".join(str(size) for size in sorted(subsets)) or "none"
        raise ValueError(
            f"{where} publishes no {subset_size}-video subset of split {split!r} (published sizes: {sizes})"
        )
    return shards[: int(subsets[subset_size]["num_shards"])]


def published_noisy_split(
    manifest: dict[str, Any], split: str, kind: str, severity: int, preset: str, seed: int
) -> str | None:
    """The name of the published noisy copy of ``split`` made with exactly these settings, or None."""
    name = noisy_split_name(split, kind, severity)
    noise = manifest.get("splits", {}).get(name, {}).get("noise")
    wanted = {"kind": kind, "severity": int(severity), "preset": preset, "seed": int(seed)}
    if noise is None or {key: noise.get(key) for key in wanted} != wanted:
        return None
    return name
