"""Beyond one process: the Accelerate configs, the Slurm launch script and the shared-folder check."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
from accelerate.utils.launch import prepare_multi_gpu_env
from safetensors.torch import load_file

from hf_vssl.models import VSSLConfig
from hf_vssl.pretext.modeling import VSSLForPretraining

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "recipes" / "accelerate_configs"
SBATCH = REPO / "recipes" / "slurm" / "pretrain.sbatch"

# (distributed type, processes, machines, mixed precision) each config must say
EXPECTED = {
    "cpu.yaml": ("NO", 1, 1, "no"),
    "1gpu.yaml": ("NO", 1, 1, "bf16"),
    "8gpu.yaml": ("MULTI_GPU", 8, 1, "bf16"),
    "2nodes_8gpu.yaml": ("MULTI_GPU", 16, 2, "bf16"),
    "fsdp_large_adapters.yaml": ("FSDP", 8, 1, "bf16"),
}
TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
# A tiny version of each large adapter, and the blocks FSDP must shard separately in it.
ADAPTERS = {
    "swin-t": (
        {"embed_dim": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]},
        {"SwinTransformerBlock": 4, "PatchMerging": 3},
    ),
    "mvit": ({"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}, {"MultiscaleBlock": 4}),
    "timesformer": (TINY_VIT, {"TimesformerLayer": 2}),
    "vivit": (TINY_VIT, {"VivitLayer": 2, "VivitEmbeddings": 1}),
}


def _launch_args(*argv: str):
    """``accelerate launch <argv>`` as Accelerate's own launcher reads it (config file merged in)."""
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(list(argv)))
    return args


# -- Accelerate configs -----------------------------------------------------------------------


def test_every_config_is_listed_and_documented():
    assert {p.name for p in CONFIGS.glob("*.yaml")} == set(EXPECTED)
    readme = (CONFIGS / "README.md").read_text()
    assert all(name in readme for name in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_with_accelerate(name):
    config = load_config_from_file(str(CONFIGS / name))
    kind, processes, machines, precision = EXPECTED[name]
    assert config.distributed_type.value == kind
    assert (config.num_processes, config.num_machines, config.mixed_precision) == (
        processes,
        machines,
        precision,
    )
    assert config.use_cpu is (name == "cpu.yaml")
    if machines > 1 or kind != "NO":
        # what `accelerate launch --config_file` hands torchrun: processes per machine and machines
        args = _launch_args("--config_file", str(CONFIGS / name), "--main_process_port", "0", "train.py")
        prepare_multi_gpu_env(args)
        assert (int(args.nproc_per_node), int(getattr(args, "nnodes", 1))) == (
            processes // machines,
            machines,
        )


@pytest.mark.parametrize("backbone", sorted(ADAPTERS))
def test_fsdp_config_shards_each_adapter_by_its_blocks(backbone, monkeypatch):
    args = _launch_args(
        "--config_file", str(CONFIGS / "fsdp_large_adapters.yaml"), "--main_process_port", "0", "x.py"
    )
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    for key, value in env.items():  # the launched processes build their FSDP plugin from these
        if key.startswith("FSDP_"):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    kwargs, blocks = ADAPTERS[backbone]
    config = VSSLConfig(
        backbone=backbone, backbone_kwargs=kwargs, num_frames=8, image_size=32, pretext_task="rotnet"
    )
    model = VSSLForPretraining(config)
    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    assert Counter(type(module).__name__ for module in model.modules() if policy(module)) == blocks
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"


# -- Slurm ------------------------------------------------------------------------------------

FAKE_SRUN = """#!/bin/bash
# srun stand-in: records its options, then runs the command once per node with that node's id.
options=()
while [[ $1 == -* ]]; do options+=("$1"); shift; done
printf '%s\\n' "${options[*]}" > "$FAKE_LOG/srun"
if [ -n "${FAKE_PREEMPT:-}" ]; then kill -USR1 "$PPID"; sleep 1; fi  # Slurm's warning signal
for ((node = 0; node < SLURM_NNODES; node++)); do SLURM_NODEID=$node SLURM_PROCID=$node "$@" || exit $?; done
"""
FAKE_SCONTROL = """#!/bin/bash
case "$1 $2" in
  "show hostnames") printf 'gpu-a017\\ngpu-a018\\n' ;;
  "requeue "*) echo "requeue $2" >> "$FAKE_LOG/scontrol" ;;
  *) exit 2 ;;
esac
"""
FAKE_ACCELERATE = """#!{python}
import json, os, sys
with open(os.path.join(os.environ["FAKE_LOG"], "launches"), "a") as handle:
    handle.write(json.dumps({{"node": os.environ["SLURM_NODEID"], "argv": sys.argv[1:]}}) + "\\n")
"""


def _run_sbatch(
    tmp_path: Path, *recipe_flags: str, preempt: bool = False
) -> tuple[subprocess.CompletedProcess, Path]:
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log.mkdir()
    for name, text in (
        ("srun", FAKE_SRUN),
        ("scontrol", FAKE_SCONTROL),
        ("accelerate", FAKE_ACCELERATE.format(python=sys.executable)),
    ):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "FAKE_LOG": str(log),
        "SLURM_SUBMIT_DIR": str(REPO),
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "hf_vssl-pretrain",
        "SLURM_NNODES": "2",
        "SLURM_JOB_NODELIST": "gpu-a[017-018]",
        "OUTPUT_DIR": str(tmp_path / "shared" / "run"),
        **({"FAKE_PREEMPT": "1"} if preempt else {}),
    }
    result = subprocess.run(
        ["bash", str(SBATCH), *recipe_flags], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result, log


def test_sbatch_script_is_valid_bash_and_requeues():
    assert subprocess.run(["bash", "-n", str(SBATCH)], check=False).returncode == 0
    shellcheck = shutil.which("shellcheck")
    if shellcheck:  # optional tool: run where installed
        result = subprocess.run([shellcheck, str(SBATCH)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout
    directives = [line.split()[1] for line in SBATCH.read_text().splitlines() if line.startswith("#SBATCH")]
    assert (
        "--requeue" in directives
        and "--signal=B:USR1@90" in directives
        and "--ntasks-per-node=1" in directives
    )


def test_sbatch_launches_one_accelerate_per_node_with_its_rank(tmp_path):
    flags = (
        "--dataset",
        "org/k400-shards",
        "--subset_size",
        "50000",
        "--pretext_config",
        '{"queue_size": 64}',
    )
    _, log = _run_sbatch(tmp_path, *flags)
    assert "--ntasks=2" in (log / "srun").read_text().split()
    launches = [json.loads(line) for line in (log / "launches").read_text().splitlines()]
    assert [launch["node"] for launch in launches] == ["0", "1"]
    for node, launch in enumerate(launches):
        assert launch["argv"][0] == "launch"
        args = _launch_args(*launch["argv"][1:])
        assert args.config_file == "recipes/accelerate_configs/2nodes_8gpu.yaml"
        assert (args.num_machines, args.num_processes, args.machine_rank) == (2, 16, node)
        assert (args.main_process_ip, args.main_process_port) == ("gpu-a017", 20000 + 4242)
        assert args.training_script == "recipes/pretrain.py"
        assert args.training_script_args == [
            "--output_dir", str(tmp_path / "shared" / "run"), "--resume_from_checkpoint", "latest", *flags,
        ]  # fmt: skip
        prepare_multi_gpu_env(args)  # what torchrun gets on this node
        assert (args.node_rank, args.nproc_per_node, args.rdzv_endpoint) == (node, "8", "gpu-a017:24242")


def test_sbatch_requeues_on_the_warning_signal(tmp_path):
    result, log = _run_sbatch(tmp_path, "--max_steps", "10", preempt=True)
    assert (log / "scontrol").read_text().split() == ["requeue", "4242"]
    assert "requeueing job 4242" in result.stdout
    assert len((log / "launches").read_text().splitlines()) == 2  # the launch itself still ran to its end


# -- the shared output folder -----------------------------------------------------------------


def _free_port() -> int:
    """A port nobody listens on now (fixed numbers collide with other test runs on a shared host)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(tmp_path: Path, corpus: Path, folders: tuple[Path, Path], machines: int = 2) -> list[dict]:
    """One run of two gloo processes on this host, as two "machines" of one process each (machine
    ``r`` writes into ``folders[r]``) or as one machine (``folders[0]``); returns each rank's report."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    env = dict(os.environ, ACCELERATE_USE_CPU="true", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    reports = tmp_path / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    port = _free_port()

    def command(rank: int) -> list[str]:
        return [
            accelerate, "launch", "--multi_gpu", "--num_machines", str(machines), "--num_processes", "2",
            "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
            "--mixed_precision", "no", "--dynamo_backend", "no",
            str(REPO / "tests" / "_dist_shared_dir.py"), str(corpus), str(folders[rank]), str(reports),
        ]  # fmt: skip

    launched = [
        subprocess.Popen(
            command(rank), env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for rank in range(machines)
    ]
    outputs = [process.communicate(timeout=600)[0] for process in launched]
    for process, output in zip(launched, outputs):
        assert process.returncode == 0, output[-4000:]
    return [json.loads((reports / f"machine{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.slow
def test_two_machines_train_like_one_and_refuse_folders_they_do_not_share(tmp_path, tiny_corpus):
    shared = tmp_path / "shared" / "run"
    together = _launch(tmp_path / "a", tiny_corpus, (shared, shared))
    assert [report["trained"] for report in together] == [True, True], together
    assert (shared / "checkpoints" / "checkpoint-1" / "rng_state_1.safetensors").is_file()
    assert not list(shared.glob(".shared-fs-check-*"))
    # the same two processes on one machine (same global batch) train the same weights
    one = tmp_path / "one_machine" / "run"
    alone = _launch(tmp_path / "c", tiny_corpus, (one, one), machines=1)
    assert [report["trained"] for report in alone] == [True, True], alone
    two_machines, one_machine = load_file(shared / "model.safetensors"), load_file(one / "model.safetensors")
    assert two_machines.keys() == one_machine.keys()
    differing = [name for name in two_machines if not torch.equal(two_machines[name], one_machine[name])]
    assert not differing, f"two machines and one machine trained different {differing}"

    local = (tmp_path / "node0" / "run", tmp_path / "node1" / "run")  # each machine's own disk
    apart = _launch(tmp_path / "b", tiny_corpus, local)
    for report in apart:
        assert not report["trained"]
        assert report["error"].startswith("ranks do not share --output_dir"), report
        assert f"rank 1 on {os.uname().nodename} ({local[1]})" in report["error"]
        assert "resume needs a shared filesystem" in report["error"]
    assert not (local[0] / "checkpoints").exists() and not (local[1] / "checkpoints").exists()
