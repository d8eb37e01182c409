"""The study runner: spec and cell ids, filters, the plan, executors (local and submitit), results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import datasets
import pytest
import yaml
from huggingface_hub import constants

from hf_vssl.study import (
    RESULT_COLUMNS,
    executors,
    expand,
    load_results,
    load_spec,
    parse_filters,
    push_results,
    run_study,
    select,
)
from hf_vssl.study.executors import SlurmExecutor, sbatch_script
from hf_vssl.study.report import render_report
from hf_vssl.study.results import log_path_of, output_dir_of, result_path_of
from hf_vssl.study.spec import StudySpecError, parse_spec, preset_path

sys.path.insert(0, str(Path(__file__).parent))
from _local_hub import LocalHub

REPO = Path(__file__).resolve().parents[1]
STUDY = [sys.executable, str(REPO / "recipes" / "study.py")]
TINY = {"backbone": "r21d", "width": 0.125, "num_frames": 8, "image_size": 32, "pretrain_dataset": "synthetic",
        "batch_size": 4, "num_workers": 0, "logging_steps": 1, "seed": 0}  # fmt: skip


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")


def _spec_file(tmp_path: Path, stages: dict, name: str = "t") -> Path:
    path = tmp_path / f"{name}.yaml"
    spec = {"name": name, "defaults": {"pretrain": TINY}, "stages": stages}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))  # the stages' order is the order cells start in
    return path


def _smoke_data() -> dict:
    return yaml.safe_load(preset_path("smoke").read_text())


# -- spec, ids, filters, plan (fast) ------------------------------------------------------------------


def test_cell_ids_are_stable_and_follow_every_setting_up_the_chain():
    first = {c.stage: c.cell_id for c in expand(load_spec("smoke")) if c.columns["task"] == "rotnet"}
    again = {c.stage: c.cell_id for c in expand(load_spec("smoke")) if c.columns["task"] == "rotnet"}
    assert first == again
    data = _smoke_data()
    data["defaults"]["finetune"]["max_steps"] = 5  # a finetune setting: new finetune and robustness cells
    changed = {c.stage: c.cell_id for c in expand(parse_spec(data)) if c.columns["task"] == "rotnet"}
    assert changed["pretrain"] == first["pretrain"]
    assert changed["finetune"] != first["finetune"] and changed["robustness"] != first["robustness"]
    data["defaults"]["pretrain"]["num_workers"] = 3  # how data is loaded: not part of a cell's identity
    assert {c.stage: c.cell_id for c in expand(parse_spec(data)) if c.columns["task"] == "rotnet"} == changed


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["stages"]["finetune"].update(axes={"learning_rat": [0.1]}),
            r"stages\.finetune\.axes\.learning_rat",
        ),
        (lambda d: d["stages"]["pretrain"].update(kind="pretrian"), r"stages\.pretrain\.kind"),
        (lambda d: d["stages"]["finetune"].update({"from": "nosuchstage"}), r"stages\.finetune.*nosuchstage"),
        (
            lambda d: d["stages"]["cka"].update(compare_to={"task": "vcop"}),
            r"stages\.cka\.compare_to.*selects 0",
        ),
        (lambda d: d["defaults"]["pretrain"].update(num_frames="eight"), r"defaults\.pretrain\.num_frames"),
        (lambda d: d.update(stagez={}), r"unknown key 'stagez'"),
    ],
)
def test_bad_spec_is_one_line_naming_the_file_and_key(edit, message):
    data = _smoke_data()
    edit(data)
    with pytest.raises(StudySpecError, match=message) as error:
        expand(parse_spec(data, "my_study.yaml"))
    assert str(error.value).startswith("my_study.yaml: ") and "\n" not in str(error.value)


def test_stages_differing_only_in_a_non_column_setting_need_a_variant():
    """Two RotNet pretrainings that differ in pretext_config alone would be averaged as seeds."""
    data = _smoke_data()
    data["stages"]["rotnet_2"] = {
        "kind": "pretrain",
        "settings": {"task": "rotnet", "pretext_config": {"num_rotations": 2}},
    }
    with pytest.raises(
        StudySpecError, match=r"stages\.pretrain and stages\.rotnet_2: .* give the stage a `variant`"
    ):
        expand(parse_spec(data, "my_study.yaml"))
    data["stages"]["rotnet_2"]["variant"] = "{pretext_config[num_rotations]} rotations"
    data["stages"]["finetune"]["from"] = ["pretrain", "rotnet_2"]
    cells = expand(parse_spec(data, "my_study.yaml"))
    variants = {c.kind: c.columns["variant"] for c in cells if c.columns["variant"]}
    assert set(variants) == {"pretrain", "finetune", "robustness"}  # children inherit it
    assert set(variants.values()) == {"2 rotations"}
    data["stages"]["rotnet_2"]["variant"] = "{pretext_config[rates]}"
    with pytest.raises(StudySpecError, match=r"stages\.rotnet_2\.variant: cannot fill"):
        expand(parse_spec(data, "my_study.yaml"))


def test_label_sets_are_a_column_so_tables_never_average_them():
    from hf_vssl.study.tables import TABLES_BY_NAME, render_table

    data = _smoke_data()
    data["stages"]["finetune"]["axes"] = {"label_set": ["motion", "appearance"]}
    cells = [c for c in expand(parse_spec(data)) if c.kind == "finetune"]
    assert sorted(c.columns["label_set"] for c in cells) == ["appearance", "appearance", "motion", "motion"]
    rows = [
        {**dict.fromkeys(RESULT_COLUMNS), **c.columns, "kind": "finetune", "cell_id": c.cell_id,
         "metric": "top1", "value": 0.2 if c.columns["label_set"] == "motion" else 0.6}
        for c in cells
    ]  # fmt: skip
    import pandas as pd

    markdown = render_table(TABLES_BY_NAME["table3_equal_constraints"], pd.DataFrame(rows)).markdown
    assert "label_set appearance" in markdown and "label_set motion" in markdown
    assert "40.0" not in markdown  # the mean of the two label sets appears nowhere


def test_training_cells_record_each_objectives_first_and_end_value():
    from hf_vssl.study.results import END_LOGS, objective_metrics

    logs = [
        {"step": 20 * (i + 1), "loss": 10.0 - i, "accuracy": 0.1 * i, "batch_accuracy": 0.125, "lr": 0.1,
         "clips_per_second": 30.0 + i}
        for i in range(8)
    ]  # fmt: skip
    metrics = {name: value for name, value, _ in objective_metrics(logs)}
    assert END_LOGS == 5
    assert metrics["log_first_loss"] == 10.0 and metrics["log_end_loss"] == pytest.approx(5.0)  # 7 .. 3
    assert metrics["log_end_accuracy"] == pytest.approx(0.5)  # mean of 0.3 .. 0.7
    assert metrics["log_first_batch_accuracy"] == metrics["log_end_batch_accuracy"] == 0.125
    assert not any("lr" in name or "clips" in name for name in metrics)  # schedule and speed, not objectives


def test_only_brings_what_cells_need_and_exclude_drops_what_needs_them():
    cells = expand(load_spec("smoke"))
    kept = select(cells, only=parse_filters(["task=rspnet"], "--only"))
    # RSPNet's pretraining, finetune and its CKA map, plus RotNet's pretraining the map compares to
    assert sorted((c.kind, c.columns["task"]) for c in kept) == [
        ("cka", "rspnet"), ("finetune", "rspnet"), ("pretrain", "rotnet"), ("pretrain", "rspnet")
    ]  # fmt: skip
    left = select(cells, exclude=parse_filters(["task=rotnet"], "--exclude"))
    assert sorted((c.kind, c.columns["task"]) for c in left) == [
        ("finetune", "rspnet"),
        ("pretrain", "rspnet"),
    ]
    assert [c.kind for c in select(cells, only={"noise": ["gaussian"]})] == [
        "pretrain",
        "finetune",
        "robustness",
    ]
    with pytest.raises(ValueError, match=r"--only colour=.*no cell has the axis"):
        select(cells, only=parse_filters(["colour=red"], "--only"))


def test_paper_dry_run_lists_the_full_grid_with_its_cost(capsys):
    sys.path.insert(0, str(REPO / "recipes"))
    import study  # recipes/study.py

    assert study.main(["--spec", "paper", "--dry_run"]) == 0
    text = capsys.readouterr().out
    cells = expand(load_spec("paper"))
    assert f"{len(cells)} cells in" in text and len(cells) > 300
    pretrained = {(c.columns["task"], c.columns["backbone"]) for c in cells if c.kind == "pretrain"}
    tasks = ("rotnet", "cvrl", "vcop", "tdl", "prp", "rspnet")
    backbones = ("shufflenet", "mobilenet", "squeezenet", "c3d", "r3d", "r21d", "swin-t")
    assert {(t, b) for t in tasks for b in backbones} <= pretrained
    subsets = {c.columns["subset_size"] for c in cells if c.kind == "pretrain"}
    assert {10000, 30000, 50000, 100000} <= subsets
    assert {c.kind for c in cells} == {
        "pretrain",
        "finetune",
        "linear_probe",
        "robustness",
        "cka",
        "distill",
        "zero_shot",
    }
    total = float(text.split("estimated total: ")[1].split(" GPU-hours")[0])
    assert total > 100
    # backbones without a throughput measurement are priced by GFLOPs, apart from the measured total
    scaled = text.split("FLOP-scaled, apart from the total: ")[1].splitlines()[0]
    assert float(scaled.split(" GPU-hours")[0]) > 0 and "shufflenet" in scaled and "r21d," not in scaled
    assert "not in the total: 2 cells (no measurement for microsoft/xclip-base-patch32)" in text


def test_flop_scaled_cost_follows_the_gflops_ratio():
    from hf_vssl.study.plan import estimate_cost, throughput_table

    table = throughput_table()
    cells = {
        c.columns["backbone"]: c
        for c in expand(load_spec("paper"))
        if c.stage == "pretrain" and c.columns["task"] == "rotnet"
    }
    measured, scaled = estimate_cost(cells["r21d"], {}, table), estimate_cost(cells["c3d"], {}, table)
    assert not measured.flop_scaled and scaled.flop_scaled and scaled.note == "FLOP-scaled"
    gflops = table["backbone_gflops"]
    assert scaled.gpu_hours / measured.gpu_hours == pytest.approx(gflops["c3d"] / gflops["r21d"])


def test_miniature_preset_is_the_miniature_studys_grid():
    cells = expand(load_spec("miniature"))
    kinds = {kind: [c for c in cells if c.kind == kind] for kind in {c.kind for c in cells}}
    # 6 tasks + the PRP variant; 9 initialisations (those, the student, random) x 2 label sets x 3 seeds;
    # the 8 motion-label seed-0 models but the student x 4 noises; RSPNet within and against RotNet
    assert {k: len(v) for k, v in kinds.items()} == {
        "pretrain": 7, "distill": 1, "finetune": 54, "robustness": 32, "cka": 2
    }  # fmt: skip
    flags = {
        c.columns["task"]: executors.recipe_arguments(c, "/s")
        for c in kinds["pretrain"]
        if "rates" not in str(c.settings)
    }
    for task, arguments in flags.items():
        assert arguments[arguments.index("--max_steps") + 1] == "500"
        assert arguments[arguments.index("--optimizer") + 1] == "adamw"
        assert ("--pretext_config" in arguments) == (task in ("tdl", "rspnet"))
    assert {r.columns["severity"] for r in kinds["robustness"]} == {None}
    assert {tuple(r.settings["severities"]) for r in kinds["robustness"]} == {(1, 3, 5)}


def test_sbatch_script_carries_the_cells_resources_as_an_array():
    data = _smoke_data()
    data["resources"] = {
        "pretrain": {"gpus": 2, "cpus": 10, "mem_gb": 64, "time_min": 120, "partition": "gpu"}
    }
    cells = [c for c in expand(parse_spec(data)) if c.kind == "pretrain"]
    text = sbatch_script(cells, "/shared/study/slurm", jobs=1)
    for line in ("--gpus-per-node=2", "--cpus-per-task=10", "--mem=64GB", "--time=120", "--partition=gpu"):
        assert f"#SBATCH {line}" in text
    assert "#SBATCH --array=0-1%1" in text  # two cells, one at a time
    assert "submitit.core._submit /shared/study/slurm" in text


def test_local_executor_shares_out_devices_and_keeps_dependency_order(monkeypatch):
    cells = expand(load_spec("smoke"))
    events, lock, holding = [], threading.Lock(), set()
    failing = next(c.cell_id for c in cells if c.kind == "pretrain" and c.columns["task"] == "rotnet")

    def fake_execute(cell, study_dir, options, devices, threads):
        with lock:
            assert not holding & set(devices), f"{cell.cell_id} got a device another cell holds"
            holding.update(devices)
            events.append(("start", cell.cell_id, tuple(devices), threads))
        time.sleep(0.2)
        with lock:
            holding.difference_update(devices)
            events.append(("end", cell.cell_id))
        status = "failed" if cell.cell_id == failing else "finished"
        return executors.CellOutcome(cell.cell_id, status, "log.txt")

    monkeypatch.setattr(executors, "execute_cell", fake_execute)
    outcomes = executors.LocalExecutor(jobs=2, devices=["0", "1"], threads=3).run(
        cells, "unused", executors.RunOptions()
    )
    started = {e[1]: i for i, e in enumerate(events) if e[0] == "start"}
    ended = {e[1]: i for i, e in enumerate(events) if e[0] == "end"}
    assert all(len(e[2]) == 1 and e[3] == 3 for e in events if e[0] == "start")
    for cell in cells:
        if cell.cell_id in started:
            assert all(ended[p] < started[cell.cell_id] for p in cell.parent_ids)
    blocked = {c.cell_id for c in cells if outcomes[c.cell_id].status == "blocked"}
    # RotNet's pretraining failed: its finetune, that finetune's robustness and the CKA map against it wait
    assert blocked == {c.cell_id for c in cells if c.cell_id != failing and c.columns["task"] == "rotnet"} | {
        c.cell_id for c in cells if c.kind == "cka"
    }
    assert not blocked & set(started)
    command = executors.cell_command(cells[0], "/s", executors.RunOptions(), num_processes=2)
    assert command[1:4] == ["-m", "accelerate.commands.launch", "--num_machines"]
    assert "--multi_gpu" in command and command[command.index("--num_processes") + 1] == "2"


# -- running cells (slow: each cell is a recipe subprocess) ---------------------------------------------


@pytest.mark.slow
def test_smoke_preset_end_to_end_then_a_rerun_does_no_work(tmp_path):
    study_dir = tmp_path / "smoke"
    run = subprocess.run([*STUDY, "--spec", "smoke", "--jobs", "2", "--study_dir", str(study_dir)],
                         env=_env(), capture_output=True, text=True, timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "6 cells run, 0 already finished, 0 failed" in run.stdout
    results = load_results(study_dir)
    assert results.features == RESULT_COLUMNS
    rows = results.to_list()
    by_kind = {}
    for row in rows:
        by_kind.setdefault(row["kind"], set()).add(row["metric"])
    objectives = {m for m in by_kind["pretrain"] if m.startswith("log_")}
    assert {"log_first_loss", "log_end_loss", "log_first_speed_accuracy", "log_end_accuracy"} <= objectives
    assert {"log_first_lr", "log_end_clips_per_second"}.isdisjoint(objectives)  # schedule and speed
    assert by_kind == {
        "pretrain": {"final_loss", "steps", "params", "gflops", *objectives},
        "finetune": {"top1", "top5"},
        "robustness": {"top1", "relative_robustness"},
        "cka": {"cka_diagonal_mean", "cka_offdiagonal_mean", "cka_map"},
    }
    cka_map = json.loads(next(r["data_json"] for r in rows if r["metric"] == "cka_map"))
    assert len(cka_map["matrix"]) == len(cka_map["layers_a"]) and cka_map["layers_a"]
    assert {r["label_set"] for r in rows if r["kind"] in ("finetune", "robustness")} == {"motion"}
    robust = {(r["noise"], r["severity"], r["metric"]) for r in rows if r["kind"] == "robustness"}
    assert robust == {
        ("gaussian", 0, "top1"),
        ("gaussian", 1, "top1"),
        ("gaussian", None, "relative_robustness"),
    }
    finetune = next(r for r in rows if r["kind"] == "finetune" and r["task"] == "rotnet")
    assert (
        finetune["mode"] == "finetune"
        and finetune["downstream"] == "synthetic"
        and finetune["width"] == 0.125
    )
    assert finetune["parent_ids"].startswith("pretrain-") and 0 <= finetune["value"] <= 1
    assert json.loads(finetune["settings_json"])["settings"]["max_steps"] == 4
    assert all(r["value"] > 0 for r in rows if r["metric"] in ("params", "gflops"))
    logs = {p: p.stat().st_mtime for p in (study_dir / "cells").glob("*/log.txt")}
    assert len(logs) == 6
    again = subprocess.run([*STUDY, "--spec", "smoke", "--study_dir", str(study_dir),
                            "--report_dir", str(tmp_path / "docs")],
                           env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0 and "0 cells run, 6 already finished" in again.stdout
    assert {p: p.stat().st_mtime for p in logs} == logs
    # --report_dir: the report beside its results as one file, and re-rendered from that file alone
    shipped = datasets.load_dataset("parquet", data_files=str(tmp_path / "docs" / "results.parquet"))["train"]
    assert shipped.num_rows == len(rows) and set(shipped["cell_id"]) == {r["cell_id"] for r in rows}
    umask = os.umask(0)
    os.umask(umask)  # written files follow the umask (a study folder or a report is often shared)
    for written in (tmp_path / "docs" / "results.parquet", next((study_dir / "results").glob("*.parquet"))):
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask, written
    index = (tmp_path / "docs" / "README.md").read_text()
    assert index.startswith("# Study report: smoke") and "Rendered from `results.parquet`" in index
    assert "| rspnet | 0." in (tmp_path / "docs" / "cka_task.md").read_text()

    # --refresh_results rebuilds rows from the outputs (an upgrade's new metrics), running nothing
    part = next((study_dir / "results").glob("pretrain-*.parquet"))
    stale = datasets.Dataset.from_parquet(str(part)).filter(lambda r: not r["metric"].startswith("log_"))
    stale.to_parquet(str(part))
    finished_at = json.loads(result_path_of(study_dir, part.stem).read_text())["finished_at"]
    refresh = subprocess.run([*STUDY, "--spec", "smoke", "--study_dir", str(study_dir), "--refresh_results",
                              "--no_report"], env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert refresh.returncode == 0 and "rebuilt the results rows of 6 finished cells" in refresh.stdout
    assert {p: p.stat().st_mtime for p in logs} == logs
    fresh = datasets.Dataset.from_parquet(str(part))
    assert any(m.startswith("log_end_") for m in fresh["metric"])
    assert set(fresh["finished_at"]) == {finished_at}

    # The CKA map travels in the rows: the shipped results draw it with the cells' outputs gone
    for path in (study_dir / "cells").glob("cka-*/output/cka.json"):
        path.unlink()
    render_report(tmp_path / "docs" / "results.parquet", tmp_path / "again")
    assert "| yes |" in (tmp_path / "again" / "cka_task.md").read_text()


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.mark.slow
def test_killed_runner_resumes_the_interrupted_cell_and_failed_cells_are_retried(tmp_path):
    spec = _spec_file(tmp_path, {
        "quick": {"kind": "pretrain", "settings": {"task": "rotnet", "max_steps": 2}},
        "long": {"kind": "pretrain", "variant": "long", "settings": {"task": "rotnet", "max_steps": 30, "save_steps": 3}},
        "broken": {"kind": "finetune", "from": "quick",  # an impossible setting: the recipe refuses it
                   "settings": {"downstream": "synthetic", "max_steps": 2, "num_workers": 0, "args": ["--eval_crops", "2"]}},
    })  # fmt: skip
    cells = {c.stage: c for c in expand(load_spec(spec))}
    study_dir = tmp_path / "study"
    command = [*STUDY, "--spec", str(spec), "--study_dir", str(study_dir), "--jobs", "1", "--no_report"]
    runner = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    long_out = output_dir_of(study_dir, cells["long"].cell_id)
    _wait_for(
        lambda: any((long_out / "checkpoints").glob("checkpoint-*/")), 300, "a checkpoint of the long cell"
    )
    runner.send_signal(signal.SIGKILL)  # the recipe it started keeps running, orphaned
    runner.wait()
    assert result_path_of(study_dir, cells["quick"].cell_id).is_file()
    assert not result_path_of(study_dir, cells["long"].cell_id).is_file()
    quick_log = log_path_of(study_dir, cells["quick"].cell_id).read_text()

    rerun = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 1, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "1 already finished" in rerun.stdout
    assert log_path_of(study_dir, cells["quick"].cell_id).read_text() == quick_log  # not run again
    long_log = log_path_of(study_dir, cells["long"].cell_id).read_text()
    resumed_at = int(long_log.split("resuming from ")[1].split(" at step ")[1].split()[0])
    assert resumed_at > 0
    assert result_path_of(study_dir, cells["long"].cell_id).is_file()
    broken_log = log_path_of(study_dir, cells["broken"].cell_id)
    assert f"FAILED {cells['broken'].cell_id}" in rerun.stdout and str(broken_log) in rerun.stdout
    assert "--eval_crops must be 1 or 3" in broken_log.read_text()

    retry = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert retry.returncode == 1 and "2 already finished" in retry.stdout
    assert broken_log.read_text().count("\n### ") == 2  # retried, not skipped


@pytest.mark.slow
def test_slurm_executor_through_submitits_local_executor(tmp_path, monkeypatch):
    spec = _spec_file(
        tmp_path, {"pretrain": {"kind": "pretrain", "settings": {"task": "rotnet", "max_steps": 2}}}
    )
    cells = expand(load_spec(spec))
    study_dir = tmp_path / "study"
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the submitit job process imports this checkout
    outcome = run_study(cells, study_dir, SlurmExecutor(jobs=2, cluster="local"), progress=False)
    assert outcome.ok and outcome.finished == [cells[0].cell_id], outcome.summary()
    rows = load_results(study_dir).to_list()
    assert {"final_loss", "steps", "params", "gflops", "log_end_loss"} <= {r["metric"] for r in rows}
    assert list((study_dir / "slurm").glob("*_result.pkl"))  # it ran as a submitit job, not in this process


def test_push_results_uploads_the_parts_with_a_card(tmp_path, monkeypatch):
    columns = RESULT_COLUMNS
    row = dict.fromkeys(columns) | {"cell_id": "pretrain-x", "kind": "pretrain", "parent_ids": "",
                                             "metric": "steps", "value": 4.0, "settings_json": "{}",
                                             "output_dir": "o", "finished_at": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    (tmp_path / "results").mkdir()
    datasets.Dataset.from_list([row], features=columns).to_parquet(
        str(tmp_path / "results" / "pretrain-x.parquet")
    )
    assert load_results(tmp_path)[0]["value"] == 4.0
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with LocalHub(tokens={"hf_local_alice": "alice"}) as hub:
        url = push_results(tmp_path, "alice/study-results", token="hf_local_alice", endpoint=hub.url)
        files = hub.files("alice/study-results", repo_type="dataset")
    assert url.endswith("datasets/alice/study-results")
    assert {"README.md", "data/pretrain-x.parquet"} <= set(files)
    assert b"load_dataset" in files["README.md"]


@pytest.mark.slow
def test_distill_probe_retrieval_and_zero_shot_cells_run_and_report_their_metrics(tmp_path):
    from test_zero_shot import save_tiny  # a tiny random CLIP saved with its tokenizer and processor

    clip = save_tiny("clip", tmp_path / "clip")
    downstream = {"downstream": "synthetic", "eval_clips": 1}
    spec = tmp_path / "kinds.yaml"
    spec.write_text(yaml.safe_dump({
        "defaults": {"pretrain": {**TINY, "max_steps": 2},
                     "distill": {**{k: v for k, v in TINY.items() if k != "seed"}, "max_steps": 2},
                     "linear_probe": {**downstream, "max_steps": 2, "batch_size": 4, "num_workers": 0}},
        "stages": {
            "pretrain": {"kind": "pretrain", "axes": {"task": ["rotnet", "vcop"]}},
            "distill": {"kind": "distill", "teachers": {"from": "pretrain", "select": [{"task": "rotnet"}, {"task": "vcop"}]}},
            "probe": {"kind": "linear_probe", "from": "distill"},
            "retrieval": {"kind": "retrieval", "from": "pretrain", "where": {"task": "vcop"}, "settings": downstream},
            "zero_shot": {"kind": "zero_shot", "settings": {**downstream, "model": str(clip)}},
        },
    }, sort_keys=False))  # fmt: skip
    study_dir = tmp_path / "study"
    run = subprocess.run([*STUDY, "--spec", str(spec), "--study_dir", str(study_dir), "--jobs", "2"],
                         env=_env(), capture_output=True, text=True, timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    metrics = {}
    for row in load_results(study_dir).to_list():
        metrics.setdefault(row["kind"], {})[row["metric"]] = row
    assert {"final_loss", "steps", "params", "gflops", "log_first_loss"} <= set(metrics["distill"])
    assert (
        metrics["distill"]["steps"]["value"] == 2 and metrics["distill"]["steps"]["teachers"] == "rotnet,vcop"
    )
    student = metrics["linear_probe"]["top1"]
    assert (
        student["teachers"] == "rotnet,vcop"
        and student["mode"] == "linear_probe"
        and 0 <= student["value"] <= 1
    )
    assert set(metrics["retrieval"]) == {"R@1", "R@5", "R@10", "R@20"}
    assert metrics["retrieval"]["R@1"]["value"] <= metrics["retrieval"]["R@20"]["value"]
    assert set(metrics["zero_shot"]) == {"top1", "top5"} and metrics["zero_shot"]["top1"]["backbone"] == str(
        clip
    )
