"""The default corpus, generated once per cache folder and reused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .corpus import COMPLETE_MARKER, CORPUS_VERSION, make_synthetic_dataset


def default_cache_dir() -> Path:
    """``$HF_VSSL_CACHE/synthetic`` or ``~/.cache/hf_vssl/synthetic``."""
    base = os.environ.get("HF_VSSL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hf_vssl")
    return Path(base) / "synthetic"


def is_complete(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds a corpus whose generation finished (its marker is written last)."""
    return (Path(root) / COMPLETE_MARKER).is_file()


def get_default_corpus(
    layout: str = "ucf101", cache_dir: str | os.PathLike | None = None, seed: int = 0, **kwargs: Any
) -> Path:
    """Path of a synthetic corpus in the cache, generated on first use and reused afterwards.

    The folder name carries the layout, seed, :data:`CORPUS_VERSION` and a hash of ``kwargs``
    (any :func:`make_synthetic_dataset` argument), so a different configuration or a newer
    renderer gets its own folder. Generation goes to a temporary sibling folder that is renamed
    into place once complete, so an interrupted run is redone and concurrent processes never
    see a half-written corpus.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha256(json.dumps(kwargs, sort_keys=True, default=str).encode()).hexdigest()[:8]
    target = cache / f"{layout}-seed{seed}-v{CORPUS_VERSION}-{key}"
    if is_complete(target):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    if target.exists():  # left over by an interrupted run that was not ours to rename
        shutil.rmtree(target, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=cache))
    try:
        make_synthetic_dataset(scratch, layout, seed, **kwargs)
        try:
            os.rename(scratch, target)
        except OSError:  # another process finished first: keep its copy
            if not is_complete(target):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
