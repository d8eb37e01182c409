"""Run a study: skip the finished cells, run the rest on an executor, list the failures.

A cell is finished when its ``result.json`` exists (:func:`hf_vssl.study.results.is_finished`),
so a rerun does no work for those; a failed cell has no ``result.json`` and runs again on the
next invocation; an interrupted cell (a killed runner) resumes from its own newest checkpoint,
because every training cell is launched with ``--resume_from_checkpoint latest`` into the same
output folder. A recipe left running by a runner that was killed with SIGKILL is stopped first.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .executors import PROCESSES, CellOutcome, LocalExecutor, RunOptions, SlurmExecutor, stop_stale_cell
from .results import is_finished, write_atomic, write_cell_file
from .spec import Cell

logger = logging.getLogger(__name__)


@dataclass
class StudyOutcome:
    """What a run of the study did: cells skipped (already finished), finished now, failed, blocked."""

    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failed: list[CellOutcome] = field(default_factory=list)
    blocked: list[CellOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked

    def summary(self) -> str:
        """Counts, then one line per failed cell with its log (and per blocked cell with its cause)."""
        lines = [
            f"study: {len(self.finished)} cells run, {len(self.skipped)} already finished, "
            f"{len(self.failed)} failed, {len(self.blocked)} blocked by a failed parent"
        ]
        lines += [f"  FAILED {o.cell_id}: {o.message}; log: {o.log}" for o in self.failed]
        lines += [f"  blocked {o.cell_id}: {o.message}" for o in self.blocked]
        if self.failed or self.blocked:
            lines.append("  (run the same command again to retry them; finished cells are kept)")
        return "\n".join(lines)


def write_plan(cells: list[Cell], study_dir: str | Path) -> None:
    """``plan.json`` (the cells of this invocation) and every cell's ``cells/<id>/cell.json``."""
    study_dir = Path(study_dir)
    for cell in cells:
        write_cell_file(study_dir, cell)
    plan = {"cells": [c.to_dict() for c in cells]}
    write_atomic(study_dir / "plan.json", (json.dumps(plan, indent=1) + "\n").encode())


def make_executor(name: str, jobs: int, threads: int | None = None, cluster: str | None = None):
    """``local`` or ``slurm`` (``cluster="local"``: submitit's local executor, for tests)."""
    if name == "local":
        return LocalExecutor(jobs=jobs, threads=threads)
    if name == "slurm":
        return SlurmExecutor(jobs=jobs, cluster=cluster or "slurm")
    raise ValueError(f"--executor must be local or slurm, got {name!r}")


def run_study(
    cells: list[Cell],
    study_dir: str | Path,
    executor=None,
    options: RunOptions | None = None,
    progress: bool = True,
) -> StudyOutcome:
    """Run every unfinished cell of ``cells`` (dependency order) on ``executor`` (default: local, 1 job)."""
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    executor = executor or LocalExecutor(jobs=1)
    options = options or RunOptions()
    write_plan(cells, study_dir)
    outcome = StudyOutcome()
    pending = []
    for cell in cells:
        if is_finished(study_dir, cell.cell_id):
            outcome.skipped.append(cell.cell_id)
        else:
            if stop_stale_cell(study_dir, cell.cell_id):
                logger.warning("stopped cell %s's recipe left running by an earlier runner", cell.cell_id)
            pending.append(cell)
    bar = tqdm(
        total=len(pending), desc=f"study {study_dir.name}", unit="cell", disable=not progress or not pending
    )

    def on_done(result: CellOutcome) -> None:
        {"finished": outcome.finished.append, "failed": outcome.failed.append}.get(
            result.status, outcome.blocked.append
        )(result.cell_id if result.status == "finished" else result)
        bar.set_postfix_str(f"{len(outcome.failed)} failed")
        bar.update(1)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def stop(signum, frame):  # stop the recipes this runner started, then end like the signal would
        PROCESSES.stop_all()
        raise SystemExit(128 + signum)

    main_thread = _in_main_thread()
    if main_thread:
        for sig in previous:
            signal.signal(sig, stop)
    try:
        if pending:
            executor.run(pending, study_dir, options, on_done=on_done)
    finally:
        bar.close()
        if main_thread:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return outcome


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
