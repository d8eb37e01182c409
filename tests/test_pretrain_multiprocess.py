"""Every pretext task under two real gloo processes (`accelerate launch --multi_gpu --num_processes 2`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_processes_shard_data_and_gather_queue_keys(tmp_path, tiny_corpus):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    env = dict(os.environ, ACCELERATE_USE_CPU="true", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            accelerate,
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            "29517",
            str(REPO / "tests" / "_dist_pretrain.py"),
            str(tiny_corpus),
            str(tmp_path),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert {r["rank"] for r in ranks} == {0, 1}
    for task in ranks[0]["tasks"]:
        read0, read1 = ranks[0]["tasks"][task]["read"], ranks[1]["tasks"][task]["read"]
        # 2 steps x batch 4 per rank (+ the batch Accelerate's loader prefetches to detect the epoch end)
        assert len(read0) == len(read1) >= 8 and len(read0) % 4 == 0, (task, read0, read1)
        assert len(set(read0)) == len(read0), f"{task}: a rank read a video twice in one epoch"
        assert not set(read0) & set(read1), (
            f"{task}: both ranks read the same videos {set(read0) & set(read1)}"
        )
        pointers = ranks[0]["tasks"][task]["pointers"]
        # Keys of BOTH ranks enter the queue: 2 steps x 4 clips x 2 ranks = 16 per queue.
        for name, pointer in pointers.items():
            assert pointer == 16, (task, name, pointer)
        if task in ("rspnet", "tdl"):
            assert pointers, f"{task} should have a feature queue"
