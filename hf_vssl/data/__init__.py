"""The video data layer: sources -> records -> (shards | files) -> clips -> batches.

Public entry points (names fixed by DESIGN.md):

- :func:`load_source` parses an official dataset layout into :class:`VideoRecord` s;
- :func:`build_shards` writes WebDataset shards, :func:`load_video_dataset` streams them back
  through Hugging Face Datasets;
- :class:`VideoClipDataset` / :class:`StreamingClipDataset` turn videos into clip samples for a
  clip sampler (a pretext task's or :class:`UniformClipSampler`), :func:`collate_clips` batches;
- :mod:`hf_vssl.data.noise`, :mod:`hf_vssl.data.transforms`, :mod:`hf_vssl.data.subsets`,
  :mod:`hf_vssl.data.synthetic` (the built-in corpus of real encoded videos).
"""

from hf_vssl.data.clips import ClipPlan, ClipSampler, ClipTooLongError, UniformClipSampler, decode_plan
from hf_vssl.data.datasets import VideoClipDataset, collate_clips
from hf_vssl.data.decoding import VideoDecodeError, open_video
from hf_vssl.data.records import VideoRecord
from hf_vssl.data.shards import ReencodeOptions, ShardReport, build_noisy_shards, build_shards
from hf_vssl.data.sources import SOURCES, list_sources, load_source
from hf_vssl.data.streaming import StreamingClipDataset, load_video_dataset
from hf_vssl.data.subsets import balanced_subset, load_subset, save_subset, select_by_ids

__all__ = [
    "SOURCES",
    "ClipPlan",
    "ClipSampler",
    "ClipTooLongError",
    "ReencodeOptions",
    "ShardReport",
    "StreamingClipDataset",
    "UniformClipSampler",
    "VideoClipDataset",
    "VideoDecodeError",
    "VideoRecord",
    "balanced_subset",
    "build_noisy_shards",
    "build_shards",
    "collate_clips",
    "decode_plan",
    "list_sources",
    "load_source",
    "load_subset",
    "load_video_dataset",
    "open_video",
    "save_subset",
    "select_by_ids",
]
