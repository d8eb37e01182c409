"""The record every dataset source yields: one video file and what is known about it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class VideoRecord:
    """One annotated video.

    ``label`` is the integer class index in the source's label map; ``label_name`` its readable
    name. ``start``/``end`` are optional frame bounds inside the file (Diving48 annotates a
    segment; Kinetics' cut files do not need them). ``video_id`` is the source's own stable id
    (UCF101 ``v_ApplyEyeMakeup_g01_c01``, a Kinetics ``youtube_id_start_end``, an SSv2 number),
    which subsets and shards use to name a video.
    """

    path: str
    label: int
    label_name: str
    video_id: str
    split: str = "train"
    source: str = ""
    start: int | None = None
    end: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
