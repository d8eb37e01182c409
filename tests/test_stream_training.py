"""Training from streamed shards: fixed steps per epoch, exact resume, recipes, the Hub, two nodes.

The shards are real encoded videos (the tests' synthetic corpus, or panning noise made here),
read through ``datasets`` exactly as a recipe reads them; the Hub is ``tests/_local_hub.py``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _local_hub import LocalHub
from _tiny_runs import TINY_PRETRAINING_FLAGS
from huggingface_hub import constants
from safetensors.torch import load_file

from hf_vssl.data import streaming
from hf_vssl.data.clips import ClipTooLongError, UniformClipSampler
from hf_vssl.data.dataset_argument import parse_dataset_argument
from hf_vssl.data.datasets import collate_clips
from hf_vssl.data.loading import load_records
from hf_vssl.data.records import VideoRecord
from hf_vssl.data.shards import build_shards
from hf_vssl.data.streaming import StreamingClipDataset, load_video_dataset
from hf_vssl.data.training_data import dataset_name, open_training_videos
from hf_vssl.hub.publish import publish_dataset
from hf_vssl.models import VSSLConfig
from hf_vssl.pretext.modeling import VSSLForPretraining
from hf_vssl.training import pretraining
from hf_vssl.training.arguments import parse_args
from hf_vssl.training.distillation import DistillationArguments, run_distillation
from hf_vssl.training.finetuning import FinetuningArguments, finetune_train_data, run_finetuning
from hf_vssl.training.loop import build_accelerator
from hf_vssl.training.pretraining import PretrainingArguments, run_pretraining
from hf_vssl.training.streamed_batches import StreamedBatches, streamed_batches_per_epoch

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hf_local_alice"
SUBSET = 16  # the published nested subset: the first 4 shards of 4 videos


def _publish_subset(shard_dir: Path, size: int, num_shards: int) -> None:
    """Declare the first ``num_shards`` shards of ``train`` a nested subset (what the corpus
    preparation writes into the manifest)."""
    path = shard_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["splits"]["train"]["subsets"] = {
        str(size): {"num_shards": num_shards, "num_videos": size, "seed": 0}
    }
    path.write_text(json.dumps(manifest, indent=2))


@pytest.fixture(scope="module")
def corpus_shards(tiny_corpus, tmp_path_factory) -> Path:
    """The tiny corpus's 24 training videos as 6 shards of 4, with a published 16-video subset."""
    out = tmp_path_factory.mktemp("stream") / "k400-shards"
    report = build_shards(
        load_records("synthetic", str(tiny_corpus), "train"), out, shard_size=4, num_workers=1
    )
    assert report.per_split == {"train": 24}
    _publish_subset(out, SUBSET, 4)
    return out


def _shard_ids(shard_dir: Path, num_shards: int | None = None) -> list[str]:
    table = load_video_dataset(shard_dir, streaming=False)
    per_shard = json.loads((shard_dir / "manifest.json").read_text())["splits"]["train"]["shards"]
    keep = sum(s["num_videos"] for s in per_shard[:num_shards]) if num_shards else len(table)
    return sorted(meta["video_id"] for meta in table.select(range(keep))["json"])


def _toy_shards(make_video, out_dir: Path, count: int, shard_size: int) -> list[str]:
    """``count`` small panning-noise videos (4 labels) in shards of ``shard_size``."""
    records = [
        VideoRecord(
            path=str(
                make_video(f"src/{out_dir.name}/v{i:02d}.mp4", num_frames=8, height=16, width=16, seed=i)
            ),
            label=i % 4,
            label_name=f"c{i % 4}",
            video_id=f"vid{i:02d}",
        )
        for i in range(count)
    ]
    build_shards(records, out_dir, shard_size=shard_size, num_workers=1, split="train", prefix="toy")
    return [r.video_id for r in records]


# -- the loop's view of a stream ---------------------------------------------------------------


def _stream(shard_dir: Path, seed: int = 5) -> StreamingClipDataset:
    return StreamingClipDataset(load_video_dataset(shard_dir), UniformClipSampler(num_frames=4), seed=seed)


def _same(expected, actual) -> None:
    assert [ids for ids, _ in actual] == [ids for ids, _ in expected]
    assert all(torch.equal(a, e) for (_, a), (_, e) in zip(actual, expected, strict=True))


def _read(batches: StreamedBatches, stop: int | None = None) -> list[tuple[list[str], torch.Tensor]]:
    out = []
    for batch in batches:
        out.append((batch["video_ids"], batch["pixel_values"]))
        if len(out) == stop:
            break
    return out


def _at_epoch(batches: StreamedBatches, epoch: int) -> StreamedBatches:
    batches.dataset.set_epoch(epoch)
    batches.set_epoch(epoch)
    return batches


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_mid_epoch_gives_the_same_batches_without_decoding_the_consumed_ones(
    make_video, tmp_path, monkeypatch, num_workers
):
    ids = _toy_shards(make_video, tmp_path / "toy", 12, 3)

    def batches() -> StreamedBatches:
        return StreamedBatches(_stream(tmp_path / "toy"), 2, collate_clips, 6, num_workers)

    full = _read(_at_epoch(batches(), 1))
    assert len(full) == 6 and sorted(v for batch, _ in full for v in batch) == ids
    decoded: list[str] = []
    build_sample = streaming.build_sample

    def counting_build_sample(source, name, *args, **kwargs):
        decoded.append(name)
        return build_sample(source, name, *args, **kwargs)

    monkeypatch.setattr(streaming, "build_sample", counting_build_sample)
    for done in (3, 4):  # 2 workers: after 3 batches worker 1 is next (one batch is read again, dropped)
        interrupted = _at_epoch(batches(), 1)
        _read(interrupted, stop=done)
        state = interrupted.state()
        assert state[0] == 1  # regular turns: the fast resume applies
        resumed = _at_epoch(batches(), 1)
        resumed.resume(1, done, state)
        decoded.clear()
        _same(full[done:], _read(resumed))
        if num_workers == 0:  # decoded in this process: only what is left of the epoch
            assert len(decoded) == 2 * (6 - done)
    _same(full, _read(_at_epoch(interrupted, 1)))  # the next iteration starts the epoch afresh


def test_a_share_that_runs_dry_is_read_again_and_resume_stays_exact(make_video, tmp_path, caplog):
    ids = _toy_shards(make_video, tmp_path / "toy", 10, 3)  # shards of 3, 3, 3, 1: 5 batches of 2

    def batches() -> StreamedBatches:
        return _at_epoch(StreamedBatches(_stream(tmp_path / "toy"), 2, collate_clips, 7, 0), 0)

    with caplog.at_level(logging.WARNING):
        full = _read(batches())
    assert len(full) == 7 and "ran dry after 5 of its 7 batches" in caplog.text
    first_pass = [v for batch, _ in full[:5] for v in batch]
    assert sorted(first_pass) == ids and [v for batch, _ in full[5:] for v in batch] == first_pass[:4]

    interrupted = batches()
    _read(interrupted, stop=6)  # into the second pass: no regular resume point
    state = interrupted.state()
    assert state[0] == 0
    resumed = batches()
    resumed.resume(0, 6, state)  # reads the epoch from its start, dropping the 6 consumed batches
    _same(full[6:], _read(resumed))


def test_steps_per_epoch_and_refusals(corpus_shards, tmp_path):
    assert streamed_batches_per_epoch(50000, 8, 16, 2) == 195 * 2  # whole optimiser steps only
    with pytest.raises(ValueError, match="24 streamed videos cannot fill one optimiser step of 8 clips x 2 "):
        streamed_batches_per_epoch(24, 8, 2, 2)
    assert load_video_dataset(corpus_shards, subset_size=SUBSET).num_shards == 4
    assert load_video_dataset(corpus_shards, subset_size=24).num_shards == 6  # the whole split
    with pytest.raises(
        ValueError, match=r"publishes no 12-video subset of split 'train' \(published sizes: 16\)"
    ):
        load_video_dataset(corpus_shards, subset_size=12)
    videos = open_training_videos(parse_dataset_argument(str(corpus_shards)), subset_size=SUBSET)
    assert videos.is_stream and videos.num_videos == SUBSET and videos.records is None
    assert sorted(videos.id2label.values()) == ["move_down", "move_left", "move_right", "move_up"]
    assert dataset_name(parse_dataset_argument("hf://datasets/org/k400-shards@v1")) == "k400-shards"
    with pytest.raises(ValueError, match="subset was drawn with seed 0, not --subset_seed 3"):
        open_training_videos(parse_dataset_argument(str(corpus_shards)), subset_size=SUBSET, subset_seed=3)
    with pytest.raises(ValueError, match="--label_set applies to the synthetic corpus"):
        open_training_videos(parse_dataset_argument(str(corpus_shards)), label_set="motion")


# -- the recipes from a local shard folder -----------------------------------------------------


def _pretrain(output: Path, dataset: str | Path, *extra: str, task: str = "rotnet") -> Path:
    flags = [*TINY_PRETRAINING_FLAGS, "--pretext_task", task, "--dataset", str(dataset)]
    return run_pretraining(parse_args(PretrainingArguments, [*flags, "--output_dir", str(output), *extra]))


def _losses(output: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (output / "log_history.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_streamed_pretraining_resumes_exactly(corpus_shards, tmp_path):
    """24 videos, batch 4: 6 steps per epoch; 7 steps cross the epoch boundary. The run is cut
    at step 3 (worker 0 has delivered 2 batches, worker 1 one) and resumed from its checkpoint."""
    output = tmp_path / "run"
    flags = ["--max_steps", "7", "--save_steps", "3", "--save_total_limit", "5", "--logging_steps", "1"]
    flags += ["--dataloader_num_workers", "2"]
    _pretrain(output, corpus_shards, *flags)
    state = json.loads((output / "checkpoints" / "checkpoint-3" / "loop_state.json").read_text())
    assert state["steps_per_epoch"] == 6 and state["stream"]["num_workers"] == 2
    assert state["stream"]["ranks"][0][0] == 1  # a regular resume point
    expected, expected_losses = load_file(output / "model.safetensors"), _losses(output)
    for path in (output / "checkpoints").iterdir():
        if path.name != "checkpoint-3":
            shutil.rmtree(path)
    (output / "model.safetensors").unlink()
    _pretrain(output, corpus_shards, *flags, "--resume_from_checkpoint", "latest")
    actual = load_file(output / "model.safetensors")
    assert [key for key in expected if not torch.equal(expected[key], actual[key])] == []
    assert _losses(output) == expected_losses


def _teacher(path: Path) -> Path:
    config = VSSLConfig(
        backbone="r3d", width_multiplier=0.125, num_frames=8, image_size=32, pretext_task="rotnet"
    )
    VSSLForPretraining(config).save_pretrained(path)
    return path


def _distill(output: Path, dataset: Path, teacher: Path, *extra: str) -> Path:
    flags = [
        "--teachers", str(teacher), "--backbone", "r21d", "--width_multiplier", "0.125", "--num_frames", "8",
        "--image_size", "32", "--per_device_train_batch_size", "4", "--dataloader_num_workers", "0",
        "--report_to", "none", "--max_steps", "2", "--logging_steps", "1", "--dataset", str(dataset),
        "--output_dir", str(output), *extra,
    ]  # fmt: skip
    return run_distillation(parse_args(DistillationArguments, flags))


def test_distillation_and_finetuning_train_from_shards(corpus_shards, tmp_path):
    output = _distill(
        tmp_path / "d", corpus_shards, _teacher(tmp_path / "teacher"), "--subset_size", str(SUBSET)
    )
    assert (output / "model.safetensors").is_file() and len(_losses(output)) == 2
    assert not (output / "subset_ids.json").exists()  # a stream's videos are the manifest's subset

    args = parse_args(
        FinetuningArguments,
        ["--dataset", str(corpus_shards), "--per_device_train_batch_size", "4", "--report_to", "none",
         "--dataloader_num_workers", "0", "--output_dir", str(tmp_path / "f")],
    )  # fmt: skip
    videos = open_training_videos(parse_dataset_argument(args.dataset), labelled=True)
    accelerator = build_accelerator(args, tmp_path / "f", log=False)
    model_config = VSSLConfig(backbone="r21d", width_multiplier=0.125, num_frames=8, image_size=32)
    dataset, loader, _ = finetune_train_data(args, accelerator, model_config, videos)
    assert isinstance(dataset, StreamingClipDataset) and len(loader) == 6
    dataset.set_epoch(0)
    batches = list(loader)
    labels = {v: int(label) for b in batches for v, label in zip(b["video_ids"], b["labels"], strict=True)}
    assert sorted(labels) == _shard_ids(corpus_shards)  # every training video once
    # ids read v_MoveUp_g01_c01 for the label move_up: each video carries its own label
    assert all(
        videos.id2label[label].replace("_", "") in video_id.lower() for video_id, label in labels.items()
    )
    assert batches[0]["pixel_values"].shape == (4, 8, 3, 32, 32)


def test_short_videos_in_a_stream_follow_short_video(tiny_corpus, make_video, tmp_path, caplog):
    """Distillation (whose clip sampler leaves short videos to ``--short_video``) from two 4-frame
    videos among 8: ``skip`` leaves them out and reports each; the epoch keeps its 8 // 4 = 2
    steps (the 6 readable videos fill one batch, so the share is read again, with a warning);
    ``refuse`` stops, naming the video."""
    short = [
        VideoRecord(
            path=str(make_video(f"short{i}.mp4", num_frames=4, height=48, width=48, seed=i)),
            label=0,
            label_name="move_down",
            video_id=f"short{i}",
        )
        for i in range(2)
    ]
    records = [*short, *load_records("synthetic", str(tiny_corpus), "train")[:6]]
    build_shards(records, tmp_path / "shards", shard_size=4, num_workers=1, split="train")
    teacher = _teacher(tmp_path / "teacher")
    with caplog.at_level(logging.WARNING):
        output = _distill(tmp_path / "skip", tmp_path / "shards", teacher, "--short_video", "skip")
    assert len(_losses(output)) == 2
    assert all(f"{video.video_id}: the clip needs 8 frames" in caplog.text for video in short)
    assert "ran dry after 1 of its 2 batches" in caplog.text
    with pytest.raises(ClipTooLongError, match=r"short\d: the clip needs 8 frames but the video has only 4"):
        _distill(tmp_path / "refuse", tmp_path / "shards", teacher, "--short_video", "refuse")


# -- the Hub and two nodes (subprocesses: the Hub endpoint is read when huggingface_hub starts) ----


def test_finetuning_runs_end_to_end_from_shards(corpus_shards, tmp_path, capsys):
    """The whole finetune recipe from a shard folder: streamed training, then the streamed test
    (here the train split, the only one the fixture has), scored once per video."""
    flags = [
        "--dataset", str(corpus_shards), "--eval_split", "train", "--backbone", "r21d",
        "--width_multiplier", "0.125", "--num_frames", "8", "--image_size", "32",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--max_steps", "2",
        "--logging_steps", "1", "--dataloader_num_workers", "0", "--report_to", "none",
        "--eval_clips", "1", "--output_dir", str(tmp_path / "f"),
    ]  # fmt: skip
    output = run_finetuning(parse_args(FinetuningArguments, flags))
    logs = [json.loads(line) for line in (output / "log_history.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logs if "loss" in entry] == [1, 2]
    assert "(24 videos)" in capsys.readouterr().out  # every test video of the stream scored once
    metrics = json.loads((output / "metrics.json").read_text())
    assert 0.0 <= metrics["results"]["video_top1"] <= 1.0 and metrics["skipped_videos"] == []
    assert (output / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def hub_shards(corpus_shards):
    """``org/k400-shards`` on a local Hub-compatible server; yields ``(server, commit)``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_OFFLINE", False)
        with LocalHub(tokens={TOKEN: "alice"}, orgs={"org": ["alice"]}) as hub:
            publish_dataset(corpus_shards, "org/k400-shards", token=TOKEN, endpoint=hub.url)
            yield hub, hub.repos[("dataset", "org/k400-shards")].head.oid


def _online_env(hub: LocalHub, tmp_path: Path) -> dict[str, str]:
    return dict(
        os.environ,
        HF_ENDPOINT=hub.url,
        HF_HUB_OFFLINE="0",
        HF_DATASETS_OFFLINE="0",
        HF_HOME=str(tmp_path / "hf_home"),
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]),
        ACCELERATE_USE_CPU="true",
        OMP_NUM_THREADS="1",
    )


def _check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


@pytest.mark.slow
def test_recipes_stream_from_the_hub_and_resume_exactly(hub_shards, tmp_path):
    """``recipes/pretrain.py --dataset org/k400-shards --subset_size 16 --dataset_revision <commit>``
    against the local Hub, cut at step 3 of 5 and resumed, equals the uninterrupted run; the
    distillation recipe then streams ``hf://datasets/org/k400-shards`` with it as teacher."""
    hub, commit = hub_shards
    env = _online_env(hub, tmp_path)
    flags = [*TINY_PRETRAINING_FLAGS, "--pretext_task", "rotnet", "--dataset", "org/k400-shards"]
    flags += [
        "--subset_size",
        str(SUBSET),
        "--dataset_revision",
        commit,
        "--max_steps",
        "5",
        "--save_steps",
        "3",
    ]
    flags += ["--save_total_limit", "5", "--logging_steps", "1", "--dataloader_num_workers", "2"]
    script = f"""
import json, shutil, sys
from pathlib import Path
sys.argv = ["pretrain.py"]
from hf_vssl.training import pretraining
from hf_vssl.training.arguments import parse_args
from hf_vssl.training.pretraining import PretrainingArguments, run_pretraining
from hf_vssl.training.distillation import DistillationArguments, run_distillation
flags, out = {flags!r}, Path({str(tmp_path / "run")!r})
run_pretraining(parse_args(PretrainingArguments, [*flags, "--output_dir", str(out)]))
shutil.copy(out / "model.safetensors", out.parent / "expected.safetensors")
shutil.copy(out / "log_history.jsonl", out.parent / "expected_log.jsonl")
for path in (out / "checkpoints").iterdir():
    if path.name != "checkpoint-3":
        shutil.rmtree(path)
run_pretraining(parse_args(PretrainingArguments, [*flags, "--output_dir", str(out), "--resume_from_checkpoint", "latest"]))
run_distillation(parse_args(DistillationArguments, ["--teachers", str(out), "--backbone", "r21d",
    "--width_multiplier", "0.125", "--num_frames", "8", "--image_size", "32", "--per_device_train_batch_size", "4",
    "--dataloader_num_workers", "0", "--report_to", "none", "--max_steps", "2", "--dataset",
    "hf://datasets/org/k400-shards", "--output_dir", str(out.parent / "distilled")]))
"""
    _check(
        subprocess.run(
            [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
    )
    expected, actual = (
        load_file(tmp_path / "expected.safetensors"),
        load_file(tmp_path / "run" / "model.safetensors"),
    )
    assert [key for key in expected if not torch.equal(expected[key], actual[key])] == []
    assert _losses(tmp_path / "run") == [
        json.loads(line)["loss"] for line in (tmp_path / "expected_log.jsonl").read_text().splitlines()
    ]
    assert len(_losses(tmp_path / "run")) == 5
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["provenance"][0]["dataset_revision"] == commit
    assert (tmp_path / "distilled" / "model.safetensors").is_file()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(env: dict, machine_rank: int | None, port: int, record: Path, output: Path, flags: list[str]):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    machines = ["--num_machines", "1"] if machine_rank is None else [
        "--num_machines", "2", "--machine_rank", str(machine_rank), "--main_process_ip", "127.0.0.1",
    ]  # fmt: skip
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", *machines]
    command += ["--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += [
        str(REPO / "tests" / "_dist_stream_pretrain.py"),
        str(record),
        *flags,
        "--output_dir",
        str(output),
    ]
    return subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait(process: subprocess.Popen) -> None:
    stdout, stderr = process.communicate(timeout=600)
    _check(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))


@pytest.mark.slow
def test_two_nodes_equal_one_machine_and_read_every_video_once_per_epoch(hub_shards, corpus_shards, tmp_path):
    """Two ``accelerate launch --num_machines 2 --machine_rank {0,1}`` processes (gloo on CPU), 2
    DataLoader workers each, stream the published 16-video subset from the local Hub; so does one
    machine with 2 processes, the same global batch (2 x 4). Their weights are identical.

    One process with batch 8 reads the same videos each epoch but NOT the same weights: its
    BatchNorm statistics span 8 clips where each rank's span its own 4 (DDP does not sync them),
    its shuffle buffer mixes all 4 shards where each rank mixes its 2, and RotNet's rotations come
    from the per-process step generator. What must hold does: the same videos each epoch, each
    once, in the same number of steps.
    """
    hub, _ = hub_shards
    env = _online_env(hub, tmp_path)
    common = [
        "--subset_size",
        str(SUBSET),
        "--max_steps",
        "4",
        "--dataloader_num_workers",
        "2",
        "--bf16",
        "false",
    ]
    flags = [*TINY_PRETRAINING_FLAGS, "--pretext_task", "rotnet", "--dataset", "org/k400-shards", *common]
    port = _free_port()
    nodes = [_launch(env, rank, port, tmp_path / "nodes", tmp_path / "nodes_out", flags) for rank in (0, 1)]
    for process in nodes:
        _wait(process)
    _wait(_launch(env, None, _free_port(), tmp_path / "machine", tmp_path / "machine_out", flags))

    two_nodes = load_file(tmp_path / "nodes_out" / "model.safetensors")
    one_machine = load_file(tmp_path / "machine_out" / "model.safetensors")
    assert [key for key in two_nodes if not torch.allclose(two_nodes[key], one_machine[key], atol=1e-6)] == []
    subset = _shard_ids(corpus_shards, num_shards=4)
    records = {}
    for name in ("nodes", "machine"):
        ranks = [json.loads((tmp_path / name / f"rank{r}.json").read_text()) for r in (0, 1)]
        assert all(len(batches) == 4 for batches in ranks)  # 16 // (4 x 2) = 2 steps per epoch, 2 epochs
        for epoch in (0, 1):
            read = [v for batches in ranks for batch in batches[2 * epoch : 2 * epoch + 2] for v in batch]
            assert sorted(read) == subset, f"{name}, epoch {epoch}: not every video exactly once"
        records[name] = ranks
    assert records["nodes"] == records["machine"]

    seen: list[list[str]] = []
    step = pretraining._pretext_step

    def recording_step(model, batch, generator):
        seen.append(list(batch["video_ids"]))
        return step(model, batch, generator)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pretraining, "_pretext_step", recording_step)
        _pretrain(tmp_path / "one_process", corpus_shards, *common, "--per_device_train_batch_size", "8")
    assert len(seen) == 4 and all(
        sorted(v for b in seen[2 * e : 2 * e + 2] for v in b) == subset for e in (0, 1)
    )
