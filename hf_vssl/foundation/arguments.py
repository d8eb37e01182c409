"""The settings every recipe that takes a foundation model shares, and the zero-shot set-up they drive.

``recipes/zero_shot.py`` (:class:`hf_vssl.foundation.run.ZeroShotArguments`) and
``recipes/robustness.py`` (``RobustnessArguments``) both extend :class:`FoundationModelArguments`,
so a foundation model is prompted, and sees the same clips, wherever it is tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from hf_vssl.data.loading import load_records
from hf_vssl.data.records import VideoRecord

from .class_names import CLASS_NAME_STYLES, class_names_from_labels, read_class_names_file
from .prompts import resolve_templates
from .zero_shot import ZeroShotVideoClassifier

__all__ = ["FoundationModelArguments", "build_zero_shot_classifier", "dataset_class_names"]


@dataclass
class FoundationModelArguments:
    """How a foundation model (X-CLIP, CLIP, SigLIP) is turned into a classifier of the dataset's classes:
    prompts, class names and the clips it sees."""

    prompt_templates: list[str] | None = field(
        default=None,
        metadata={
            "help": "foundation models: prompt template(s) with one '{}' for the class name; several form an "
            "ensemble (default: 'a video of a person {}.')"
        },
    )
    prompt_ensemble: bool = field(
        default=False,
        metadata={"help": "foundation models: use the built-in ensemble of action-video templates"},
    )
    class_names_file: str | None = field(
        default=None,
        metadata={
            "help": "foundation models: class names to prompt with (JSON list / {label: name}, or one per line) "
            "instead of the dataset's cleaned label names"
        },
    )
    class_name_style: str | None = field(
        default=None,
        metadata={
            "help": f"foundation models: how label names are cleaned, one of {', '.join(CLASS_NAME_STYLES)} "
            "(default: the dataset's: ucf101 camel, hmdb51 snake, kinetics400/ssv2 as_is, else auto)"
        },
    )
    num_frames: int | None = field(
        default=None,
        metadata={
            "help": "foundation models: frames per clip (X-CLIP: fixed by the model; image models: default 8)"
        },
    )
    frame_stride: int = field(
        default=1,
        metadata={
            "help": "foundation models: take every n-th frame (1: consecutive frames, as for the SSL backbones)"
        },
    )
    text_batch_size: int = field(default=256, metadata={"help": "foundation models: prompts per text batch"})


def dataset_class_names(
    args: FoundationModelArguments,
    records: Sequence[VideoRecord] | Mapping[int, str],
    *,
    dataset: str,
    dataset_root: str | None,
    fold: int,
    label_set: str | None,
) -> list[str]:
    """The class names to prompt with, in label order: ``--class_names_file`` or the cleaned label names.

    Label names come from ``records`` and, for classes they lack, from the dataset's train split
    (so a class absent from the evaluated split still competes, as it does in a classifier).
    ``records`` may also be a whole label space ``{label: name}`` (a shard dataset's manifest).
    """
    if isinstance(records, Mapping):
        names = dict(records)
    else:
        names = {record.label: record.label_name for record in records}
        try:
            for record in load_records(dataset, dataset_root, "train", fold, label_set=label_set):
                names.setdefault(record.label, record.label_name)
        except (ValueError, FileNotFoundError):
            pass  # no train split (or none here): the evaluated split's names must then cover every label
    if args.class_names_file:
        return read_class_names_file(args.class_names_file, max(names) + 1)
    return class_names_from_labels(names, dataset, args.class_name_style)


def build_zero_shot_classifier(
    args: FoundationModelArguments,
    model_name_or_path: str,
    class_names: Sequence[str],
    device: torch.device | str | None = None,
) -> ZeroShotVideoClassifier:
    """Load ``model_name_or_path`` and embed ``class_names`` with the templates of ``args``, on ``device``."""
    templates = resolve_templates(args.prompt_templates, args.prompt_ensemble)
    return ZeroShotVideoClassifier.from_pretrained(
        model_name_or_path,
        class_names,
        templates,
        num_frames=args.num_frames,
        text_batch_size=args.text_batch_size,
        device=device,
    )
