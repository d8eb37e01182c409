"""Resumable checkpoints: Accelerate state folders named by step, plus the loop position."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "loop_state.json"


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"{CHECKPOINT_PREFIX}{step}"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (a folder without its loop state is ignored)."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return [p for _, p in sorted(found)]


def resolve_resume_path(output_dir: str | Path, resume_from_checkpoint: str | None) -> Path | None:
    """``"latest"`` -> the newest complete checkpoint of ``output_dir`` (None if there is none yet)."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(resume_from_checkpoint)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"--resume_from_checkpoint {path}: not a complete checkpoint (no {STATE_FILE})"
        )
    return path


def write_loop_state(path: Path, **state) -> None:
    """Written last into a checkpoint folder: its presence marks the checkpoint complete."""
    (path / STATE_FILE).write_text(json.dumps(state, indent=2))


def read_loop_state(path: Path) -> dict:
    return json.loads((path / STATE_FILE).read_text())


def prune_checkpoints(output_dir: str | Path, keep: int | None) -> None:
    """Delete all but the newest ``keep`` complete checkpoints."""
    if not keep or keep < 1:
        return
    for path in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
