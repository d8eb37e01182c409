"""The shard format: file names, sample keys, the metadata of every sample, the manifest."""

from __future__ import annotations

import os
import re
from typing import Any

from hf_vssl.data.records import VideoRecord

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


def record_meta(record: VideoRecord, split: str, num_frames: int, container: str) -> dict[str, Any]:
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
