"""The benchmark scripts run in their tiny CPU modes and print their RESULT lines; the GPU suite
refuses to start without CUDA and its --dry_run runs every step on a CPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RATIO = r"(\d+\.\d+)x"


def _run(*command: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=timeout, check=False
    )


def _results(output: str) -> dict[str, str]:
    return dict(re.findall(r"^RESULT (\S+): (.*)$", output, flags=re.MULTILINE))


@pytest.mark.slow
def test_pretrain_step_tiny_prints_every_ratio_and_prps_equivalent():
    done = _run(sys.executable, "benchmarks/pretrain_step.py", "--tiny", "--tasks", "tdl", "prp")
    assert done.returncode == 0, done.stderr[-3000:]
    results = _results(done.stdout)
    assert set(results) == {
        "pretext_overhead_tdl_fp32",
        "pretext_overhead_prp_fp32",
        "pretext_overhead_prp_fp32_vs_equivalent",
    }, done.stdout
    for text in results.values():
        assert float(re.match(RATIO, text).group(1)) > 0
    # TDL's plain step does its backbone work: two query calls (anchor, hard negative) + one key call.
    assert re.search(r"^tdl +fp32 +clips/step= +6 ", done.stdout, flags=re.MULTILINE), done.stdout


def test_pretrain_e2e_tiny_streams_real_shards_and_prints_its_ratio():
    done = _run(sys.executable, "benchmarks/pretrain_e2e.py", "--tiny")
    assert done.returncode == 0, done.stderr[-3000:]
    results = _results(done.stdout)
    assert list(results) == ["pretrain_e2e_cpu_workers0"], done.stdout
    match = re.match(
        RATIO + r" of the model step alone \((\d+\.\d) clips/s, (\S+) TFLOP/s\)",
        results["pretrain_e2e_cpu_workers0"],
    )
    assert match and float(match.group(1)) > 0 and float(match.group(2)) > 0 and float(match.group(3)) > 0
    assert "SKIP cuda_decode: no CUDA device" in done.stdout


def test_gpu_suite_stops_at_once_without_cuda(tmp_path):
    done = _run(
        "bash",
        "benchmarks/gpu_suite.sh",
        env={"PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", "OUT": str(tmp_path)},
        timeout=120,
    )
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr and "--dry_run" in done.stderr
    assert not list(tmp_path.iterdir())  # nothing written
    bad = _run("bash", "benchmarks/gpu_suite.sh", "--fast", env={"PYTHON": sys.executable}, timeout=60)
    assert bad.returncode == 2 and "unknown argument --fast" in bad.stderr


@pytest.mark.slow
def test_gpu_suite_dry_run_runs_every_step_and_writes_the_summary(tmp_path):
    done = _run(
        "bash", "benchmarks/gpu_suite.sh", "--dry_run",
        env={"PYTHON": sys.executable, "OUT": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""},
        timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = (tmp_path / "dry_run_summary.txt").read_text()
    results = _results(summary)
    for name in (
        "study_backbone_r21d_eager",
        "study_backbone_r21d-aligned_compiled",
        "pretext_overhead_tdl_fp32",
        "pretext_overhead_prp_fp32_vs_equivalent",
        "pretrain_e2e_cpu_workers0",
        "cka_model_map_r21d",
    ):
        assert name in results, summary
    assert "FAILED" not in summary and "TIMEOUT" not in summary, summary
    assert {p.name for p in tmp_path.iterdir()} >= {
        f"dry_run_{name}.txt"
        for name in ("gpu", "study_backbones", "pretrain_step", "pretrain_e2e", "cka_model_map")
    }
