"""A study as data: the YAML spec, its stages and cell kinds, and each cell's resolved settings and stable id.

A spec (``docs/study.md`` has the full format) names **stages**. A stage has one cell ``kind``
(:data:`KINDS`), fixed ``settings``, ``axes`` (lists whose cartesian product gives its cells)
and, for kinds that start from a model, the stages it starts ``from`` (every cell of those
stages, optionally filtered by ``where``, times every point of the axes). ``defaults`` holds
per-kind settings; ``resources`` the per-kind Slurm/local resources. Dependencies follow the
study: a finetune needs its pretraining, robustness its finetune, a CKA map its model (and
``compare_to`` a second one), a distillation its ``teachers``.

A cell's id is a hash of the canonical JSON of its kind, its own resolved settings and its
parents' ids, so a changed setting (anywhere up the chain) makes a new cell and an unchanged one
keeps its id, and with it its finished outputs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from importlib import resources as package_resources
from pathlib import Path
from typing import Any

import yaml

#: The cell kinds, each with the settings it takes (``setting -> recipe flag``; ``None``: the
#: setting is handled by the command builder, not passed as one flag).
_TRAINING = {
    "max_steps": "--max_steps",
    "seed": "--seed",
    "learning_rate": "--learning_rate",
    "optimizer": "--optimizer",
    "batch_size": "--per_device_train_batch_size",
    "logging_steps": "--logging_steps",
    "save_steps": "--save_steps",
    "bf16": "--bf16",
    "num_workers": "--dataloader_num_workers",
}
_CLIP = {
    "backbone": "--backbone",
    "width": "--width_multiplier",
    "num_frames": "--num_frames",
    "image_size": "--image_size",
}
_DOWNSTREAM = {"downstream": "--dataset", "downstream_root": "--dataset_root", "label_set": "--label_set"}
_DOWNSTREAM_TRAINING = {
    **_DOWNSTREAM,
    **_TRAINING,
    "train_epochs": "--num_train_epochs",
    "eval_clips": "--eval_clips",
    "init": "--init",
    **_CLIP,
}
KIND_SETTINGS: dict[str, dict[str, str | None]] = {
    "pretrain": {
        "task": "--pretext_task",
        **_CLIP,
        "pretrain_dataset": "--dataset",
        "dataset_root": "--dataset_root",
        "subset_size": "--subset_size",
        "label_set": "--label_set",
        "epochs": "--num_train_epochs",
        "pretext_config": "--pretext_config",
        "transform_preset": "--transform_preset",
        **_TRAINING,
    },
    "finetune": _DOWNSTREAM_TRAINING,
    "linear_probe": _DOWNSTREAM_TRAINING,
    "retrieval": {**_DOWNSTREAM, "eval_clips": "--eval_clips", "seed": "--seed", "num_workers": None},
    "robustness": {
        "noise": "--noises",
        "severities": "--severities",
        "preset": "--preset",
        "noise_seed": "--seed",
        "eval_clips": "--eval_clips",
        "bf16": "--bf16",
    },
    "cka": {
        **_DOWNSTREAM,
        "num_videos": "--num_videos",
        "kernel": "--kernel",
        "num_workers": "--dataloader_num_workers",
    },
    "distill": {
        **_CLIP,
        "pretrain_dataset": "--dataset",
        "dataset_root": "--dataset_root",
        "subset_size": "--subset_size",
        "label_set": "--label_set",
        "epochs": "--num_train_epochs",
        **_TRAINING,
    },
    "zero_shot": {
        "model": "--model_name_or_path",
        **_DOWNSTREAM,
        "eval_clips": "--eval_clips",
        "bf16": "--bf16",
    },
}
#: Every kind also takes ``args``: extra recipe flags, a list of strings passed as they are.
COMMON_SETTINGS = ("args",)
KINDS = tuple(KIND_SETTINGS)
#: Kinds that start from a model of an earlier stage (``from``), and those that may start from none.
NEEDS_PARENT = ("robustness", "cka")
MAY_HAVE_PARENT = ("finetune", "linear_probe", "retrieval", "robustness", "cka")

#: The columns that describe a pretraining (what an initialisation is made of).
PRETRAINING_COLUMNS = (
    "task",
    "backbone",
    "width",
    "num_frames",
    "image_size",
    "pretrain_dataset",
    "subset_size",
    "epochs",
)
#: The columns of a results row that describe a cell (inherited down the dependency chain,
#: overridden by a cell's own setting of the same name).
AXIS_COLUMNS = (
    *PRETRAINING_COLUMNS,
    "downstream",
    "mode",
    "noise",
    "severity",
    "seed",
    "teachers",
    "label_set",
    "variant",
)
_COLUMN_TYPES = {"width": float, "epochs": float, "num_frames": int, "image_size": int, "subset_size": int}
_COLUMN_TYPES |= {"seed": int, "severity": int}

#: Resource keys of a cell (``resources:`` in the spec): local and Slurm executors read them.
RESOURCE_KEYS = ("gpus", "cpus", "mem_gb", "time_min", "partition", "account", "qos", "constraint")
DEFAULT_RESOURCES = {"gpus": 1, "cpus": 8, "mem_gb": 32, "time_min": 24 * 60}

PRESETS = ("smoke", "miniature", "paper")
_STAGE_KEYS = {
    *("kind", "from", "where", "axes", "settings", "compare_to", "teachers", "resources", "launcher"),
    "variant",
}
_TOP_KEYS = {"name", "description", "notes", "defaults", "resources", "stages", "launcher", "recipes_dir"}
#: Kinds whose results share tables, so two of their cells must differ in some column (CKA maps
#: are shown cell by cell).
DISTINCT_COLUMN_KINDS = tuple(kind for kind in KIND_SETTINGS if kind != "cka")
LAUNCHERS = ("accelerate", "python")


class StudySpecError(ValueError):
    """A study spec that cannot be used; the message is one line naming the file and the key."""


@dataclass
class Cell:
    """One run of the grid: a recipe call with its resolved settings.

    ``settings`` are the cell's own (the recipe's flags), ``columns`` the results-row axes
    (inherited from the parents, then its own), ``parents`` maps a role (``model``,
    ``compare_to``, ``teachers``) to parent cell ids.
    """

    cell_id: str
    kind: str
    stage: str
    settings: dict[str, Any]
    columns: dict[str, Any]
    parents: dict[str, list[str]] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    launcher: str = "accelerate"

    @property
    def view(self) -> dict[str, Any]:
        """Settings and columns in one mapping (columns win): what ``where`` and selectors match."""
        return {**self.settings, **self.columns}

    @property
    def parent_ids(self) -> list[str]:
        """Every parent id, roles in a fixed order (model, compare_to, teachers)."""
        return [i for role in ("model", "compare_to", "teachers") for i in self.parents.get(role, [])]

    def describe(self) -> str:
        """A short human label: kind and the columns that are set."""
        shown = ", ".join(f"{k}={v}" for k, v in self.columns.items() if v is not None)
        return f"{self.kind} [{self.stage}] {shown}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell_id": self.cell_id,
            "kind": self.kind,
            "stage": self.stage,
            "settings": self.settings,
            "columns": self.columns,
            "parents": self.parents,
            "resources": self.resources,
            "launcher": self.launcher,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        return cls(**data)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the same settings always give the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


#: Settings that change where data is read from or how often a run logs, not what it computes:
#: left out of the id, so moving a dataset folder does not make every cell new.
NOT_IN_ID = ("dataset_root", "downstream_root", "num_workers", "logging_steps")


def cell_id_of(kind: str, settings: dict[str, Any], parents: dict[str, list[str]]) -> str:
    """The stable id of a cell: 12 hex digits of the SHA-256 of its kind, settings (but
    :data:`NOT_IN_ID`) and parents' ids, prefixed by the kind."""
    identity = {k: v for k, v in settings.items() if k not in NOT_IN_ID}
    text = canonical_json({"kind": kind, "settings": identity, "parents": parents})
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@dataclass
class StudySpec:
    """A parsed spec: ``source`` (the file, for error messages) and its validated parts."""

    source: str
    name: str
    description: str
    defaults: dict[str, dict[str, Any]]
    resources: dict[str, dict[str, Any]]
    stages: dict[str, dict[str, Any]]
    launcher: str = "accelerate"
    recipes_dir: str | None = None
    #: Markdown appended to the report's index (how to read the numbers, related pages).
    notes: str = ""

    def fail(self, where: str, problem: str):
        raise StudySpecError(f"{self.source}: {where}: {problem}")


def preset_path(name: str) -> Path:
    """The YAML file of a shipped preset (``smoke``, ``miniature``, ``paper``)."""
    return Path(str(package_resources.files("hf_vssl.study") / "presets" / f"{name}.yaml"))


def load_spec(name_or_path: str | Path) -> StudySpec:
    """Read a preset name or a YAML file into a validated :class:`StudySpec`."""
    text = str(name_or_path)
    path = preset_path(text) if text in PRESETS else Path(text)
    if not path.is_file():
        raise StudySpecError(f"--spec {text}: no such file, and not a preset ({', '.join(PRESETS)})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise StudySpecError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    return parse_spec(data, str(path))


def _mapping(value: Any, source: str, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StudySpecError(f"{source}: {where}: expected a mapping, got {type(value).__name__}")
    return value


def parse_spec(data: Any, source: str = "<spec>") -> StudySpec:
    """Validate a spec already read from YAML; ``source`` names it in errors."""
    data = _mapping(data, source, "top level")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise StudySpecError(f"{source}: unknown key {unknown[0]!r}; valid: {', '.join(sorted(_TOP_KEYS))}")
    stages = _mapping(data.get("stages"), source, "stages")
    if not stages:
        raise StudySpecError(f"{source}: stages: no stage given")
    defaults = _mapping(data.get("defaults"), source, "defaults")
    for kind, values in defaults.items():
        if kind not in KINDS:
            raise StudySpecError(f"{source}: defaults.{kind}: unknown kind; valid: {', '.join(KINDS)}")
        _check_settings(_mapping(values, source, f"defaults.{kind}"), kind, source, f"defaults.{kind}")
    resources = _mapping(data.get("resources"), source, "resources")
    for key, values in resources.items():
        if key != "default" and key not in KINDS:
            raise StudySpecError(
                f"{source}: resources.{key}: expected 'default' or a kind ({', '.join(KINDS)})"
            )
        _check_resources(_mapping(values, source, f"resources.{key}"), source, f"resources.{key}")
    spec = StudySpec(
        source=source,
        name=str(data.get("name") or Path(source).stem),
        description=str(data.get("description") or ""),
        defaults={k: dict(v or {}) for k, v in defaults.items()},
        resources={k: dict(v or {}) for k, v in resources.items()},
        stages={},
        launcher=_launcher(data.get("launcher", "accelerate"), source, "launcher"),
        recipes_dir=data.get("recipes_dir"),
        notes=str(data.get("notes") or "").strip(),
    )
    for name, stage in stages.items():
        spec.stages[str(name)] = _parse_stage(_mapping(stage, source, f"stages.{name}"), str(name), spec)
    _check_references(spec)
    return spec


def _launcher(value: Any, source: str, where: str) -> str:
    if value not in LAUNCHERS:
        raise StudySpecError(f"{source}: {where}: expected one of {', '.join(LAUNCHERS)}, got {value!r}")
    return value


def _check_settings(values: dict, kind: str, source: str, where: str) -> None:
    valid = set(KIND_SETTINGS[kind]) | set(COMMON_SETTINGS)
    for key, value in values.items():
        if key not in valid:
            raise StudySpecError(
                f"{source}: {where}.{key}: not a setting of a {kind} cell; valid: {', '.join(sorted(valid))}"
            )
        expected = _COLUMN_TYPES.get(key)
        ok_type = (
            expected is None
            or value is None
            or (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and (expected is float or value == int(value))
            )
        )
        if not ok_type:
            raise StudySpecError(f"{source}: {where}.{key}: expected {expected.__name__}, got {value!r}")
        if key == "args" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise StudySpecError(f"{source}: {where}.args: expected a list of strings (recipe flags)")


def _check_resources(values: dict, source: str, where: str) -> None:
    for key in values:
        if key not in RESOURCE_KEYS:
            raise StudySpecError(
                f"{source}: {where}.{key}: unknown resource; valid: {', '.join(RESOURCE_KEYS)}"
            )


def _parse_stage(stage: dict, name: str, spec: StudySpec) -> dict:
    where = f"stages.{name}"
    unknown = sorted(set(stage) - _STAGE_KEYS)
    if unknown:
        spec.fail(f"{where}.{unknown[0]}", f"unknown stage key; valid: {', '.join(sorted(_STAGE_KEYS))}")
    kind = stage.get("kind")
    if kind not in KINDS:
        spec.fail(f"{where}.kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
    parsed = {"kind": kind, "name": name}
    sources = stage.get("from") or []
    parsed["from"] = [sources] if isinstance(sources, str) else list(sources)
    if parsed["from"] and kind not in MAY_HAVE_PARENT:
        spec.fail(f"{where}.from", f"a {kind} cell starts from no model")
    if not parsed["from"] and kind in NEEDS_PARENT:
        spec.fail(f"{where}.from", f"a {kind} cell needs the stage(s) of its model")
    parsed["where"] = _mapping(stage.get("where"), spec.source, f"{where}.where")
    axes = _mapping(stage.get("axes"), spec.source, f"{where}.axes")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            spec.fail(f"{where}.axes.{key}", "expected a non-empty list of values")
    settings = _mapping(stage.get("settings"), spec.source, f"{where}.settings")
    _check_settings(settings, kind, spec.source, f"{where}.settings")
    for key, values in axes.items():
        for value in values:
            _check_settings({key: value}, kind, spec.source, f"{where}.axes")
    parsed["axes"], parsed["settings"] = axes, settings
    parsed["compare_to"] = _mapping(stage.get("compare_to"), spec.source, f"{where}.compare_to")
    if parsed["compare_to"] and kind != "cka":
        spec.fail(f"{where}.compare_to", "only a cka stage compares two models")
    teachers = stage.get("teachers")
    if kind == "distill":
        teachers = _mapping(teachers, spec.source, f"{where}.teachers")
        selectors = teachers.get("select")
        if not teachers.get("from") or not isinstance(selectors, list) or len(selectors) < 1:
            spec.fail(f"{where}.teachers", "expected {from: STAGE(S), select: [SELECTOR, ...]}")
        teacher_from = teachers["from"]
        parsed["teachers"] = {
            "from": [teacher_from] if isinstance(teacher_from, str) else list(teacher_from),
            "select": [_mapping(s, spec.source, f"{where}.teachers.select") for s in selectors],
        }
    elif teachers is not None:
        spec.fail(f"{where}.teachers", "only a distill stage has teachers")
    resources = _mapping(stage.get("resources"), spec.source, f"{where}.resources")
    _check_resources(resources, spec.source, f"{where}.resources")
    parsed["resources"] = resources
    parsed["launcher"] = _launcher(stage.get("launcher", spec.launcher), spec.source, f"{where}.launcher")
    variant = stage.get("variant")
    if variant is not None and (not isinstance(variant, str) or not variant.strip()):
        spec.fail(f"{where}.variant", f"expected a label (text, may use {{setting}} fields), got {variant!r}")
    parsed["variant"] = variant
    return parsed


def _check_references(spec: StudySpec) -> None:
    for name, stage in spec.stages.items():
        refs = [*stage["from"], *(stage.get("teachers") or {}).get("from", [])]
        for ref in refs:
            if ref not in spec.stages:
                spec.fail(f"stages.{name}", f"refers to stage {ref!r}, which the spec does not define")


# -- expansion ------------------------------------------------------------------------------------


def stage_order(spec: StudySpec) -> list[str]:
    """The stages in dependency order (a stage after every stage it starts from)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            spec.fail(f"stages.{name}", "its dependencies form a cycle")
        visiting.add(name)
        stage = spec.stages[name]
        for ref in [*stage["from"], *(stage.get("teachers") or {}).get("from", [])]:
            visit(ref)
        visiting.discard(name)
        order.append(name)

    for name in spec.stages:
        visit(name)
    return order


def matches(columns: dict[str, Any], selector: dict[str, Any]) -> bool:
    """Whether ``columns`` agree with every ``key: value`` (or ``key: [values]``) of ``selector``."""
    for key, wanted in selector.items():
        options = wanted if isinstance(wanted, list) else [wanted]
        if not any(same_value(columns.get(key), option) for option in options):
            return False
    return True


def same_value(have: Any, wanted: Any) -> bool:
    """Equality that treats ``1`` and ``1.0``, and a number and its text (from a command line), as equal."""
    if have is None or wanted is None:
        return have is None and (wanted is None or str(wanted).lower() in ("none", "null"))
    if isinstance(have, (int, float)) and not isinstance(have, bool):
        try:
            return float(have) == float(wanted)
        except (TypeError, ValueError):
            return False
    return str(have) == str(wanted)


def _teacher_labels(teachers: list[Cell]) -> str:
    """Comma-joined teacher names: the task, plus whichever axes tell the teachers apart."""
    keys = ["task"] + [
        k
        for k in ("backbone", "pretrain_dataset", "subset_size", "epochs")
        if len({str(t.columns.get(k)) for t in teachers}) > 1
    ]
    return ",".join(":".join(str(t.columns.get(k)) for k in keys) for t in teachers)


def _resources(spec: StudySpec, stage: dict) -> dict[str, Any]:
    return {
        **DEFAULT_RESOURCES,
        **spec.resources.get("default", {}),
        **spec.resources.get(stage["kind"], {}),
        **stage["resources"],
    }


def expand(spec: StudySpec) -> list[Cell]:
    """Every cell of the spec, in dependency order; a cell two stages produce alike appears once."""
    by_stage: dict[str, list[Cell]] = {}
    cells: dict[str, Cell] = {}
    for name in stage_order(spec):
        stage = spec.stages[name]
        kind = stage["kind"]
        sources = [c for ref in stage["from"] for c in by_stage[ref] if matches(c.view, stage["where"])]
        if stage["from"] and not sources:
            spec.fail(f"stages.{name}.where", f"selects no cell of {', '.join(stage['from'])}")
        keys = list(stage["axes"])
        points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*stage["axes"].values())]
        produced = []
        for parent in sources or [None]:
            for point in points:
                settings = {**spec.defaults.get(kind, {}), **stage["settings"], **point}
                settings = {k: v for k, v in settings.items() if v is not None}
                columns = dict.fromkeys(AXIS_COLUMNS)
                parents: dict[str, list[str]] = {}
                if parent is not None:
                    columns.update(parent.columns)
                    parents["model"] = [parent.cell_id]
                if kind == "cka" and stage["compare_to"]:
                    parents["compare_to"] = [_compare_cell(spec, name, stage, parent, by_stage).cell_id]
                if kind == "distill":
                    teachers = _teacher_cells(spec, name, stage, by_stage)
                    parents["teachers"] = [t.cell_id for t in teachers]
                    columns["teachers"] = _teacher_labels(teachers)
                    columns["task"] = None
                for key in AXIS_COLUMNS:
                    if key in settings:
                        columns[key] = settings[key]
                if stage["variant"]:
                    columns["variant"] = _variant_label(spec, name, stage["variant"], settings)
                if kind == "pretrain":
                    columns["pretrain_dataset"] = settings.get("pretrain_dataset", "synthetic")
                if kind in ("finetune", "linear_probe", "retrieval"):
                    columns["mode"] = kind
                    if parent is None:
                        columns["task"] = None
                elif kind == "zero_shot":
                    columns["mode"], columns["backbone"] = "zero_shot", settings.get("model")
                for key, expected in _COLUMN_TYPES.items():
                    if columns.get(key) is not None:
                        columns[key] = expected(columns[key])
                cell_id = cell_id_of(kind, settings, parents)
                cell = cells.get(cell_id) or Cell(
                    cell_id=cell_id,
                    kind=kind,
                    stage=name,
                    settings=settings,
                    columns=columns,
                    parents=parents,
                    resources=_resources(spec, stage),
                    launcher=stage["launcher"],
                )
                cells[cell_id] = cell
                produced.append(cell)
        by_stage[name] = produced
    _check_distinct_columns(spec, list(cells.values()))
    return list(cells.values())


def _variant_label(spec: StudySpec, stage: str, template: str, settings: dict[str, Any]) -> str:
    """A stage's ``variant`` with its ``{setting}`` fields filled from the cell's settings
    (``"{pretext_config[rates]}"`` reads one key of a mapping setting)."""
    try:
        return template.format(**settings)
    except (KeyError, IndexError, AttributeError, ValueError) as error:
        spec.fail(f"stages.{stage}.variant", f"cannot fill {template!r} from the cell's settings ({error!r})")


def _check_distinct_columns(spec: StudySpec, cells: list[Cell]) -> None:
    """Refuse two cells whose results rows would be indistinguishable (same kind and columns).

    Their numbers would be averaged in one table cell as if they were seeds; a stage that changes
    a setting which is no column (``pretext_config``, an optimiser, ...) needs a ``variant``.
    """
    seen: dict[str, Cell] = {}
    for cell in cells:
        if cell.kind not in DISTINCT_COLUMN_KINDS:
            continue
        key = canonical_json([cell.kind, cell.columns])
        other = seen.setdefault(key, cell)
        if other is not cell:
            stages = f"stages.{other.stage}" + (
                "" if other.stage == cell.stage else f" and stages.{cell.stage}"
            )
            spec.fail(
                stages,
                f"cells {other.cell_id} and {cell.cell_id} differ only in settings that are no results "
                "column, so their numbers would be averaged together; give the stage a `variant` label",
            )


def _one_cell(spec: StudySpec, where: str, candidates: list[Cell], selector: dict) -> Cell:
    found = [c for c in candidates if matches(c.view, selector)]
    unique = list({c.cell_id: c for c in found}.values())
    if len(unique) != 1:
        spec.fail(where, f"{canonical_json(selector)} selects {len(unique)} cells, expected exactly one")
    return unique[0]


def _compare_cell(spec, name: str, stage: dict, parent: Cell, by_stage: dict) -> Cell:
    """Model B of a CKA cell: the cell of the same stages equal to model A but for ``compare_to``."""
    selector = {k: v for k, v in parent.columns.items() if k in AXIS_COLUMNS and v is not None}
    selector = {k: v for k, v in selector.items() if k not in stage["compare_to"]} | stage["compare_to"]
    candidates = [c for ref in stage["from"] for c in by_stage[ref]]
    return _one_cell(spec, f"stages.{name}.compare_to", candidates, selector)


def _teacher_cells(spec, name: str, stage: dict, by_stage: dict) -> list[Cell]:
    candidates = [c for ref in stage["teachers"]["from"] for c in by_stage[ref]]
    return [
        _one_cell(spec, f"stages.{name}.teachers.select", candidates, selector)
        for selector in stage["teachers"]["select"]
    ]
