"""The shipped YAML files in recipes/configs/: each parses with its recipe's parser, every key is a
flag of that recipe with a value of the flag's type, each names a buildable optimiser, and each
runs (one step, with only the paths it names, the sizes and the budget overridden)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import types
import typing
from pathlib import Path

import pytest
import torch
import yaml

from hf_vssl.data.synthetic import make_synthetic_dataset
from hf_vssl.pretext.registry import get_pretext_task_class
from hf_vssl.training.arguments import parse_args, parse_json_option
from hf_vssl.training.optim import build_optimizer, resolve_optimizer_settings

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "recipes" / "configs").glob("*.yaml"))
OPTIMIZERS = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}


def _recipe_name(config: Path) -> str:
    """The recipe a config is for, from the usage line its header comment must carry."""
    usage = re.search(
        rf"recipes/(\w+)\.py --config recipes/configs/{re.escape(config.name)}", config.read_text()
    )
    assert usage, (
        f"{config.name}: the header comment shows no 'recipes/<recipe>.py --config {config}' usage line"
    )
    return usage.group(1)


def _load_recipe(name: str) -> types.ModuleType:
    path = REPO / "recipes" / f"{name}.py"
    assert path.is_file(), f"no recipe {path}"
    spec = importlib.util.spec_from_file_location(f"_recipe_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _arguments_class(module: types.ModuleType) -> type:
    """The recipe's arguments dataclass: the one in its namespace with a ``config`` field."""
    found = {
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and dataclasses.is_dataclass(value)
        and "config" in {f.name for f in dataclasses.fields(value)}
    }
    assert len(found) == 1, f"{module.__file__}: expected one arguments dataclass, found {found}"
    return found.pop()


def _matches(value, annotation) -> bool:
    """Whether a YAML value fits a dataclass field annotation (Optional, list[...] and scalars)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def test_configs_are_shipped():
    names = {config.name for config in CONFIGS}
    assert "rspnet_r21d_k400.yaml" in names, "the study-scale pretraining config recipes/pretrain.py promises"
    assert len(names) >= 5


def test_configs_named_in_the_recipes_and_docs_exist():
    texts = [
        p.read_text()
        for p in [*(REPO / "recipes").glob("*.py"), *(REPO / "docs").glob("*.md"), REPO / "README.md"]
    ]
    named = {m for text in texts for m in re.findall(r"recipes/configs/([\w.-]+\.yaml)", text)}
    assert "rspnet_r21d_k400.yaml" in named
    missing = sorted(n for n in named if not (REPO / "recipes" / "configs" / n).is_file())
    assert not missing, f"configs named but not shipped: {missing}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_parses_with_its_recipe_and_names_its_optimizer(config):
    values = yaml.safe_load(config.read_text())
    assert isinstance(values, dict) and values, f"{config.name}: expected a mapping of flags to values"
    arguments = _arguments_class(_load_recipe(_recipe_name(config)))
    hints = typing.get_type_hints(arguments)
    unknown = sorted(set(values) - set(hints))
    assert not unknown, f"{config.name}: {unknown} are not flags of {arguments.__name__}"
    for key, value in values.items():
        if key.endswith("_config"):  # dict-valued flags travel as JSON strings
            assert isinstance(value, dict), f"{config.name}: {key} must be a mapping"
        else:
            assert _matches(value, hints[key]), f"{config.name}: {key}={value!r} does not fit {hints[key]}"

    args = parse_args(arguments, ["--config", str(config)])
    for key, value in values.items():
        parsed = getattr(args, key)
        assert (parse_json_option(parsed, key) if key.endswith("_config") else parsed) == value, key

    assert values.get("optimizer") in OPTIMIZERS, (
        f"{config.name}: name the optimiser (optimizer: sgd or adamw)"
    )
    settings = resolve_optimizer_settings(
        {}, optimizer=args.optimizer, learning_rate=args.learning_rate, weight_decay=args.weight_decay
    )
    optimizer = build_optimizer(torch.nn.Linear(4, 2), settings)
    assert type(optimizer) is OPTIMIZERS[values["optimizer"]]
    if values.get("learning_rate") is not None:
        assert optimizer.param_groups[0]["lr"] == values["learning_rate"]

    if getattr(args, "pretext_task", None):  # the task accepts the config's settings
        task = get_pretext_task_class(args.pretext_task)
        task.settings_class.from_overrides(
            args.pretext_task, parse_json_option(args.pretext_config, "pretext_config")
        )


SMALL = [
    "--num_frames",
    "8",
    "--image_size",
    "32",
    "--per_device_train_batch_size",
    "4",
    "--max_steps",
    "1",
    "--bf16",
    "false",
    "--dataloader_num_workers",
    "0",
    "--report_to",
    "none",
]


@pytest.mark.slow
def test_shipped_configs_run_one_step(tiny_corpus, tmp_path):
    """Each config through its recipe's ``main``: only the paths, sizes and budget are overridden."""
    configs = {config.stem: config for config in CONFIGS}
    kinetics = make_synthetic_dataset(
        tmp_path / "kinetics400",
        layout="kinetics400",
        seed=0,
        num_classes=4,
        videos_per_class=4,
        clips_per_group=2,
        num_frames=48,
        size=(48, 48),
    )

    pretrained = tmp_path / "rspnet"
    _load_recipe("pretrain").main(
        [
            "--config",
            str(configs["rspnet_r21d_k400"]),
            "--dataset_root",
            str(kinetics),
            "--subset_size",
            "16",
            "--width_multiplier",
            "0.125",
            *SMALL,
            "--output_dir",
            str(pretrained),
        ]
    )
    saved = json.loads((pretrained / "config.json").read_text())
    assert saved["pretext_task"] == "rspnet" and saved["pretext_config"]["queue_size"] == 16384

    finetuned = tmp_path / "finetuned"
    _load_recipe("finetune").main(
        [
            "--config",
            str(configs["finetune_ucf101"]),
            "--model_name_or_path",
            str(pretrained),
            "--dataset_root",
            str(tiny_corpus),
            *SMALL,
            "--per_device_eval_batch_size",
            "4",
            "--eval_clips",
            "1",
            "--eval_crops",
            "1",
            "--do_retrieval",
            "false",
            "--output_dir",
            str(finetuned),
        ]
    )
    metrics = json.loads((finetuned / "metrics.json").read_text())
    assert metrics["dataset"] == "ucf101" and 0.0 <= metrics["results"]["video_top1"] <= 1.0

    distill = _load_recipe("distill")
    for name in sorted(n for n in configs if n.startswith("distill_")):
        student = tmp_path / name
        distill.main(
            [
                "--config",
                str(configs[name]),
                "--teachers",
                str(pretrained),
                str(pretrained),
                "--dataset_root",
                str(kinetics),
                "--subset_size",
                "16",
                "--width_multiplier",
                "0.25",
                *SMALL,
                "--output_dir",
                str(student),
            ]
        )
        assert (student / "model.safetensors").is_file(), name
    ran = {"rspnet_r21d_k400", "finetune_ucf101", *(n for n in configs if n.startswith("distill_"))}
    assert ran == set(configs), f"configs without a run here: {sorted(set(configs) - ran)}"
