"""recipes/distill.py end to end: two teachers of different backbones into one student, logits, resume."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import hf_vssl  # noqa: F401  (registers the Auto classes)
from hf_vssl.models import VSSLConfig, VSSLForVideoClassification
from hf_vssl.training import distillation
from hf_vssl.training.arguments import parse_args
from hf_vssl.training.distillation import (
    DistillationArguments,
    NonFiniteLossError,
    feature_distillation_loss,
    logit_distillation_loss,
    run_distillation,
)
from hf_vssl.training.pretraining import PretrainingArguments, run_pretraining

REPO = Path(__file__).resolve().parents[1]
TINY_PRETRAIN = [
    "--width_multiplier",
    "0.125",
    "--num_frames",
    "8",
    "--per_device_train_batch_size",
    "4",
    "--dataloader_num_workers",
    "0",
    "--report_to",
    "none",
    "--max_steps",
    "1",
]
# A fixed tiny transfer set: 4 videos (one batch), centre clips, no augmentation.
TINY_STUDENT = [
    "--backbone",
    "r21d",
    "--width_multiplier",
    "0.125",
    "--num_frames",
    "8",
    "--image_size",
    "32",
    "--subset_size",
    "4",
    "--per_device_train_batch_size",
    "4",
    "--dataloader_num_workers",
    "0",
    "--report_to",
    "none",
    "--transform_preset",
    "eval",
    "--clip_sampling",
    "center",
    "--logging_steps",
    "1",
]


def _pretrain(corpus: Path, output: Path, task: str, backbone: str, image_size: int) -> Path:
    return run_pretraining(
        parse_args(
            PretrainingArguments,
            [
                *TINY_PRETRAIN,
                "--pretext_task",
                task,
                "--backbone",
                backbone,
                "--image_size",
                str(image_size),
                "--dataset_root",
                str(corpus),
                "--output_dir",
                str(output),
            ],
        )
    )


@pytest.fixture(scope="module")
def teacher_dirs(tiny_corpus, tmp_path_factory) -> list[Path]:
    """Two pretraining checkpoints: RotNet R21D at 8x32 and VCOP R3D at 8x40 (another clip shape)."""
    root = tmp_path_factory.mktemp("teachers")
    return [
        _pretrain(tiny_corpus, root / "rotnet-r21d", "rotnet", "r21d", 32),
        _pretrain(tiny_corpus, root / "vcop-r3d", "vcop", "r3d", 40),
    ]


def _classifier_teacher(path: Path, labels: list[str]) -> Path:
    config = VSSLConfig(
        backbone="r3d",
        width_multiplier=0.125,
        num_frames=8,
        image_size=40,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    VSSLForVideoClassification(config).save_pretrained(path)
    return path


def _args(corpus: Path, output: Path, teachers, *extra: str) -> DistillationArguments:
    return parse_args(
        DistillationArguments,
        [
            "--teachers",
            *map(str, teachers),
            *TINY_STUDENT,
            "--dataset_root",
            str(corpus),
            "--output_dir",
            str(output),
            *extra,
        ],
    )


def _logs(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "log_history.jsonl").read_text().splitlines()]


def test_losses():
    x = torch.randn(6, 16)
    assert feature_distillation_loss(x, 3 * x).abs() < 1e-6, "scale-free: features are L2-normalised"
    y = torch.randn(6, 16)
    cosine = feature_distillation_loss(x, y, "cosine")
    assert torch.allclose(feature_distillation_loss(x, y, "mse"), 2 * cosine, atol=1e-5)
    logits = torch.randn(6, 5)
    assert logit_distillation_loss(logits, logits).abs() < 1e-6
    assert logit_distillation_loss(logits, torch.randn(6, 5), temperature=4.0) > 0
    with pytest.raises(ValueError, match="cosine"):
        feature_distillation_loss(x, y, "l1")


def test_two_teachers_of_different_backbones(teacher_dirs, tiny_corpus, tmp_path, monkeypatch):
    from transformers import AutoModel, AutoVideoProcessor

    loaded, original = [], distillation.load_teacher

    def recording_load_teacher(path):
        teacher = original(path)
        loaded.append((teacher, {k: v.clone() for k, v in teacher.state_dict().items()}))
        return teacher

    monkeypatch.setattr(distillation, "load_teacher", recording_load_teacher)

    output = run_distillation(
        _args(tiny_corpus, tmp_path / "student", teacher_dirs, "--max_steps", "6", "--save_steps", "3")
    )
    logs = _logs(output)
    assert [entry["step"] for entry in logs] == list(range(1, 7))
    losses = [entry["loss"] for entry in logs]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.9 * losses[0], f"the loss should fall on a fixed batch: {losses}"
    assert {"feature_loss_t0", "feature_loss_t1", "lr", "clips_per_second"} <= set(logs[-1])
    assert "logit_loss" not in logs[-1], "pretraining teachers have no classification head"

    # Teachers stayed frozen: same weights and BatchNorm statistics, eval mode, no gradients.
    assert len(loaded) == 2
    for teacher, before in loaded:
        assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())
        for key, value in teacher.state_dict().items():
            assert torch.equal(value.cpu(), before[key].cpu()), f"teacher {teacher.name} changed {key}"

    # The student is a plain backbone checkpoint, usable downstream.
    student = AutoModel.from_pretrained(output)
    assert type(student).__name__ == "VSSLModel" and student.config.pretext_task is None
    assert (student.config.num_frames, student.config.image_size) == (8, 32)
    classifier = VSSLForVideoClassification.from_pretrained(output, num_labels=4)
    assert classifier.classifier.out_features == 4
    for key, value in student.state_dict().items():
        assert torch.equal(value, classifier.vssl.state_dict()[key]), key
    processor = AutoVideoProcessor.from_pretrained(output)
    assert processor.crop_size["height"] == 32 and processor.num_frames == 8
    saved = parse_args(DistillationArguments, ["--config", str(output / "training_args.yaml")])
    assert saved.teachers == [str(p) for p in teacher_dirs]
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["checkpoint-3", "checkpoint-6"]


def test_resume_repeats_the_interrupted_step(teacher_dirs, tiny_corpus, tmp_path):
    output = tmp_path / "student"
    extra = ["--max_steps", "3", "--save_steps", "1", "--save_total_limit", "3"]
    run_distillation(_args(tiny_corpus, output, teacher_dirs[:1], *extra))
    step3 = _logs(output)[-1]
    assert step3["step"] == 3
    # Lose the last step, as if killed after checkpoint-2, then resume.
    shutil.rmtree(output / "checkpoints" / "checkpoint-3")
    (output / "log_history.jsonl").write_text(
        "".join(json.dumps(entry) + "\n" for entry in _logs(output)[:2])
    )
    run_distillation(
        _args(tiny_corpus, output, teacher_dirs[:1], *extra, "--resume_from_checkpoint", "latest")
    )
    resumed = _logs(output)
    assert [entry["step"] for entry in resumed] == [1, 2, 3]
    assert resumed[-1]["loss"] == pytest.approx(step3["loss"], rel=1e-5, abs=1e-6)


def test_logit_distillation_from_a_classification_teacher(teacher_dirs, tiny_corpus, tmp_path):
    labels = ["a", "b", "c", "d"]
    classifier_teacher = _classifier_teacher(tmp_path / "cls-r3d", labels)
    output = run_distillation(
        _args(
            tiny_corpus,
            tmp_path / "student",
            [teacher_dirs[0], classifier_teacher],
            "--student_name_or_path",
            str(teacher_dirs[0]),
            "--max_steps",
            "2",
            "--save_steps",
            "2",
            "--feature_loss",
            "mse",
            "--projector",
            "linear",
        )
    )
    logs = _logs(output)
    assert math.isfinite(logs[-1]["logit_loss"]) and logs[-1]["logit_loss"] >= 0
    assert "logit_loss_t1" in logs[-1] and "logit_loss_t0" not in logs[-1]
    config = json.loads((output / "config.json").read_text())
    assert config["architectures"] == ["VSSLForVideoClassification"]
    assert {int(k): v for k, v in config["id2label"].items()} == dict(enumerate(labels))
    student = VSSLForVideoClassification.from_pretrained(output)
    saved = load_file(str(output / "model.safetensors"))
    assert torch.equal(student.classifier.weight, saved["classifier.weight"]), "the distilled head is kept"

    # Teachers with heads over different label sets cannot share one student head.
    other = _classifier_teacher(tmp_path / "cls-3", ["x", "y", "z"])
    with pytest.raises(ValueError, match="different label sets"):
        run_distillation(
            _args(tiny_corpus, tmp_path / "refused", [classifier_teacher, other], "--max_steps", "1")
        )
    assert not (tmp_path / "refused").exists(), "refused before anything ran"


def test_nonfinite_loss_stops_the_run(teacher_dirs, tiny_corpus, tmp_path, monkeypatch):
    from hf_vssl.distill import student as student_module

    monkeypatch.setattr(
        student_module,
        "feature_distillation_loss",
        lambda student, teacher, kind: student.sum() * float("nan"),
    )
    with pytest.raises(NonFiniteLossError, match="NaN"):
        run_distillation(_args(tiny_corpus, tmp_path / "nan", teacher_dirs[:1], "--max_steps", "1"))


def test_argument_errors_and_presets(tiny_corpus, tmp_path):
    with pytest.raises(ValueError, match="no teachers"):
        run_distillation(parse_args(DistillationArguments, ["--output_dir", str(tmp_path)]))
    with pytest.raises(ValueError, match="--feature_loss"):
        run_distillation(_args(tiny_corpus, tmp_path, ["t"], "--feature_loss", "l1"))
    with pytest.raises(FileNotFoundError, match=r"--teachers .*missing: no such file or folder"):
        run_distillation(_args(tiny_corpus, tmp_path, [tmp_path / "missing"]))
    presets = sorted((REPO / "recipes" / "configs").glob("distill_*.yaml"))
    assert [p.name for p in presets] == [
        "distill_spatial_temporal.yaml",
        "distill_two_backbones.yaml",
        "distill_two_datasets.yaml",
    ]
    for preset in presets:
        args = parse_args(DistillationArguments, ["--config", str(preset), "--teachers", "a", "b"])
        assert args.teachers == ["a", "b"] and args.num_frames == 16 and args.image_size == 112
        assert len(parse_args(DistillationArguments, ["--config", str(preset)]).teachers) == 2


def test_recipe_is_thin():
    spec = importlib.util.spec_from_file_location("distill_recipe", REPO / "recipes" / "distill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.run_distillation is run_distillation
