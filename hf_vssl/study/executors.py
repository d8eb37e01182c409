"""Where a study's cells run: ``local`` (N subprocesses at once) or ``slurm`` (submitit array jobs).

Every cell is the recipe of its kind (``recipes/pretrain.py``, ``finetune.py``, ...) run as an
``accelerate launch`` subprocess (or plain ``python`` where the spec says ``launcher: python``)
with its output folder ``cells/<id>/output`` and ``--resume_from_checkpoint latest``, so a cell
that was interrupted (a killed runner, a preempted Slurm job) continues from its own newest
checkpoint when it runs again. :func:`execute_cell` runs one cell and, when its recipe
succeeded, records its results (the cell is then finished).

- :class:`LocalExecutor`: ``jobs`` cells at once, each with its own GPUs (``CUDA_VISIBLE_DEVICES``)
  and ``threads`` CPU threads; a cell starts when its parents have finished.
- :class:`SlurmExecutor`: the cells of each dependency wave as array jobs through ``submitit``
  (one array per resource shape, ``gpus``/``cpus``/``mem_gb``/``time_min``/``partition`` from
  the spec), requeued on preemption (:class:`CellJob` is ``submitit.helpers.Checkpointable``).
  ``cluster="local"`` runs the same jobs through submitit's local executor (tests, a workstation).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .plan import waves
from .results import cell_dir, log_path_of, output_dir_of, record_cell
from .spec import KIND_SETTINGS, Cell

#: The recipe file of each cell kind (under the repository's ``recipes/`` folder).
RECIPES = {
    "pretrain": "pretrain.py",
    "finetune": "finetune.py",
    "linear_probe": "finetune.py",
    "retrieval": "finetune.py",
    "robustness": "robustness.py",
    "cka": "cka.py",
    "distill": "distill.py",
    "zero_shot": "zero_shot.py",
}
#: Kinds whose recipe trains (checkpoints, resume, trackers).
TRAINING_KINDS = ("pretrain", "finetune", "linear_probe", "distill")
PID_FILE = "pid"


def default_recipes_dir() -> Path:
    """``recipes/`` of the checkout this package runs from."""
    return Path(__file__).resolve().parents[2] / "recipes"


@dataclass
class RunOptions:
    """What every cell's command shares: where the recipes are, the tracker, the Python to use."""

    recipes_dir: str | None = None
    report_to: str = "none"
    python: str = sys.executable

    def recipe(self, kind: str) -> Path:
        folder = Path(self.recipes_dir) if self.recipes_dir else default_recipes_dir()
        path = folder / RECIPES[kind]
        if not path.is_file():
            raise FileNotFoundError(
                f"recipe {path} not found: run the study from a clone of hf_vssl or give recipes_dir in the spec"
            )
        return path


def _flag_values(value: Any) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, dict):
        return [json.dumps(value, sort_keys=True)]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def recipe_arguments(cell: Cell, study_dir: str | Path, report_to: str = "none") -> list[str]:
    """The recipe flags of ``cell``: its settings, its parents' output folders, its own output folder."""
    flags: list[str] = []
    models = [str(output_dir_of(study_dir, p)) for p in cell.parents.get("model", [])]
    if models:
        flags += ["--model_name_or_path", models[0]]
    if cell.parents.get("compare_to"):
        flags += ["--compare_to", str(output_dir_of(study_dir, cell.parents["compare_to"][0]))]
    if cell.parents.get("teachers"):
        flags += ["--teachers", *(str(output_dir_of(study_dir, t)) for t in cell.parents["teachers"])]
    if cell.kind in ("finetune", "linear_probe", "retrieval"):
        flags += ["--mode", cell.kind]
    for key, value in cell.settings.items():
        flag = KIND_SETTINGS[cell.kind].get(key)
        if flag is not None:
            flags += [flag, *_flag_values(value)]
    flags += ["--output_dir", str(output_dir_of(study_dir, cell.cell_id))]
    if cell.kind in TRAINING_KINDS:
        flags += ["--resume_from_checkpoint", "latest", "--report_to", report_to]
    return flags + list(cell.settings.get("args") or [])


def cell_command(cell: Cell, study_dir: str | Path, options: RunOptions, num_processes: int = 1) -> list[str]:
    """The whole command line of a cell: ``accelerate launch`` (or ``python``) of its recipe."""
    recipe = str(options.recipe(cell.kind))
    arguments = recipe_arguments(cell, study_dir, options.report_to)
    if cell.launcher == "python":
        return [options.python, recipe, *arguments]
    launch = [options.python, "-m", "accelerate.commands.launch", "--num_machines", "1"]
    launch += [
        "--num_processes",
        str(max(1, num_processes)),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    if num_processes > 1:
        launch.append("--multi_gpu")
    return [*launch, recipe, *arguments]


@dataclass
class CellOutcome:
    """How a cell ended: ``finished`` (results recorded), ``failed`` (see ``log``) or ``blocked``."""

    cell_id: str
    status: str
    log: str
    message: str = ""


def _kill_group(pid: int, grace: float = 10.0) -> None:
    """Stop the process group ``pid`` leads (a cell's launcher and its workers): TERM, then KILL."""
    for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def _group_members(pgid: int) -> list[str]:
    """Command lines of the live processes of process group ``pgid`` (Linux ``/proc``)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
                members.append((stat.parent / "cmdline").read_bytes().decode(errors="replace"))
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
    return members


def stop_stale_cell(study_dir: str | Path, cell_id: str) -> bool:
    """Stop a cell's recipe left running by a runner that was killed (its ``pid`` file names it).

    Only a process group one of whose members' command line names this cell's output folder is
    stopped (the launcher may be gone while the recipe it started still runs). Returns whether
    one was.
    """
    pid_file = cell_dir(study_dir, cell_id) / PID_FILE
    if not pid_file.is_file():
        return False
    pgid = int(pid_file.read_text().strip() or 0)
    pid_file.unlink(missing_ok=True)
    output = str(output_dir_of(study_dir, cell_id))
    if pgid <= 0 or not any(output in cmdline for cmdline in _group_members(pgid)):
        return False
    _kill_group(pgid)
    return True


class _Processes:
    """The live cell subprocesses of this runner, stopped together on SIGTERM/SIGINT."""

    def __init__(self):
        self.live: dict[str, subprocess.Popen] = {}
        self.lock = threading.Lock()

    def stop_all(self) -> None:
        with self.lock:
            processes = list(self.live.values())
        for process in processes:
            _kill_group(process.pid, grace=5.0)


PROCESSES = _Processes()


def execute_cell(
    cell: Cell,
    study_dir: str | Path,
    options: RunOptions,
    devices: list[str] | None = None,
    threads: int | None = None,
) -> CellOutcome:
    """Run one cell's recipe (log in ``cells/<id>/log.txt``) and record its results if it succeeded."""
    log = log_path_of(study_dir, cell.cell_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    try:
        command = cell_command(cell, study_dir, options, num_processes=len(devices or []) or 1)
    except FileNotFoundError as error:
        return CellOutcome(cell.cell_id, "failed", str(log), str(error))
    with open(log, "a") as handle:
        handle.write(f"\n### {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n")
        handle.flush()
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        pid_file = cell_dir(study_dir, cell.cell_id) / PID_FILE
        pid_file.write_text(str(process.pid))
        with PROCESSES.lock:
            PROCESSES.live[cell.cell_id] = process
        try:
            code = process.wait()
        finally:
            with PROCESSES.lock:
                PROCESSES.live.pop(cell.cell_id, None)
            pid_file.unlink(missing_ok=True)
    if code != 0:
        return CellOutcome(cell.cell_id, "failed", str(log), f"exit status {code}")
    try:
        record_cell(cell, study_dir)
    except (OSError, ValueError, KeyError) as error:
        with open(log, "a") as handle:
            handle.write(f"### recording the results failed: {error}\n")
        return CellOutcome(cell.cell_id, "failed", str(log), f"results not readable: {error}")
    return CellOutcome(cell.cell_id, "finished", str(log))


class LocalExecutor:
    """Run cells as local subprocesses, ``jobs`` at a time, in dependency order.

    ``devices``: the GPU ids to share out (default: every visible GPU); a cell takes
    ``resources.gpus`` of them (none on a machine without GPUs). ``threads``: CPU threads per
    cell (``OMP_NUM_THREADS``; default: the CPU cores divided by ``jobs``).
    """

    name = "local"

    def __init__(self, jobs: int = 1, devices: list[str] | None = None, threads: int | None = None):
        if jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {jobs}")
        self.jobs = jobs
        self.devices = devices if devices is not None else _visible_gpus()
        self.threads = threads or max(1, (os.cpu_count() or 1) // jobs)

    def run(
        self, cells: list[Cell], study_dir: str | Path, options: RunOptions, on_done=None
    ) -> dict[str, CellOutcome]:
        """Run ``cells`` (dependency order; parents outside the list count as finished)."""
        outcomes: dict[str, CellOutcome] = {}
        ids = {c.cell_id for c in cells}
        waiting = list(cells)
        free = list(self.devices)
        running: dict[Future, tuple[Cell, list[str]]] = {}
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            while waiting or running:
                for cell in list(waiting):
                    parents = [p for p in cell.parent_ids if p in ids]
                    if any(p in outcomes and outcomes[p].status != "finished" for p in parents):
                        waiting.remove(cell)
                        failed = next(
                            p for p in parents if p in outcomes and outcomes[p].status != "finished"
                        )
                        outcomes[cell.cell_id] = CellOutcome(cell.cell_id, "blocked", "", f"needs {failed}")
                        if on_done:
                            on_done(outcomes[cell.cell_id])
                        continue
                    if len(running) >= self.jobs or not all(p in outcomes for p in parents):
                        continue
                    wanted = min(int(cell.resources.get("gpus", 0)), len(self.devices)) if self.devices else 0
                    if wanted > len(free):
                        continue
                    taken, free = free[:wanted], free[wanted:]
                    waiting.remove(cell)
                    devices = taken if self.devices else None
                    future = pool.submit(execute_cell, cell, study_dir, options, devices, self.threads)
                    running[future] = (cell, taken)
                if not running:
                    if waiting and all(p in outcomes for c in waiting for p in c.parent_ids if p in ids):
                        continue  # blocked cells are settled on the next pass
                    if waiting:
                        raise RuntimeError(
                            f"cell {waiting[0].cell_id} waits for a parent that is not scheduled"
                        )
                    continue
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    cell, taken = running.pop(future)
                    free += taken
                    outcomes[cell.cell_id] = future.result()
                    if on_done:
                        on_done(outcomes[cell.cell_id])
        return outcomes


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d for d in visible.split(",") if d.strip()]
    with contextlib.suppress(FileNotFoundError, subprocess.SubprocessError):
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
        return [str(i) for i, line in enumerate(listed.stdout.splitlines()) if line.startswith("GPU ")]
    return []


# -- Slurm through submitit ---------------------------------------------------------------------------


class CellJob:
    """One cell as a submitit job; requeued (and resumed from its checkpoint) on preemption or timeout."""

    def __init__(self, cell: Cell, study_dir: str, options: RunOptions):
        self.cell, self.study_dir, self.options = cell, study_dir, options

    def __call__(self) -> dict:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = [d for d in visible.split(",") if d] if visible else None
        threads = int(os.environ.get("SLURM_CPUS_PER_TASK", "0")) or None
        outcome = execute_cell(self.cell, self.study_dir, self.options, devices, threads)
        return outcome.__dict__

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's requeue hook: run the same cell again; its recipe resumes from ``latest``."""
        # submitit is an optional dependency (the `study` extra): imported where a job is requeued
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def sbatch_parameters(resources: dict[str, Any], jobs: int, name: str) -> dict[str, Any]:
    """submitit ``SlurmExecutor`` parameters (sbatch names) of one resource shape."""
    parameters: dict[str, Any] = {
        "job_name": name,
        "time": int(resources.get("time_min", 60)),
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": int(resources.get("cpus", 1)),
        "mem": f"{int(resources.get('mem_gb', 8))}GB",
        "array_parallelism": jobs,
        "signal_delay_s": 120,
    }
    if resources.get("gpus"):
        parameters["gpus_per_node"] = int(resources["gpus"])
    for key in ("partition", "account", "qos", "constraint"):
        if resources.get(key):
            parameters[key] = str(resources[key])
    return parameters


def sbatch_script(cells: list[Cell], folder: str | Path, jobs: int, name: str = "hf_vssl-study") -> str:
    """The sbatch text submitit writes for the array of ``cells`` (one resource shape), without sbatch."""
    # submitit is an optional dependency (the `study` extra)
    from submitit.slurm.slurm import _make_sbatch_string

    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    parameters = sbatch_parameters(cells[0].resources, jobs, name)
    return _make_sbatch_string(command=command, folder=folder, map_count=len(cells), **parameters)


def _shape(cell: Cell) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in cell.resources.items()))


class SlurmExecutor:
    """Submit the cells wave by wave as submitit array jobs and wait for each wave.

    ``cluster``: ``"slurm"`` (sbatch) or ``"local"`` (submitit's local executor, same job objects).
    ``jobs``: how many tasks of an array run at once (``--array=...%jobs``).
    """

    name = "slurm"

    def __init__(self, jobs: int = 64, cluster: str = "slurm", folder: str | Path | None = None):
        if cluster not in ("slurm", "local"):
            raise ValueError(f"cluster must be 'slurm' or 'local', got {cluster!r}")
        if importlib.util.find_spec("submitit") is None:
            raise ValueError(
                "--executor slurm needs submitit: pip install 'hf_vssl[study]' (or submitit>=1.5)"
            )
        self.jobs, self.cluster, self.folder = jobs, cluster, folder

    def _executor(self, folder: Path, resources: dict[str, Any], name: str):
        # submitit is an optional dependency (the `study` extra): imported when a study goes to Slurm
        import submitit

        if self.cluster == "local":
            executor = submitit.LocalExecutor(folder=folder)
            executor.update_parameters(timeout_min=int(resources.get("time_min", 60)), gpus_per_node=0)
            return executor
        executor = submitit.SlurmExecutor(folder=folder)
        executor.update_parameters(**sbatch_parameters(resources, self.jobs, name))
        return executor

    def run(
        self, cells: list[Cell], study_dir: str | Path, options: RunOptions, on_done=None
    ) -> dict[str, CellOutcome]:
        folder = Path(self.folder or Path(study_dir) / "slurm")
        outcomes: dict[str, CellOutcome] = {}
        for number, wave in enumerate(waves(cells)):
            ready = []
            for cell in wave:
                failed = [p for p in cell.parent_ids if p in outcomes and outcomes[p].status != "finished"]
                if failed:
                    outcomes[cell.cell_id] = CellOutcome(cell.cell_id, "blocked", "", f"needs {failed[0]}")
                    if on_done:
                        on_done(outcomes[cell.cell_id])
                else:
                    ready.append(cell)
            submitted = []
            for shape in dict.fromkeys(_shape(c) for c in ready):
                group = [c for c in ready if _shape(c) == shape]
                executor = self._executor(folder, group[0].resources, f"study-wave{number}")
                with executor.batch():
                    jobs = [executor.submit(CellJob(c, str(study_dir), options)) for c in group]
                submitted += list(zip(group, jobs, strict=True))
            for cell, job in submitted:
                try:
                    outcome = CellOutcome(**job.result())
                except Exception as error:  # noqa: BLE001 (a job that died is a failed cell, whatever killed it)
                    message = " ".join(str(error).split())[:300]
                    outcome = CellOutcome(
                        cell.cell_id, "failed", str(log_path_of(study_dir, cell.cell_id)), message
                    )
                outcomes[cell.cell_id] = outcome
                if on_done:
                    on_done(outcome)
        return outcomes
