"""recipes/finetune.py end to end at tiny size: finetune, linear probe, retrieval, refusals."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from _tiny_runs import tiny_pretraining
from safetensors.torch import load_file

import hf_vssl  # noqa: F401  (registers the Auto classes)
from hf_vssl.training.arguments import parse_args
from hf_vssl.training.finetuning import FinetuningArguments, run_finetuning

TINY = [
    "--per_device_train_batch_size",
    "4",
    "--per_device_eval_batch_size",
    "4",
    "--dataloader_num_workers",
    "0",
    "--report_to",
    "none",
    "--logging_steps",
    "1",
    "--eval_clips",
    "2",
]


@pytest.fixture(scope="module")
def pretrained(tiny_corpus, tmp_path_factory) -> Path:
    """A tiny RotNet pretraining checkpoint (2 steps)."""
    out = tmp_path_factory.mktemp("pretrained") / "rotnet"
    return tiny_pretraining(out, tiny_corpus)


@pytest.fixture(scope="module")
def finetuned(pretrained, tiny_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finetuned") / "run"
    return run_finetuning(
        parse_args(
            FinetuningArguments,
            [
                *TINY,
                "--model_name_or_path",
                str(pretrained),
                "--dataset_root",
                str(tiny_corpus),
                "--output_dir",
                str(out),
                "--max_steps",
                "3",
                "--do_retrieval",
            ],
        )
    )


def _backbone_state(path: Path) -> dict[str, torch.Tensor]:
    """``vssl.*`` tensors of a pretraining or classification checkpoint (weights and BN buffers)."""
    state = load_file(path / "model.safetensors")
    backbone = {k: v for k, v in state.items() if k.startswith("vssl.")}
    assert len(backbone) > 100, f"no backbone in {path}"
    return backbone


def test_finetune_from_pretraining_checkpoint(finetuned, pretrained):
    from transformers import AutoModelForVideoClassification, AutoVideoProcessor

    metrics = json.loads((finetuned / "metrics.json").read_text())
    assert metrics["task"] == "video-classification" and metrics["mode"] == "finetune"
    assert (metrics["dataset"], metrics["dataset_split"], metrics["fold"]) == ("synthetic", "test", 1)
    assert metrics["label_set"] == "motion" and metrics["base_model"] == str(pretrained)
    assert set(metrics["results"]) == {"clip_top1", "clip_top5", "video_top1", "video_top5"}
    assert all(0.0 <= v <= 1.0 for v in metrics["results"].values())
    assert metrics["results"]["video_top5"] == 1.0  # 4 classes: every class is in the top 5
    retrieval = [metrics["retrieval"][f"top{k}"] for k in (1, 5, 10, 20)]
    assert retrieval == sorted(retrieval) and all(0.0 <= v <= 1.0 for v in retrieval)

    logs = [json.loads(line) for line in (finetuned / "log_history.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logs if "loss" in e] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in logs if "loss" in e)
    assert logs[-1]["eval_video_top1"] == metrics["results"]["video_top1"]
    assert (finetuned / "training_args.yaml").is_file()

    model = AutoModelForVideoClassification.from_pretrained(finetuned)
    assert type(model).__name__ == "VSSLForVideoClassification" and model.config.num_labels == 4
    assert model.config.pretext_task is None and model.config.id2label[0] == "move_left"
    assert AutoVideoProcessor.from_pretrained(finetuned).crop_size["height"] == 32
    # The backbone started from the pretrained one and moved (finetuning trains every weight).
    start = _backbone_state(pretrained)
    end = _backbone_state(finetuned)
    assert set(start) == set(end)
    assert any(not torch.equal(start[k], end[k]) for k in start if k.endswith("weight"))


def test_linear_probe_freezes_backbone_and_batch_norm_statistics(pretrained, tiny_corpus, tmp_path):
    out = run_finetuning(
        parse_args(
            FinetuningArguments,
            [
                *TINY,
                "--model_name_or_path",
                str(pretrained),
                "--dataset_root",
                str(tiny_corpus),
                "--output_dir",
                str(tmp_path / "probe"),
                "--mode",
                "linear_probe",
                "--max_steps",
                "3",
            ],
        )
    )
    start = _backbone_state(pretrained)
    end = _backbone_state(out)
    assert set(start) == set(end)
    assert any("running_mean" in k for k in start) and any("num_batches_tracked" in k for k in start)
    for key, value in start.items():  # weights AND batch-norm buffers, bit for bit
        assert torch.equal(value, end[key]), key
    state = load_file(out / "model.safetensors")
    assert state["classifier.weight"].shape == (4, state["classifier.weight"].shape[1])
    assert json.loads((out / "metrics.json").read_text())["mode"] == "linear_probe"


def test_mismatched_label_count_gets_a_fresh_head_with_a_warning(finetuned, tiny_corpus, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_vssl.training.finetuning"):
        out = run_finetuning(
            parse_args(
                FinetuningArguments,
                [
                    *TINY,
                    "--model_name_or_path",
                    str(finetuned),
                    "--dataset_root",
                    str(tiny_corpus),
                    "--label_set",
                    "appearance",
                    "--output_dir",
                    str(tmp_path / "appearance"),
                    "--max_steps",
                    "1",
                ],
            )
        )
    assert "freshly initialised" in caplog.text and "4 labels" in caplog.text
    config = json.loads((out / "config.json").read_text())
    assert len(config["id2label"]) == 10 and config["id2label"]["0"] != "move_left"
    assert json.loads((out / "metrics.json").read_text())["label_set"] == "appearance"


def _ucf_copy(tiny_corpus: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ucf"
    root.mkdir()
    (root / "UCF-101").symlink_to(tiny_corpus / "UCF-101")
    shutil.copytree(tiny_corpus / "ucfTrainTestlist", root / "ucfTrainTestlist")
    return root


def test_empty_or_missing_test_split_stops_before_training(tiny_corpus, tmp_path):
    root = _ucf_copy(tiny_corpus, tmp_path)
    (root / "ucfTrainTestlist" / "testlist01.txt").write_text("")
    args = [
        *TINY,
        "--init",
        "random",
        "--backbone",
        "r21d",
        "--width_multiplier",
        "0.125",
        "--num_frames",
        "8",
        "--image_size",
        "32",
        "--dataset",
        "ucf101",
        "--dataset_root",
        str(root),
        "--max_steps",
        "1",
    ]
    with pytest.raises(ValueError, match=r"split 'test'.*no videos"):
        run_finetuning(parse_args(FinetuningArguments, [*args, "--output_dir", str(tmp_path / "a")]))
    (root / "ucfTrainTestlist" / "testlist01.txt").unlink()
    with pytest.raises(FileNotFoundError, match="testlist01"):
        run_finetuning(parse_args(FinetuningArguments, [*args, "--output_dir", str(tmp_path / "b")]))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists(), "nothing ran"


def test_input_the_backbone_cannot_take_is_refused_before_training(pretrained, tiny_corpus, tmp_path):
    args = [
        *TINY,
        "--model_name_or_path",
        str(pretrained),
        "--dataset_root",
        str(tiny_corpus),
        "--output_dir",
        str(tmp_path / "run"),
        "--image_size",
        "8",
        "--max_steps",
        "1",
    ]
    with pytest.raises(ValueError, match=r"--image_size 8.*at least"):
        run_finetuning(parse_args(FinetuningArguments, args))
    assert not (tmp_path / "run").exists()


def test_retrieval_mode_needs_no_training(pretrained, tiny_corpus, tmp_path):
    out = run_finetuning(
        parse_args(
            FinetuningArguments,
            [
                *TINY,
                "--model_name_or_path",
                str(pretrained),
                "--dataset_root",
                str(tiny_corpus),
                "--output_dir",
                str(tmp_path / "retrieval"),
                "--mode",
                "retrieval",
            ],
        )
    )
    report = json.loads((out / "retrieval.json").read_text())
    values = [report["retrieval"][f"top{k}"] for k in (1, 5, 10, 20)]
    assert values == sorted(values) and all(0.0 <= v <= 1.0 for v in values)
    assert not (out / "model.safetensors").exists() and not (out / "checkpoints").exists()
