"""The flags of the corpus preparation, their checks, and the command line that repeats a run."""

from __future__ import annotations

import dataclasses
import os
import shlex
from dataclasses import dataclass, field
from typing import Any

from hf_vssl.data.dataset_argument import parse_dataset_argument
from hf_vssl.data.noise import NOISE_KINDS, NoiseTransform
from hf_vssl.data.shards import ReencodeOptions
from hf_vssl.data.sources import default_eval_split

#: Flags naming folders of the machine that ran: shown as placeholders in the recorded command.
PATH_FLAGS = {"dataset_root": "<dataset_root>", "output_dir": "<output_dir>"}
#: Flags that do not change the dataset: left out of the recorded command.
UNRECORDED_FLAGS = ("num_workers",)


@dataclass
class PrepareArguments:
    """What :func:`hf_vssl.data.prepare.prepare_corpus` makes (see docs/preparing_corpora.md)."""

    dataset: str = field(
        metadata={
            "help": "built-in source: ucf101, hmdb51, kinetics400, ssv2, diving48, videofolder, synthetic"
        }
    )
    output_dir: str = field(
        metadata={
            "help": "folder of the prepared dataset (new or empty; or an interrupted preparation to resume)"
        }
    )
    dataset_root: str | None = field(
        default=None, metadata={"help": "the source's folder in its official layout (synthetic: built in)"}
    )
    splits: list[str] = field(
        default_factory=list,
        metadata={"help": "splits to prepare (default: train and the source's labelled held-out split)"},
    )
    fold: int = field(default=1, metadata={"help": "official fold (UCF101 / HMDB51: 1-3)"})
    subset_sizes: list[int] = field(
        default_factory=list,
        metadata={"help": "sizes of the class-balanced nested subsets, e.g. 10000 30000 50000 100000"},
    )
    subset_split: str = field(default="train", metadata={"help": "the split the subsets are drawn from"})
    subset_seed: int = field(default=0, metadata={"help": "seed of the class-balanced subsets"})
    shard_size: int = field(
        default=256, metadata={"help": "videos per tar shard (fewer at a subset boundary)"}
    )
    short_side: int = field(
        default=128,
        metadata={"help": "re-encode to this short side in pixels (never upscaled; 0 keeps the size)"},
    )
    gop_size: int = field(default=16, metadata={"help": "keyframe interval of the re-encoded videos"})
    crf: int = field(default=23, metadata={"help": "x264 quality (lower: better, larger)"})
    codec: str = field(default="libx264", metadata={"help": "video codec of the re-encoded videos (in mp4)"})
    prefix: str | None = field(
        default=None, metadata={"help": "shard name prefix (default: the source's name)"}
    )
    num_workers: int | None = field(
        default=None, metadata={"help": "worker processes (default: CPU count, at most 8)"}
    )
    noise: list[str] = field(
        default_factory=list,
        metadata={"help": f"noisy variants to add, among {', '.join(NOISE_KINDS)}"},
    )
    severities: list[int] = field(
        default_factory=lambda: [1, 2, 3, 4, 5], metadata={"help": "severities of the noisy variants (1-5)"}
    )
    noise_split: str | None = field(
        default=None, metadata={"help": "split the noisy variants copy (default: the held-out split)"}
    )
    noise_preset: str = field(default="video-p", metadata={"help": "noise preset: video-p or imagenet-c"})
    noise_seed: int = field(default=0, metadata={"help": "seed of the noise draws"})

    def __post_init__(self) -> None:
        check_arguments(self)

    @property
    def source(self) -> str:
        return self.dataset.lower()

    @property
    def all_splits(self) -> list[str]:
        """The splits to prepare: ``--splits``, else train and the source's labelled held-out split."""
        return list(self.splits) or ["train", default_eval_split(self.source)]

    @property
    def reencode(self) -> ReencodeOptions:
        return ReencodeOptions(
            short_side=self.short_side or None, gop_size=self.gop_size, codec=self.codec, crf=self.crf
        )

    @property
    def shard_prefix(self) -> str:
        return self.prefix or self.source

    @property
    def noisy_split(self) -> str:
        return self.noise_split or default_eval_split(self.source)


def check_arguments(args: PrepareArguments) -> None:
    """Refuse bad flag values in one line naming the flag, before any work."""
    parsed = parse_dataset_argument(args.dataset, args.dataset_root)
    if parsed.is_shards:
        raise ValueError(
            f"--dataset {args.dataset}: already a shard dataset; preparation reads a built-in source in its "
            "official layout (--dataset <source> --dataset_root <folder>)"
        )
    if args.dataset_root is None and args.source != "synthetic":
        raise ValueError(f"--dataset {args.dataset} needs --dataset_root (the folder in its official layout)")
    if args.dataset_root is not None and not os.path.isdir(args.dataset_root):
        raise FileNotFoundError(f"--dataset_root {args.dataset_root}: no such folder")
    if args.shard_size < 1:
        raise ValueError(f"--shard_size must be >= 1, got {args.shard_size}")
    if args.short_side < 0 or args.gop_size < 1:
        raise ValueError(
            f"--short_side must be >= 0 and --gop_size >= 1, got {args.short_side} and {args.gop_size}"
        )
    if len(set(args.all_splits)) != len(args.all_splits):
        raise ValueError(f"--splits lists a split twice: {args.all_splits}")
    if args.subset_sizes:
        if any(size < 1 for size in args.subset_sizes) or len(set(args.subset_sizes)) != len(
            args.subset_sizes
        ):
            raise ValueError(f"--subset_sizes must be distinct positive sizes, got {args.subset_sizes}")
        if args.subset_split not in args.all_splits:
            raise ValueError(
                f"--subset_split {args.subset_split} is not among the prepared splits {args.all_splits}"
            )
    if args.noise:
        if args.noisy_split not in args.all_splits:
            raise ValueError(
                f"--noise_split {args.noisy_split} is not among the prepared splits {args.all_splits}"
            )
        if not args.severities or any(severity < 1 for severity in args.severities):
            raise ValueError(f"--severities must list severities >= 1 for --noise, got {args.severities}")
        for kind in args.noise:
            for severity in args.severities:
                try:
                    NoiseTransform(kind, severity, args.noise_preset, args.noise_seed)
                except ValueError as error:
                    raise ValueError(f"--noise {kind} --severities {severity}: {error}") from None


def shard_settings(args: PrepareArguments) -> dict[str, Any]:
    """Everything the shards depend on: a resumed run must have the same (noisy variants may be added)."""
    return {
        "dataset": args.source,
        "dataset_root": os.path.abspath(args.dataset_root) if args.dataset_root else None,
        "fold": args.fold,
        "splits": args.all_splits,
        "subset_split": args.subset_split if args.subset_sizes else None,
        "subset_sizes": sorted(args.subset_sizes),
        "subset_seed": args.subset_seed,
        "shard_size": args.shard_size,
        "reencode": dataclasses.asdict(args.reencode),
        "prefix": args.shard_prefix,
    }


def render_command(program: str, args: PrepareArguments) -> str:
    """The command line that makes this dataset again: ``program`` and every flag of
    :class:`PrepareArguments` that differs from its default, folders as placeholders (without
    ``--num_workers``, which does not change the result)."""
    parts = [program]
    for spec in dataclasses.fields(PrepareArguments):
        if spec.name in UNRECORDED_FLAGS:
            continue
        value = getattr(args, spec.name)
        if spec.default is not dataclasses.MISSING:
            default = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            default = spec.default_factory()
        else:
            default = object()  # required: always shown
        if value == default:
            continue
        if spec.name in PATH_FLAGS:
            parts += [f"--{spec.name}", PATH_FLAGS[spec.name]]
        elif isinstance(value, list):
            parts += [f"--{spec.name}", *(shlex.quote(str(item)) for item in value)]
        else:
            parts += [f"--{spec.name}", shlex.quote(str(value))]
    return " ".join(parts)
