"""Resumable checkpoints that load without pickle, written atomically, and the run's folder lock.

A checkpoint is ``<output_dir>/checkpoints/checkpoint-<step>/``:

- ``model.safetensors`` (``model_<i>.safetensors`` for further prepared models): the state dict;
- ``optimizer.safetensors`` + ``optimizer.json`` (``optimizer_<i>...``): the optimiser state, its
  tensors in safetensors and everything else (hyper-parameters, parameter ids) in JSON;
- ``custom_<i>.safetensors`` + ``custom_<i>.json``: objects registered with
  ``accelerator.register_for_checkpointing`` (the learning-rate schedule), the same way;
  ``scaler.json`` when a gradient scaler runs (fp16);
- ``rng_state_<rank>.safetensors`` + ``.json``: torch, CUDA, NumPy and Python RNG states per rank;
- ``loop_state.json``, written last: the loop position and the list of files with their sizes.

Nothing is ever unpickled: JSON and safetensors cannot run code, so a ``.pkl``/``.bin`` planted
in a checkpoint folder is never read. A checkpoint is written in ``<output_dir>/.staging/`` and
renamed into ``checkpoints/`` once complete; ``latest`` resolves to the newest checkpoint that
is complete *and* loads, and says which newer ones it skipped and why.

One run at a time writes into an ``--output_dir``: :func:`acquire_output_lock` takes an exclusive
``flock`` on ``<output_dir>/.lock`` (released by the OS if the process dies), and
:func:`refuse_foreign_checkpoints` stops a fresh run from mixing its checkpoints with another run's.

Every process of a run writes into the same ``--output_dir`` (its RNG state in each checkpoint)
and reads the same checkpoint on resume, so with several machines that folder must be on a
filesystem they all mount; :func:`check_shared_output_dir` verifies it at start-up (see
``docs/scaling.md``).

Under FSDP (``torch.distributed.fsdp.fully_shard``, or FSDP1) each process holds a shard of the
model and optimiser state: :func:`write_checkpoint` gathers the full state on every process (a
collective) and the main process writes the same files as without FSDP (optimiser state keyed by
position, as ``Optimizer.state_dict`` does), so a checkpoint resumes with or without FSDP, on any
number of processes; :func:`load_checkpoint` shards the full state back. :func:`gathered_state_dict`
gives the final export the full weights the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import random
import re
import secrets
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import broadcast_object_list, gather_object
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel
from torch.distributed.tensor import DTensor

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "loop_state.json"
STAGING_DIR = ".staging"
LOCK_FILE = ".lock"
#: Bumped when the layout of a checkpoint folder changes incompatibly.
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint folder that is incomplete, corrupt or not made by this version of hf_vssl."""


class OutputDirInUseError(RuntimeError):
    """Another live run holds the lock on the ``--output_dir``."""


class SharedOutputDirError(RuntimeError):
    """The processes of a run do not see the same ``--output_dir`` (no shared filesystem)."""


# ----------------------------------------------------------------------------------------------
# Finding checkpoints


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"{CHECKPOINT_PREFIX}{step}"


def _numbered_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Checkpoints of a run that carry their loop state (written last), oldest first."""
    return [path for _, path in _numbered_checkpoints(output_dir) if (path / STATE_FILE).is_file()]


def has_checkpoints(output_dir: str | Path) -> bool:
    """Whether ``output_dir`` holds any checkpoint folder, complete or not."""
    return bool(_numbered_checkpoints(output_dir))


def resolve_resume_path(output_dir: str | Path, resume_from_checkpoint: str | None) -> Path | None:
    """The checkpoint to resume from, checked to load (None: nothing to resume from).

    ``"latest"`` -> the newest checkpoint of ``output_dir`` that is complete and loadable; each
    newer one that is not is skipped with a warning naming the problem. An explicit folder that
    does not load raises :class:`CheckpointError`.
    """
    return resolve_checkpoint(output_dir, resume_from_checkpoint)[0]


def resolve_checkpoint(
    output_dir: str | Path, resume_from_checkpoint: str | None
) -> tuple[Path | None, CheckpointContents | None]:
    """Like :func:`resolve_resume_path`, also returning the checkpoint's contents, read and checked."""
    if not resume_from_checkpoint:
        return None, None
    if resume_from_checkpoint != "latest":
        path = Path(resume_from_checkpoint)
        if not path.is_dir():
            raise FileNotFoundError(f"--resume_from_checkpoint {path}: no such folder")
        return path, read_checkpoint(path)
    skipped = []
    for _, path in reversed(_numbered_checkpoints(output_dir)):
        try:
            state = read_checkpoint(path)
        except CheckpointError as error:
            skipped.append(str(error))
            continue
        for reason in skipped:
            logger.warning("--resume_from_checkpoint latest: skipped %s", reason)
        return path, state
    for reason in skipped:
        logger.warning("--resume_from_checkpoint latest: skipped %s", reason)
    return None, None


# ----------------------------------------------------------------------------------------------
# Nested state <-> JSON + safetensors (no pickle)

_TENSOR, _PAIRS, _TUPLE = "__tensor__", "__pairs__", "__tuple__"


def split_state(tree: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """``tree`` (dicts, lists, tuples, numbers, strings, None, tensors) -> ``(json_tree, tensors)``.

    Tensors move to a flat dict under their path; dicts whose keys are not all strings (an
    optimiser's parameter ids) become ``{"__pairs__": [[key, value], ...]}`` so the keys keep
    their type. Anything else is refused: it would need pickle.
    """
    tensors: dict[str, torch.Tensor] = {}

    def visit(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[path] = value.detach()
            return {_TENSOR: path}
        if isinstance(value, np.ndarray):
            return visit(torch.from_numpy(value.copy()), path)
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, dict):
            if all(isinstance(key, str) for key in value):
                return {key: visit(item, f"{path}/{key}") for key, item in value.items()}
            if not all(isinstance(key, (int, float, bool)) for key in value):
                raise TypeError(
                    f"state at {path or '/'}: keys {list(value)[:3]} cannot be saved without pickle"
                )
            return {_PAIRS: [[key, visit(item, f"{path}/{key}")] for key, item in value.items()]}
        if isinstance(value, tuple):
            return {_TUPLE: [visit(item, f"{path}/{i}") for i, item in enumerate(value)]}
        if isinstance(value, list):
            return [visit(item, f"{path}/{i}") for i, item in enumerate(value)]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"state at {path or '/'}: a {type(value).__name__} cannot be saved without pickle")

    return visit(tree, prefix), tensors


def join_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_state`."""
    if isinstance(tree, list):
        return [join_state(item, tensors) for item in tree]
    if not isinstance(tree, dict):
        return tree
    if set(tree) == {_TENSOR}:
        if tree[_TENSOR] not in tensors:
            raise KeyError(f"tensor {tree[_TENSOR]!r} missing")
        return tensors[tree[_TENSOR]]
    if set(tree) == {_PAIRS}:
        return {key: join_state(item, tensors) for key, item in tree[_PAIRS]}
    if set(tree) == {_TUPLE}:
        return tuple(join_state(item, tensors) for item in tree[_TUPLE])
    return {key: join_state(item, tensors) for key, item in tree.items()}


def _safetensors_ready(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, and no two tensors sharing memory (safetensors refuses aliases)."""
    seen, out = set(), {}
    for key, tensor in tensors.items():
        tensor = tensor.detach().to("cpu").contiguous()
        pointer = (tensor.untyped_storage().data_ptr(), tensor.storage_offset()) if tensor.numel() else None
        if pointer in seen:
            tensor = tensor.clone()
        elif pointer is not None:
            seen.add(pointer)
        out[key] = tensor
    return out


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, allow_nan=True))


def save_state_files(folder: Path, name: str, state: Any) -> list[str]:
    """``state`` as ``<name>.json`` + ``<name>.safetensors`` in ``folder``; returns the file names."""
    tree, tensors = split_state(state)
    _write_json(folder / f"{name}.json", tree)
    save_file(_safetensors_ready(tensors), str(folder / f"{name}.safetensors"))
    return [f"{name}.json", f"{name}.safetensors"]


def load_state_files(folder: Path, name: str) -> Any:
    """Inverse of :func:`save_state_files` (raises :class:`CheckpointError` naming the bad file)."""
    tensors = _load_safetensors(folder / f"{name}.safetensors")
    tree = _load_json(folder / f"{name}.json")
    try:
        return join_state(tree, tensors)
    except KeyError as error:
        raise CheckpointError(f"{folder}: {name}.json refers to {error.args[0]}") from None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent}: {path.name} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path.parent}: {path.name} is not valid JSON ({error})") from None


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: {path.name} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path.parent}: {path.name} does not load ({error})") from None


# ----------------------------------------------------------------------------------------------
# RNG states


def rng_state() -> dict[str, Any]:
    """This process's global RNG states (Python, NumPy, torch CPU and CUDA)."""
    version, mt_state, gauss = random.getstate()
    # The global NumPy RNG is what user code and libraries draw from: restored as it was.
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state(  # noqa: NPY002 (the global NumPy RNG, restored as it was)
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


# ----------------------------------------------------------------------------------------------
# FSDP: sharded state gathered for writing, sharded again after reading

#: the full state, gathered tensor by tensor into the main process's CPU memory
_FULL_ON_MAIN = StateDictOptions(full_state_dict=True, cpu_offload=True)


def is_sharded(module: nn.Module) -> bool:
    """Whether FSDP splits ``module``'s state across processes (FSDP2 ``fully_shard`` makes its
    parameters DTensors; FSDP1 wraps modules in ``FullyShardedDataParallel``)."""
    return any(isinstance(m, (FSDPModule, FullyShardedDataParallel)) for m in module.modules()) or any(
        isinstance(p, DTensor) for p in module.parameters()
    )


def gathered_state_dict(module: nn.Module) -> dict[str, torch.Tensor] | None:
    """The full state dict of an FSDP-sharded ``module``, on the main process's CPU (``{}`` on the
    other processes); ``None`` when ``module`` is not sharded (its ``state_dict()`` is whole).

    Under FSDP this is a collective: every process calls it, in the same order. The final export
    of a recipe is ``model.save_pretrained(folder, state_dict=gathered_state_dict(model))`` on the
    main process, which writes the full weights with or without FSDP.
    """
    return get_model_state_dict(module, options=_FULL_ON_MAIN) if is_sharded(module) else None


def _sharded_owner(models: list[nn.Module], optimizer) -> nn.Module | None:
    """The FSDP-sharded model whose parameters ``optimizer`` updates (None: not sharded)."""
    params = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for model in models:
        if is_sharded(model) and any(id(p) in params for p in model.parameters()):
            return model
    return None


def _plain(optimizer) -> torch.optim.Optimizer:
    """The torch optimiser inside Accelerate's wrapper (whose ``step`` may skip under accumulation)."""
    return getattr(optimizer, "optimizer", optimizer)


def _gathered_optimizer_state(models: list[nn.Module], optimizer) -> dict | None:
    """The full state of an optimiser of a sharded model, on the main process (``{}`` elsewhere),
    keyed by position like ``Optimizer.state_dict()`` so the file is the same with or without FSDP;
    None when the model is not sharded. A collective under FSDP."""
    owner = _sharded_owner(models, optimizer)
    if owner is None:
        return None
    by_name = get_optimizer_state_dict(owner, _plain(optimizer), options=_FULL_ON_MAIN)
    if not by_name:
        return {}
    position: dict[str, int] = {}
    groups = [
        {**group, "params": [position.setdefault(name, len(position)) for name in group["params"]]}
        for group in by_name["param_groups"]
    ]
    return {
        "state": {position[name]: value for name, value in by_name["state"].items()},
        "param_groups": groups,
    }


def _set_sharded_optimizer_state(owner: nn.Module, optimizer, state: dict) -> None:
    """Inverse of :func:`_gathered_optimizer_state`: a full, position-keyed optimiser state (from
    any checkpoint) sharded into ``optimizer`` of the FSDP model ``owner``. A collective.
    Raises ``ValueError`` when the state's parameter groups do not match the optimiser's."""
    optimizer = _plain(optimizer)
    # The optimiser's parameter names in its own order; local shards only, nothing gathered.
    names = [group["params"] for group in get_optimizer_state_dict(owner, optimizer)["param_groups"]]
    groups = state["param_groups"]
    if [len(group["params"]) for group in groups] != [len(group) for group in names]:
        raise ValueError(
            f"parameter groups of sizes {[len(g['params']) for g in groups]} saved, "
            f"{[len(group) for group in names]} in this run"
        )
    name_of = {
        position: name
        for group, group_names in zip(groups, names)
        for position, name in zip(group["params"], group_names)
    }
    if not set(state["state"]) <= set(name_of):
        raise ValueError(
            f"state for parameters {sorted(set(state['state']) - set(name_of))[:3]} not in any group"
        )
    by_name = {
        "state": {name_of[position]: value for position, value in state["state"].items()},
        "param_groups": [{**group, "params": group_names} for group, group_names in zip(groups, names)],
    }
    set_optimizer_state_dict(owner, optimizer, by_name, options=StateDictOptions(full_state_dict=True))


# ----------------------------------------------------------------------------------------------
# Writing and reading a checkpoint


def _indexed(name: str, index: int) -> str:
    return name if index == 0 else f"{name}_{index}"


@dataclass
class CheckpointContents:
    """What a checkpoint folder holds, read into memory (nothing applied yet)."""

    path: Path
    loop_state: dict
    models: list[dict[str, torch.Tensor]] = field(default_factory=list)
    optimizers: list[Any] = field(default_factory=list)
    custom: list[Any] = field(default_factory=list)
    scaler: dict | None = None


def write_checkpoint(accelerator, output_dir: str | Path, loop_state: dict) -> Path:
    """Save the prepared models, optimisers, registered objects, scaler and RNG states of
    ``accelerator`` into ``checkpoints/checkpoint-<global_step>`` (every process calls this).

    Files go to ``.staging/`` first; ``loop_state.json`` (with the file list) is written last and
    the folder is renamed into place only then, so a crash leaves no half checkpoint behind.
    """
    output_dir = Path(output_dir)
    step = int(loop_state["global_step"])
    staging = output_dir / STAGING_DIR / f"{CHECKPOINT_PREFIX}{step}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    save_state_files(staging, f"rng_state_{accelerator.process_index}", rng_state())
    files: list[str] = []
    models = [accelerator.unwrap_model(model) for model in accelerator._models]
    # FSDP: every process takes part in gathering the full states (None: not sharded, read below)
    model_states = [gathered_state_dict(model) for model in models]
    optimizer_states = [_gathered_optimizer_state(models, optimizer) for optimizer in accelerator._optimizers]
    if accelerator.is_main_process:
        for i, (model, state) in enumerate(zip(models, model_states, strict=True)):
            name = f"{_indexed('model', i)}.safetensors"
            save_file(_safetensors_ready(model.state_dict() if state is None else state), str(staging / name))
            files.append(name)
        for i, (optimizer, state) in enumerate(zip(accelerator._optimizers, optimizer_states, strict=True)):
            state = optimizer.state_dict() if state is None else state
            files += save_state_files(staging, _indexed("optimizer", i), state)
        for i, obj in enumerate([*accelerator._schedulers, *accelerator._custom_objects]):
            files += save_state_files(staging, f"custom_{i}", obj.state_dict())
        if accelerator.scaler is not None:
            _write_json(staging / "scaler.json", split_state(accelerator.scaler.state_dict())[0])
            files.append("scaler.json")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        files += sorted(p.name for p in staging.glob("rng_state_*"))
        manifest = {name: (staging / name).stat().st_size for name in files}
        state = {
            **loop_state,
            "format_version": FORMAT_VERSION,
            "num_processes": accelerator.num_processes,
            "files": manifest,
        }
        _write_json(staging / STATE_FILE, state)
        _fsync_folder(staging)
        final = checkpoint_dir(output_dir, step)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # a rerun from an earlier checkpoint passes this step again
            shutil.rmtree(final)
        os.replace(staging, final)
    accelerator.wait_for_everyone()
    return checkpoint_dir(output_dir, step)


def _fsync_folder(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def read_checkpoint(path: str | Path) -> CheckpointContents:
    """Read and check a checkpoint folder: every listed file present at its recorded size, every
    JSON parses, every safetensors file loads. Raises :class:`CheckpointError` naming the problem."""
    path = Path(path)
    state = _load_json(path / STATE_FILE)
    if not isinstance(state, dict) or "global_step" not in state:
        raise CheckpointError(f"{path}: {STATE_FILE} holds no loop position")
    if state.get("format_version") != FORMAT_VERSION or not isinstance(state.get("files"), dict):
        raise CheckpointError(
            f"{path}: not a checkpoint of this hf_vssl version (format "
            f"{state.get('format_version')}, expected {FORMAT_VERSION}); it cannot be resumed from"
        )
    for name, size in state["files"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{path}: {name} is missing")
        if file.stat().st_size != size:
            raise CheckpointError(
                f"{path}: {name} has {file.stat().st_size} bytes, {size} were written (truncated?)"
            )
    names = set(state["files"])
    contents = CheckpointContents(path, state)
    i = 0
    while f"{_indexed('model', i)}.safetensors" in names:
        contents.models.append(_load_safetensors(path / f"{_indexed('model', i)}.safetensors"))
        i += 1
    i = 0
    while f"{_indexed('optimizer', i)}.json" in names:
        contents.optimizers.append(load_state_files(path, _indexed("optimizer", i)))
        i += 1
    i = 0
    while f"custom_{i}.json" in names:
        contents.custom.append(load_state_files(path, f"custom_{i}"))
        i += 1
    if "scaler.json" in names:
        contents.scaler = join_state(_load_json(path / "scaler.json"), {})
    return contents


def load_checkpoint(accelerator, contents: CheckpointContents) -> dict:
    """Apply ``contents`` (from :func:`read_checkpoint`) to ``accelerator``'s prepared objects and
    this rank's RNG; returns the loop state. A checkpoint of another model or setup is refused."""
    path = contents.path
    counts = {
        "models": (len(contents.models), len(accelerator._models)),
        "optimizers": (len(contents.optimizers), len(accelerator._optimizers)),
        "registered objects": (
            len(contents.custom),
            len(accelerator._schedulers) + len(accelerator._custom_objects),
        ),
    }
    for what, (saved, live) in counts.items():
        if saved != live:
            raise CheckpointError(
                f"{path}: holds {saved} {what}, this run has {live}: a checkpoint of another setup"
            )
    models = [accelerator.unwrap_model(model) for model in accelerator._models]
    for state, model in zip(contents.models, models, strict=True):
        try:
            if is_sharded(model):  # every process read the full state: each keeps its own shards
                set_model_state_dict(model, dict(state), options=StateDictOptions(full_state_dict=True))
            else:
                model.load_state_dict(state, strict=True)
        except (RuntimeError, KeyError) as error:
            first = str(error).strip().splitlines()
            raise CheckpointError(
                f"{path}: the weights do not fit this run's model ({' '.join(first[:2])})"
            ) from None
    for state, optimizer in zip(contents.optimizers, accelerator._optimizers, strict=True):
        owner = _sharded_owner(models, optimizer)
        try:
            if owner is None:
                optimizer.load_state_dict(state)
            else:
                _set_sharded_optimizer_state(owner, optimizer, state)
        except (ValueError, KeyError) as error:
            raise CheckpointError(f"{path}: the optimizer state does not fit this run ({error})") from None
    for state, obj in zip(
        contents.custom, [*accelerator._schedulers, *accelerator._custom_objects], strict=True
    ):
        obj.load_state_dict(state)
    if contents.scaler is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(contents.scaler)
    saved_processes = contents.loop_state.get("num_processes", 1)
    rng_name = f"rng_state_{accelerator.process_index}"
    if saved_processes != accelerator.num_processes:
        logger.warning(
            "%s was saved by %d processes, this run has %d: the data order and randomness differ from "
            "an uninterrupted run",
            path,
            saved_processes,
            accelerator.num_processes,
        )
    if (path / f"{rng_name}.json").is_file():
        set_rng_state(load_state_files(path, rng_name))
    return contents.loop_state


def prune_checkpoints(output_dir: str | Path, keep: int | None) -> None:
    """Delete all but the newest ``keep`` complete checkpoints."""
    if not keep or keep < 1:
        return
    for path in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def write_loop_state(path: Path, **state) -> None:
    """Write ``loop_state.json`` into ``path`` as is (tests and tools; checkpoints use :func:`write_checkpoint`)."""
    _write_json(path / STATE_FILE, state)


def read_loop_state(path: Path) -> dict:
    """The ``loop_state.json`` of a checkpoint folder."""
    return _load_json(Path(path) / STATE_FILE)


def truncate_log(log_file: Path, step: int) -> None:
    """Drop the entries after ``step`` from a ``log_history.jsonl`` (a resumed run logs them again)."""
    if not log_file.is_file():
        return
    kept = []
    for line in log_file.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line cut off by a kill is dropped
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
    log_file.write_text("".join(f"{line}\n" for line in kept))


# ----------------------------------------------------------------------------------------------
# One run per output folder

_held_locks: dict[Path, int] = {}


def acquire_output_lock(output_dir: str | Path) -> None:
    """Take the exclusive lock of ``output_dir`` for this process (main process only).

    A second live run refuses with :class:`OutputDirInUseError`. A lock left by a run that died
    (its process is gone, so the ``flock`` is free) is taken over with a warning naming it. A
    process that already holds the lock (an earlier run in the same Python process) keeps it.
    The lock is released when the process exits, or with :func:`release_output_lock`.
    """
    output_dir = Path(output_dir).resolve()
    if output_dir in _held_locks:
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    lock_path = output_dir / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _describe_holder(os.pread(fd, 4096, 0))
        os.close(fd)
        raise OutputDirInUseError(
            f"--output_dir {output_dir} is in use by another run ({holder}); wait for it to finish or choose "
            "another --output_dir"
        ) from None
    previous = os.pread(fd, 4096, 0)
    if previous.strip():
        logger.warning(
            "--output_dir %s: taking over the lock of a run that did not exit cleanly (%s)",
            output_dir,
            _describe_holder(previous),
        )
    os.ftruncate(fd, 0)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.pwrite(fd, json.dumps(info).encode(), 0)
    _held_locks[output_dir] = fd


def release_output_lock(output_dir: str | Path) -> None:
    """Release the lock taken by :func:`acquire_output_lock` (no-op if this process holds none)."""
    fd = _held_locks.pop(Path(output_dir).resolve(), None)
    if fd is not None:
        os.ftruncate(fd, 0)  # an empty lock file means "released cleanly"
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@atexit.register
def release_all_output_locks() -> None:
    """Release every output-folder lock this process holds (at exit, and at the end of a recipe)."""
    for path in list(_held_locks):
        release_output_lock(path)


SHARED_CHECK_PREFIX = ".shared-fs-check-"


def check_shared_output_dir(accelerator, output_dir: str | Path, wait_s: float = 10.0) -> None:
    """Refuse (on every process alike) when the processes of a run do not see the same ``output_dir``.

    The main process writes a file named and filled with a fresh random nonce into ``output_dir``;
    after a barrier every process looks for it in *its* ``output_dir`` (waiting up to ``wait_s``
    for a slow network filesystem to show it); the answers are gathered, so either all processes
    go on or all raise :class:`SharedOutputDirError` naming the ranks and hosts that saw no such
    file: a folder on a machine's local disk, or a different ``--output_dir`` per machine, would
    leave each machine with its own checkpoints and no resume. A single process returns at once.
    Costs two collectives at start-up, nothing per step.
    """
    if accelerator.num_processes == 1:
        return
    output_dir = Path(output_dir)
    nonce = [secrets.token_hex(16) if accelerator.is_main_process else None]
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / f"{SHARED_CHECK_PREFIX}{nonce[0]}").write_text(nonce[0])
    broadcast_object_list(nonce)  # also the barrier: the file is written before anyone looks
    probe = output_dir / f"{SHARED_CHECK_PREFIX}{nonce[0]}"
    deadline = time.monotonic() + wait_s
    while not (seen := _holds(probe, nonce[0])) and time.monotonic() < deadline:
        time.sleep(0.5)  # only a process that does not see it yet waits
    answers = gather_object(
        [(accelerator.process_index, socket.gethostname(), str(output_dir.resolve()), seen)]
    )
    if accelerator.is_main_process:
        probe.unlink(missing_ok=True)
    blind = [answer for answer in answers if not answer[3]]
    if blind:
        main = next(answer for answer in answers if answer[0] == 0)
        where = "; ".join(f"rank {rank} on {host} ({folder})" for rank, host, folder, _ in blind)
        raise SharedOutputDirError(
            f"ranks do not share --output_dir {output_dir}: the file rank 0 wrote on {main[1]} ({main[2]}) is "
            f"missing for {where}; resume needs a shared filesystem: put --output_dir on storage every "
            "machine mounts at the same path (see docs/scaling.md)"
        )


def _holds(path: Path, text: str) -> bool:
    try:
        return path.read_text() == text
    except OSError:
        return False


def _describe_holder(raw: bytes) -> str:
    try:
        info = json.loads(raw.decode())
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (ValueError, KeyError, TypeError):
        return "unknown process"


def refuse_foreign_checkpoints(
    output_dir: str | Path, resume_from_checkpoint: str | None, overwrite_output_dir: bool
) -> None:
    """A fresh run (no ``--resume_from_checkpoint``) into a folder holding another run's
    checkpoints or log refuses; ``--overwrite_output_dir`` deletes them instead."""
    output_dir = Path(output_dir)
    leftovers = [
        p
        for p in (output_dir / "checkpoints", output_dir / STAGING_DIR, output_dir / "log_history.jsonl")
        if p.exists()
    ]
    if resume_from_checkpoint or not leftovers:
        return
    if not overwrite_output_dir:
        raise FileExistsError(
            f"--output_dir {output_dir} holds another run ({', '.join(p.name for p in leftovers)}); continue it "
            "with --resume_from_checkpoint latest, start over with --overwrite_output_dir, or choose another "
            "--output_dir"
        )
    logger.warning(
        "--overwrite_output_dir: deleting %s in %s", ", ".join(p.name for p in leftovers), output_dir
    )
    for path in leftovers:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
