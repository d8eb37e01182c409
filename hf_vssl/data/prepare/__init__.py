"""Preparing a corpus for streaming and the Hub: an official layout on disk -> a shard dataset.

``python -m hf_vssl.data.prepare --dataset ucf101 --dataset_root data/UCF101 --output_dir
shards/ucf101`` (or ``recipes/prepare_corpus.py``, which can also push the result to the Hub)
reads a built-in source, checks every video, re-encodes them for random clip access and writes

- WebDataset shards and ``manifest.json`` (the format of :mod:`hf_vssl.data.shards`);
- the class-balanced nested subsets of ``--subset_sizes`` as shard prefixes of their split
  (:mod:`hf_vssl.data.shards.variants`);
- the noisy variants of ``--noise`` / ``--severities`` as splits of their own;
- a dataset card, ``README.md``: layout, counts per split and class, subsets, noisy variants,
  skipped inputs with reasons, a licence note and the command that made it.

Shards are written in worker processes, each atomically, with a done-marker in the hidden
``.prepare/`` folder; run the same command again after an interruption and only the missing
shards are written. One job per module: :mod:`.arguments` (flags), :mod:`.plan` (records, checks,
shard layout), :mod:`.writing` (shards and manifest), :mod:`.card`, :mod:`.run` (the whole run).
docs/preparing_corpora.md walks through it.
"""

from .arguments import PrepareArguments
from .card import LICENCES, render_card
from .run import PrepareReport, main, prepare_corpus

__all__ = ["LICENCES", "PrepareArguments", "PrepareReport", "main", "prepare_corpus", "render_card"]
