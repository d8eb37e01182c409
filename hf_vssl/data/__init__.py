"""The video data layer: sources -> records -> (shards | files) -> clips -> batches.

Public entry points (names fixed by docs/design.md#contract):

- :func:`load_source` parses an official dataset layout into :class:`VideoRecord` s;
- :func:`build_shards` writes WebDataset shards (``python -m hf_vssl.data.prepare`` a whole corpus),
  :func:`load_video_dataset` streams them back through Hugging Face Datasets;
- :func:`parse_dataset_argument` reads a recipe's ``--dataset`` (built-in source, shard folder or
  Hub repo); :func:`open_training_videos` / :func:`load_eval_videos` open it for training / evaluation;
- :class:`VideoClipDataset` / :class:`StreamingClipDataset` turn videos into clip samples for a
  clip sampler (a pretext task's or :class:`UniformClipSampler`), :func:`collate_clips` batches;
- :mod:`hf_vssl.data.noise`, :mod:`hf_vssl.data.transforms`, :mod:`hf_vssl.data.subsets`,
  :mod:`hf_vssl.data.synthetic` (the built-in corpus of real encoded videos).
"""

import importlib
from typing import Any

# Public name -> submodule. Resolved on first access (PEP 562), so `import hf_vssl` stays light:
# torchcodec, PyAV and datasets load only when the data layer is actually used.
_EXPORTS = {
    "ClipPlan": "clips",
    "ClipSampler": "clips",
    "ClipTooLongError": "clips",
    "UniformClipSampler": "clips",
    "decode_plan": "clips",
    "VideoClipDataset": "datasets",
    "collate_clips": "datasets",
    "VideoDecodeError": "decoding",
    "open_video": "decoding",
    "VideoRecord": "records",
    "ReencodeOptions": "shards",
    "ShardReport": "shards",
    "build_noisy_shards": "shards",
    "build_shards": "shards",
    "SOURCES": "sources",
    "UnlabelledSplitError": "sources",
    "default_eval_split": "sources",
    "list_sources": "sources",
    "load_source": "sources",
    "StreamingClipDataset": "streaming",
    "load_video_dataset": "streaming",
    "balanced_subset": "subsets",
    "load_subset": "subsets",
    "save_subset": "subsets",
    "select_by_ids": "subsets",
    "DatasetArgument": "dataset_argument",
    "parse_dataset_argument": "dataset_argument",
    "load_eval_videos": "eval_data",
    "open_training_videos": "training_data",
    "write_noisy_split": "shards",
    "load_manifest": "streaming",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"hf_vssl.data.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hf_vssl.data' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
