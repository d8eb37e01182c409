"""Recipe arguments: dataclasses parsed from CLI flags and an optional ``--config`` YAML file.

Flag names follow ``transformers.TrainingArguments`` where one exists. Values come from, in
increasing priority: the dataclass defaults, the YAML file, the command line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, TypeVar

import yaml
from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

from hf_vssl.data.clips import SHORT_VIDEO_ACTIONS
from hf_vssl.utils.fastpath import COMPILE_MODES, check_compile_mode

T = TypeVar("T")


def parse_args(dataclass_type: type[T], argv: list[str] | None = None) -> T:
    """Parse ``argv`` (default ``sys.argv[1:]``) into ``dataclass_type``, honouring ``--config FILE.yaml``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_type)
    for action in parser._actions:
        if action.type is string_to_bool and action.nargs is None:  # `bool | None` flags: bare --flag = true
            action.nargs, action.const = "?", True
    config_path = _config_path(argv)
    if config_path is not None:
        path = Path(config_path)
        if not path.is_file():
            raise FileNotFoundError(f"--config file not found: {path}")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"--config {path}: expected a mapping of argument names to values")
        known = {f.name for f in dataclasses.fields(dataclass_type)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"--config {path}: unknown argument(s) {unknown}; valid: {sorted(known)}")
        parser.set_defaults(**{k: _yaml_value(v) for k, v in values.items()})
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    return args


def _config_path(argv: list[str]) -> str | None:
    for i, item in enumerate(argv):
        if item == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if item.startswith("--config="):
            return item.split("=", 1)[1]
    return None


def _yaml_value(value: Any) -> Any:
    # Dict-valued options (pretext_config) travel as JSON strings, like on the command line.
    return json.dumps(value) if isinstance(value, dict) else value


def parse_json_option(value: str | dict | None, name: str) -> dict[str, Any] | None:
    """A dict-valued option given as a JSON string (CLI) or a mapping (YAML / Python)."""
    if value is None or isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"--{name} must be a JSON object, got {value!r}: {error}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"--{name} must be a JSON object, got {value!r}")  # noqa: TRY004 (a bad flag value)
    return parsed


def save_args(args: Any, path: str | Path) -> None:
    """Write the resolved arguments as YAML (re-usable with ``--config``)."""
    values = dataclasses.asdict(args)
    values.pop("config", None)
    for key, value in values.items():
        if isinstance(value, str) and key.endswith("_config"):
            parsed = parse_json_option(value, key)
            values[key] = parsed
    Path(path).write_text(yaml.safe_dump(values, sort_keys=False))


def mixed_precision_for(args: Any) -> str | None:
    """The ``mixed_precision`` of ``Accelerator(...)`` for a recipe's ``--bf16``.

    ``None`` (the flag not given) lets Accelerate decide: ``accelerate launch --mixed_precision``,
    ``accelerate config`` or ``ACCELERATE_MIXED_PRECISION`` (fp32 without any); an explicit
    ``--bf16 true/false`` wins over them.
    """
    if args.bf16 is None:
        return None
    return "bf16" if args.bf16 else "no"


_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def check_model_reference(value: str | None, flag: str) -> None:
    """Refuse a ``--model_name_or_path``-style value that names a local path that does not exist.

    A value that exists locally, or has the shape of a Hub id (``name`` or ``namespace/name``)
    whose first part is not a local folder, passes; the Hub is asked later.
    """
    if value is None or Path(value).expanduser().exists():
        return
    first = value.split("/", 1)[0]
    if not _REPO_ID.fullmatch(value) or (value.count("/") == 1 and Path(first).is_dir()):
        raise FileNotFoundError(f"{flag} {value}: no such file or folder")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def check_short_video(value: str) -> None:
    """Refuse a ``--short_video`` value that is not one of :data:`~hf_vssl.data.clips.SHORT_VIDEO_ACTIONS`."""
    _require(
        value in SHORT_VIDEO_ACTIONS,
        f"--short_video must be one of {', '.join(SHORT_VIDEO_ACTIONS)}, got {value!r}",
    )


@dataclasses.dataclass
class ShortVideoArguments:
    """``--short_video``: what every recipe does, per video, with a video too short for its clips
    (training, evaluation, robustness and CKA alike). A subclass may re-declare the default."""

    short_video: str = dataclasses.field(
        default="skip",
        metadata={
            "help": "a video shorter than a clip: skip (left out and reported once), loop or pad its frames, or "
            "refuse (stop, naming the file)"
        },
    )


@dataclasses.dataclass
class CompileArguments:
    """``--torch_compile`` / ``--torch_compile_mode``: every recipe that runs a model has them
    (training loops and evaluation recipes alike; see ``docs/performance.md``)."""

    torch_compile: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "compile the model with torch.compile (in place: checkpoints and exports keep their keys); "
            "the first steps pay the compilation"
        },
    )
    torch_compile_mode: str = dataclasses.field(
        default="default", metadata={"help": f"torch.compile mode: {', '.join(COMPILE_MODES)}"}
    )

    def __post_init__(self):
        check_compile_mode(self.torch_compile_mode)


@dataclasses.dataclass
class TrainingDataArguments:
    """Where a training run reads its videos: the flags pretraining and distillation share."""

    dataset: str = dataclasses.field(
        default="synthetic",
        metadata={
            "help": "a built-in source read from --dataset_root (ucf101, hmdb51, kinetics400, ssv2, diving48, "
            "videofolder), the synthetic corpus (synthetic), a local shard folder (holding manifest.json), or a "
            "Hub dataset repo of shards (org/name or hf://datasets/org/name[@revision]); shards are streamed "
            "(see docs/streaming.md)"
        },
    )
    dataset_root: str | None = dataclasses.field(
        default=None, metadata={"help": "folder of a built-in source (synthetic: built in; shards: not used)"}
    )
    dataset_revision: str | None = dataclasses.field(
        default=None, metadata={"help": "Hub shard datasets only: the branch, tag or commit to stream"}
    )
    dataset_split: str = dataclasses.field(
        default="train", metadata={"help": "split of --dataset to train on"}
    )
    fold: int = dataclasses.field(default=1, metadata={"help": "official fold (UCF101 / HMDB51: 1-3)"})
    label_set: str | None = dataclasses.field(
        default=None, metadata={"help": "synthetic corpus only: motion or appearance"}
    )
    subset_size: int | None = dataclasses.field(
        default=None,
        metadata={
            "help": "class-balanced nested subset of this size (shards: a subset their manifest publishes)"
        },
    )
    subset_seed: int = dataclasses.field(
        default=0, metadata={"help": "seed of the class-balanced subset (sources; shards publish theirs)"}
    )


@dataclasses.dataclass
class LoopArguments(CompileArguments, ShortVideoArguments):
    """The settings every hf_vssl training loop shares (names follow ``transformers.TrainingArguments``).

    Recipe argument classes subclass this and add their own fields; a subclass that needs another
    default re-declares the field. Impossible values are refused when the object is built.
    """

    per_device_train_batch_size: int = dataclasses.field(
        default=8, metadata={"help": "training clips (samples) per device and micro-batch"}
    )
    gradient_accumulation_steps: int = dataclasses.field(
        default=1, metadata={"help": "micro-batches per optimiser step"}
    )
    learning_rate: float | None = dataclasses.field(
        default=None, metadata={"help": "default: the recipe's own"}
    )
    weight_decay: float | None = dataclasses.field(
        default=None,
        metadata={
            "help": "decoupled (AdamW) or L2 (SGD) weight decay; biases and norms get none (default: the recipe's)"
        },
    )
    optimizer: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "sgd or adamw (default: the recipe's); switching without --learning_rate starts from "
            "0.01 (sgd) or 1e-3 (adamw)"
        },
    )
    lr_scheduler_type: str = dataclasses.field(
        default="cosine",
        metadata={"help": "a transformers schedule name: cosine, linear, constant_with_warmup, ..."},
    )
    warmup_ratio: float = dataclasses.field(
        default=0.05, metadata={"help": "fraction of the optimiser steps spent in linear warm-up"}
    )
    max_grad_norm: float | None = dataclasses.field(
        default=10.0, metadata={"help": "clip the gradient norm to this (0 or none: no clipping)"}
    )
    num_train_epochs: float = dataclasses.field(
        default=2.0, metadata={"help": "passes over the training videos (used when --max_steps is not given)"}
    )
    max_steps: int = dataclasses.field(
        default=-1, metadata={"help": "total optimiser steps; overrides --num_train_epochs (-1: not set)"}
    )
    seed: int = dataclasses.field(
        default=42, metadata={"help": "seed of the initialisation, data order and every random draw"}
    )
    bf16: bool | None = dataclasses.field(
        default=None,
        metadata={
            "help": "bf16 autocast (about 3.5x faster 3D convolutions on CPU). Not given: the launcher decides "
            "(accelerate launch --mixed_precision, accelerate config, ACCELERATE_MIXED_PRECISION; fp32 "
            "without any); --bf16 true/false wins over it"
        },
    )
    channels_last: bool = dataclasses.field(default=True, metadata={"help": "channels_last_3d memory format"})
    dataloader_num_workers: int = dataclasses.field(
        default=2, metadata={"help": "DataLoader worker processes (0: decode in the training process)"}
    )
    logging_steps: int = dataclasses.field(
        default=10, metadata={"help": "log every this many optimiser steps"}
    )
    save_steps: int = dataclasses.field(
        default=50, metadata={"help": "write a resumable checkpoint every this many optimiser steps"}
    )
    save_total_limit: int = dataclasses.field(
        default=2, metadata={"help": "keep only the newest this many checkpoints (0: keep all)"}
    )
    resume_from_checkpoint: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "'latest' (the newest complete checkpoint of --output_dir, if any) or a checkpoint folder"
        },
    )
    overwrite_output_dir: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "start afresh in an --output_dir that holds another run, deleting its checkpoints and log"
        },
    )
    report_to: str = dataclasses.field(
        default="tensorboard", metadata={"help": "an Accelerate tracker, or 'none'"}
    )
    max_bad_fraction: float = dataclasses.field(
        default=0.01, metadata={"help": "stop if more than this fraction of the videos read fail to decode"}
    )
    augment_on: str = dataclasses.field(
        default="auto",
        metadata={
            "help": "where the random augmentation runs: loader (per clip in the DataLoader), device (batched on "
            "the accelerator after collation) or auto (device on CUDA, else loader)"
        },
    )
    push_to_hub: bool = dataclasses.field(default=False, metadata={"help": "upload the result to the Hub"})
    hub_model_id: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Hub repository of --push_to_hub (default: a name made from the run's settings)"},
    )
    debug: bool = dataclasses.field(
        default=False, metadata={"help": "show the full traceback of an error (also HF_VSSL_DEBUG=1)"}
    )

    def __post_init__(self):
        _require(
            self.per_device_train_batch_size >= 1,
            f"--per_device_train_batch_size must be >= 1, got {self.per_device_train_batch_size}",
        )
        _require(
            self.gradient_accumulation_steps >= 1,
            f"--gradient_accumulation_steps must be >= 1, got {self.gradient_accumulation_steps}",
        )
        _require(
            self.max_steps == -1 or self.max_steps >= 1,
            f"--max_steps must be >= 1 (or -1 to train --num_train_epochs), got {self.max_steps}",
        )
        _require(
            self.num_train_epochs > 0 and math.isfinite(self.num_train_epochs),
            f"--num_train_epochs must be > 0, got {self.num_train_epochs}",
        )
        _require(self.logging_steps >= 1, f"--logging_steps must be >= 1, got {self.logging_steps}")
        _require(self.save_steps >= 1, f"--save_steps must be >= 1, got {self.save_steps}")
        _require(self.save_total_limit >= 0, f"--save_total_limit must be >= 0, got {self.save_total_limit}")
        _require(
            self.dataloader_num_workers >= 0,
            f"--dataloader_num_workers must be >= 0, got {self.dataloader_num_workers}",
        )
        _require(0 <= self.warmup_ratio <= 1, f"--warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        _require(
            0 <= self.max_bad_fraction <= 1,
            f"--max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}",
        )
        _require(
            self.learning_rate is None or self.learning_rate > 0,
            f"--learning_rate must be > 0, got {self.learning_rate}",
        )
        _require(
            self.weight_decay is None or self.weight_decay >= 0,
            f"--weight_decay must be >= 0, got {self.weight_decay}",
        )
        check_short_video(self.short_video)
        check_compile_mode(self.torch_compile_mode)
        for name in ("model_name_or_path", "student_name_or_path"):
            check_model_reference(getattr(self, name, None), f"--{name}")
        for teacher in getattr(self, "teachers", None) or []:
            check_model_reference(teacher, "--teachers")
