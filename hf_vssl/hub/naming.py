"""Repo names for checkpoints and datasets: ``{task}-{backbone}-{dataset}-{subset}``."""

from __future__ import annotations

import os
import re

from hf_vssl.utils.naming import output_name

# The study's short dataset names; other names pass through unchanged.
DATASET_SHORT_NAMES = {
    "kinetics400": "k400",
    "kinetics-400": "k400",
    "kinetics700": "k700",
    "something-something-v2": "ssv2",
}

# Built-in dataset names -> the Hub dataset repo of the same corpus, where a well-known one exists.
# The others (UCF101, HMDB51, Diving48, the synthetic corpus, a local video folder) have no
# canonical Hub copy, so cards list no dataset id for them rather than a guess or a local path.
HUB_DATASET_IDS: dict[str, str] = {}
"""Built-in source name -> its official Hub dataset id. Empty on purpose: no official Hub copy of the
study's corpora could be confirmed, and a card must not name a dataset that may not exist. A run that
streamed a Hub dataset (``org/name``, ``hf://datasets/org/name``) is listed by that id."""

_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")


def repo_name(task: str | None, backbone: str, dataset: str, subset_size: int | None = None) -> str:
    """The Hub repo name of a checkpoint, e.g. ``repo_name("rspnet", "r21d", "kinetics400", 50000)``
    -> ``"rspnet-r21d-k400-50k"`` (a subset of 50000 reads "50k"; 1500 stays "1500").

    Supersedes :func:`hf_vssl.utils.naming.output_name` for Hub names: same scheme, plus the
    study's short dataset names and a check that the result is a valid repo name.
    """
    dataset = DATASET_SHORT_NAMES.get(dataset.lower(), dataset.lower()) if dataset else dataset
    name = output_name(task.lower() if task else task, backbone.lower(), dataset, subset_size)
    if not _REPO_NAME.match(name) or ".." in name or "--" in name:
        raise ValueError(
            f"{name!r} is not a valid Hub repo name (letters, digits, '-', '_', '.'; at most 96 "
            "characters; no '--' or '..'): pass hub_model_id explicitly"
        )
    return name


def hub_id_or_none(value: str | os.PathLike | None) -> str | None:
    """``value`` when it reads as a Hub model id or bare name (``org/name`` or ``name``), else None.

    Local paths (absolute, relative with ``./``, more than one ``/``, or existing on disk) are
    not Hub ids: a card must not claim ``base_model: /home/me/outputs/run``.
    """
    if value is None:
        return None
    text = str(value)
    if os.path.isabs(text) or text.startswith((".", "~")) or os.path.exists(text) or not _HUB_ID.match(text):
        return None
    return text


def hub_dataset_id(name: str | os.PathLike | None) -> str | None:
    """The Hub dataset id of a dataset as the recipes name it, or None when it has none.

    A built-in name maps through :data:`HUB_DATASET_IDS`; a Hub dataset reference the recipes
    accept (``org/name`` or ``hf://datasets/org/name[@revision]``) gives ``org/name``; anything
    else (another built-in name, a local path) gives None.
    """
    if name is None:
        return None
    text = str(name)
    if text.lower() in HUB_DATASET_IDS:
        return HUB_DATASET_IDS[text.lower()]
    if text.startswith("hf://datasets/"):
        text = text[len("hf://datasets/") :].split("@", 1)[0]
    return text if "/" in text and hub_id_or_none(text) else None
