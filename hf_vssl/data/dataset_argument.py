"""What a recipe's ``--dataset`` names: a built-in source read from ``--dataset_root`` (or the
built-in synthetic corpus), or a shard dataset (a local folder written by the shard builder or
the corpus preparation, or a Hub dataset repo) that is streamed.

One rule for every recipe:

==========================================  ==================================================
``--dataset``                               means
==========================================  ==================================================
``ucf101``, ``hmdb51``, ``kinetics400``,    a built-in source in its official layout under
``ssv2``, ``diving48``, ``videofolder``     ``--dataset_root``
``synthetic``                               the built-in corpus (or one at ``--dataset_root``)
a folder holding ``manifest.json``          local shards, streamed
``org/name`` or                             a Hub dataset repo of shards, streamed (a
``hf://datasets/org/name[@revision]``       revision also via ``--dataset_revision``)
==========================================  ==================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .shards import MANIFEST_NAME
from .sources import SOURCES
from .streaming import dataset_base


@dataclass(frozen=True)
class DatasetArgument:
    """A parsed ``--dataset`` (with ``--dataset_root`` / ``--dataset_revision``).

    Attributes:
        dataset: the value as given.
        kind: ``"source"`` (records from a built-in source) or ``"shards"`` (streamed shards).
        root: the source's folder (``None``: the built-in synthetic corpus); shards: ``None``.
        base: shards only: an absolute local folder or ``hf://datasets/<repo_id>[@revision]``.
    """

    dataset: str
    kind: str
    root: str | None = None
    base: str | None = None

    @property
    def is_shards(self) -> bool:
        return self.kind == "shards"

    @property
    def source(self) -> str | None:
        """The built-in source's name (``None`` for shards)."""
        return self.dataset.lower() if self.kind == "source" else None


def parse_dataset_argument(
    dataset: str, dataset_root: str | None = None, revision: str | None = None
) -> DatasetArgument:
    """Parse ``--dataset`` by the rule in the module docstring; a value that is none of them is
    refused in one line naming the value and what it could have been."""
    if dataset.lower() in SOURCES:
        if revision is not None:
            raise ValueError(f"--dataset_revision only applies to Hub shard datasets, not to {dataset!r}")
        return DatasetArgument(dataset=dataset, kind="source", root=dataset_root)
    if dataset_root is not None:
        raise ValueError(
            f"--dataset_root is for built-in sources ({', '.join(sorted(SOURCES))}); "
            f"--dataset {dataset!r} names shards by itself"
        )
    if os.path.isdir(dataset) and not os.path.isfile(os.path.join(dataset, MANIFEST_NAME)):
        raise FileNotFoundError(
            f"--dataset {dataset}: folder has no {MANIFEST_NAME} (not a shard folder); for videos in an "
            f"official layout use --dataset <source> --dataset_root {dataset}"
        )
    try:
        base = dataset_base(dataset, revision)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"--dataset {dataset!r}: not a built-in source ({', '.join(sorted(SOURCES))}), a shard folder "
            "or a Hub dataset id (org/name or hf://datasets/org/name)"
        ) from None
    return DatasetArgument(dataset=dataset, kind="shards", base=base)
