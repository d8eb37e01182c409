"""Recipe arguments: dataclasses parsed from CLI flags and an optional ``--config`` YAML file.

Flag names follow ``transformers.TrainingArguments`` where one exists. Values come from, in
increasing priority: the dataclass defaults, the YAML file, the command line.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, TypeVar

import yaml
from transformers import HfArgumentParser

T = TypeVar("T")


def parse_args(dataclass_type: type[T], argv: list[str] | None = None) -> T:
    """Parse ``argv`` (default ``sys.argv[1:]``) into ``dataclass_type``, honouring ``--config FILE.yaml``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_type)
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


@dataclasses.dataclass
class LoopArguments:
    """The settings every hf_vssl training loop shares (names follow ``transformers.TrainingArguments``).

    Recipe argument classes subclass this and add their own fields; a subclass that needs another
    default re-declares the field.
    """

    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float | None = dataclasses.field(default=None, metadata={"help": "default: the recipe's own"})
    weight_decay: float | None = None
    optimizer: str | None = dataclasses.field(default=None, metadata={
        "help": "sgd or adamw (default: the recipe's); switching without --learning_rate starts from "
                "0.01 (sgd) or 1e-3 (adamw)"})
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.05
    max_grad_norm: float | None = 10.0
    num_train_epochs: float = 2.0
    max_steps: int = dataclasses.field(default=-1, metadata={"help": "overrides num_train_epochs when > 0"})
    seed: int = 42
    bf16: bool = dataclasses.field(default=True, metadata={"help": "bf16 autocast (3.5x faster 3D convs on CPU)"})
    channels_last: bool = dataclasses.field(default=True, metadata={"help": "channels_last_3d memory format"})
    dataloader_num_workers: int = 2
    logging_steps: int = 10
    save_steps: int = 50
    save_total_limit: int = 2
    resume_from_checkpoint: str | None = dataclasses.field(
        default=None, metadata={"help": "'latest' or a checkpoint folder"}
    )
    report_to: str = dataclasses.field(default="tensorboard", metadata={"help": "an Accelerate tracker, or 'none'"})
    max_bad_fraction: float = 0.01
    augment_on: str = dataclasses.field(default="auto", metadata={
        "help": "where the random augmentation runs: loader (per clip in the DataLoader), device (batched on "
                "the accelerator after collation) or auto (device on CUDA, else loader)"})
    push_to_hub: bool = False
    hub_model_id: str | None = None
