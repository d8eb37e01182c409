"""The recipes' evaluation wiring: default evaluation splits and labelled data, the label space from
the source, no substituted test videos, the model saved before the test, ``--short_video``, the
bad-video tolerance across ranks, refused weights/config mismatches, and provenance."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _tiny_runs import tiny_pretraining

import hf_vssl  # noqa: F401  (registers the Auto classes)
from hf_vssl.data.clips import ClipTooLongError
from hf_vssl.data.records import VideoRecord
from hf_vssl.data.sources import UnlabelledSplitError
from hf_vssl.data.synthetic import make_synthetic_dataset
from hf_vssl.evaluation import build_eval_dataset, check_bad_videos, evaluate_classifier
from hf_vssl.models import VSSLConfig, VSSLForVideoClassification
from hf_vssl.models.loading import load_vssl_model
from hf_vssl.training import finetuning
from hf_vssl.training.arguments import parse_args
from hf_vssl.training.finetuning import FinetuningArguments, run_finetuning
from hf_vssl.training.pretraining import PretrainingArguments, run_pretraining

TINY = [
    "--per_device_train_batch_size",
    "4",
    "--per_device_eval_batch_size",
    "4",
    "--dataloader_num_workers",
    "0",
    "--report_to",
    "none",
    "--eval_clips",
    "1",
    "--max_steps",
    "1",
    "--num_frames",
    "8",
    "--image_size",
    "32",
]
SCRATCH = [*TINY, "--init", "random", "--backbone", "r21d", "--width_multiplier", "0.125"]


def _tiny_classifier(num_labels: int = 4, width: float = 0.125) -> VSSLForVideoClassification:
    config = VSSLConfig(backbone="r21d", width_multiplier=width, num_frames=8, image_size=32)
    return VSSLForVideoClassification(
        config.for_classification({i: f"c{i}" for i in range(num_labels)})
    ).eval()


@pytest.fixture
def ucf_copy(tiny_corpus, tmp_path) -> Path:
    root = tmp_path / "ucf101"
    shutil.copytree(tiny_corpus, root)
    return root


def _records(root: Path) -> list[VideoRecord]:
    from hf_vssl.data.loading import load_records

    return load_records("ucf101", str(root), "test")


# -- 1. default evaluation split, labels required ---------------------------------------------------


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("k400") / "kinetics400"
    return make_synthetic_dataset(
        root,
        layout="kinetics400",
        seed=0,
        num_classes=2,
        videos_per_class=4,
        clips_per_group=2,
        num_frames=24,
        size=(40, 40),
    )


def test_kinetics_evaluates_on_val_by_default_and_refuses_the_unlabelled_test(kinetics, tmp_path):
    base = [*SCRATCH, "--dataset", "kinetics400", "--dataset_root", str(kinetics)]
    with pytest.raises(UnlabelledSplitError, match="test"):
        run_finetuning(
            parse_args(
                FinetuningArguments,
                [*base, "--eval_split", "test", "--output_dir", str(tmp_path / "refused")],
            )
        )
    assert not (tmp_path / "refused" / "config.json").exists()  # refused before training
    out = run_finetuning(parse_args(FinetuningArguments, [*base, "--output_dir", str(tmp_path / "run")]))
    assert json.loads((out / "metrics.json").read_text())["dataset_split"] == "val"


# -- 2./3. label space from the source; skipped test videos reported, never substituted ------------


def test_ucf101_label_space_and_skipped_test_videos(ucf_copy, tmp_path):
    class_index = next(ucf_copy.rglob("classInd.txt"))
    names = [line.split()[1] for line in class_index.read_text().split("\n") if line.strip()]
    class_index.write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate([*names, "ExtraOne", "ExtraTwo"])))
    broken = _records(ucf_copy)[0]
    Path(broken.path).write_bytes(Path(broken.path).read_bytes()[:300])  # a truncated test video
    out = run_finetuning(
        parse_args(
            FinetuningArguments,
            [
                *SCRATCH,
                "--dataset",
                "ucf101",
                "--dataset_root",
                str(ucf_copy),
                "--max_bad_fraction",
                "0.5",
                "--output_dir",
                str(tmp_path / "run"),
            ],
        )
    )
    config = VSSLConfig.from_pretrained(out)
    assert config.num_labels == len(names) + 2  # classInd.txt's classes, not the labels seen
    assert config.id2label[len(names) + 1] == "ExtraTwo"
    metrics = json.loads((out / "metrics.json").read_text())
    assert [v["video_id"] for v in metrics["skipped_videos"]] == [broken.video_id]
    assert metrics["skipped_videos"][0]["reason"]

    # --mode retrieval lists the same video among the queries left out, with its reason
    retrieval_args = [
        *SCRATCH,
        "--dataset",
        "ucf101",
        "--dataset_root",
        str(ucf_copy),
        "--max_bad_fraction",
        "0.5",
    ]
    retrieval_args += ["--mode", "retrieval", "--output_dir", str(tmp_path / "retrieval")]
    report = json.loads(
        (run_finetuning(parse_args(FinetuningArguments, retrieval_args)) / "retrieval.json").read_text()
    )
    assert [v["video_id"] for v in report["skipped_videos"]["query"]] == [broken.video_id]
    assert report["skipped_videos"]["gallery"] == [] and report["skipped_videos"]["query"][0]["reason"]


def test_evaluation_leaves_bad_videos_out_instead_of_scoring_a_neighbour_twice(ucf_copy):
    records = _records(ucf_copy)
    Path(records[1].path).write_bytes(b"not a video")
    dataset = build_eval_dataset(records, 8, 32, num_clips=1, max_bad_fraction=0.5)
    result = evaluate_classifier(_tiny_classifier(), dataset, batch_size=3)
    assert result.num_videos == len(records) - 1
    assert [(e["index"], e["video_id"]) for e in result.skipped_videos] == [(1, records[1].video_id)]


# -- 4. the model is saved before the test -----------------------------------------------------------


def test_a_failing_test_loses_no_training(tiny_corpus, tmp_path, monkeypatch):
    def broken_test(*args, **kwargs):
        raise RuntimeError("evaluation crashed")

    monkeypatch.setattr(finetuning, "evaluate_classifier", broken_test)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="evaluation crashed"):
        run_finetuning(
            parse_args(
                FinetuningArguments, [*SCRATCH, "--dataset_root", str(tiny_corpus), "--output_dir", str(out)]
            )
        )
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()


# -- 5. --short_video, per video ---------------------------------------------------------------------


def test_short_video_policy_applies_per_video_in_evaluation(make_video):
    long, short = make_video("long.mp4", num_frames=20), make_video("short.mp4", num_frames=4)
    records = [VideoRecord(path=str(p), label=0, label_name="c0", video_id=p.stem) for p in (long, short)]
    model = _tiny_classifier()
    skipped = evaluate_classifier(model, build_eval_dataset(records, 8, 32, num_clips=1, short_video="skip"))
    assert skipped.num_videos == 1 and [e["video_id"] for e in skipped.skipped_videos] == ["short"]
    looped = evaluate_classifier(model, build_eval_dataset(records, 8, 32, num_clips=1, short_video="loop"))
    assert looped.num_videos == 2 and not looped.skipped_videos
    with pytest.raises(ClipTooLongError, match=r"short\.mp4"):
        evaluate_classifier(model, build_eval_dataset(records, 8, 32, num_clips=1, short_video="refuse"))


def test_short_video_is_a_flag_of_every_recipe():
    from hf_vssl.analysis.cka_recipe import CKAArguments
    from hf_vssl.analysis.robustness import RobustnessArguments
    from hf_vssl.training.distillation import DistillationArguments

    for kind in (
        FinetuningArguments,
        PretrainingArguments,
        DistillationArguments,
        RobustnessArguments,
        CKAArguments,
    ):
        assert parse_args(kind, ["--short_video", "pad"]).short_video == "pad"
        with pytest.raises(ValueError, match="--short_video"):
            parse_args(kind, ["--short_video", "wrap"])


# -- 6. the bad-video tolerance over every rank ---------------------------------------------------------


class _TwoRanks:
    """An accelerator stand-in whose other rank found exactly as many bad videos as this one."""

    num_processes, device = 2, torch.device("cpu")

    def reduce(self, tensor, reduction):
        assert reduction == "sum"
        return tensor * 2


def test_bad_video_fraction_is_summed_over_ranks(ucf_copy):
    records = _records(ucf_copy)[:8]
    Path(records[0].path).write_bytes(b"broken")
    dataset = build_eval_dataset(records, 8, 32, num_clips=1, max_bad_fraction=0.2)
    for index in range(len(records)):
        dataset[index]
    assert check_bad_videos(dataset)["corrupt"] == 1  # 1 of 8 on this rank: tolerated
    with pytest.raises(RuntimeError, match="2 of 8 videos"):
        check_bad_videos(dataset, _TwoRanks())


# -- 7. a weights/config mismatch is refused --------------------------------------------------------------


def test_config_that_does_not_match_the_weights_is_refused(tiny_corpus, tmp_path):
    folder = tmp_path / "model"
    _tiny_classifier().save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["width_multiplier"] = 0.25
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"do not match its config\.json"):
        run_finetuning(
            parse_args(
                FinetuningArguments,
                [
                    *TINY,
                    "--model_name_or_path",
                    str(folder),
                    "--dataset_root",
                    str(tiny_corpus),
                    "--output_dir",
                    str(tmp_path / "run"),
                ],
            )
        )
    with pytest.raises(ValueError, match=r"do not match its config\.json"):
        load_vssl_model(folder)


# -- 8. provenance --------------------------------------------------------------------------------------


def test_finetuned_model_keeps_the_pretraining_provenance(tiny_corpus, tmp_path):
    pretrained = tiny_pretraining(tmp_path / "pre", tiny_corpus, "--subset_size", "16", max_steps=1)
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
                str(tmp_path / "ft"),
            ],
        )
    )
    config = VSSLConfig.from_pretrained(out)
    assert config.pretext_task is None
    first, last = config.provenance
    assert (first["stage"], first["pretext_task"], first["subset_size"], first["steps"]) == (
        "pretraining",
        "rotnet",
        16,
        1,
    )
    assert (last["stage"], last["base_model"]) == ("finetune", str(pretrained))
    assert "Rot" in (out / "README.md").read_text().split("Pretext task", 1)[1].split("\n", 1)[0]


def test_one_short_video_no_longer_refuses_a_pretraining(tiny_corpus, tmp_path):
    from hf_vssl.data.loading import load_records
    from hf_vssl.data.video_io import encode_video

    root = tmp_path / "ucf101"
    shutil.copytree(tiny_corpus, root)
    first = load_records("ucf101", str(root), "train")[0]  # (no recorded lengths: the probe opens files)
    encode_video(
        torch.zeros(4, 3, 48, 48, dtype=torch.uint8), first.path, fps=25
    )  # 4 frames < an 8-frame clip
    base = [
        "--pretext_task",
        "rotnet",
        "--backbone",
        "r21d",
        "--width_multiplier",
        "0.125",
        "--num_frames",
        "8",
        "--image_size",
        "32",
        "--per_device_train_batch_size",
        "4",
        "--dataloader_num_workers",
        "0",
        "--report_to",
        "none",
        "--max_steps",
        "1",
        "--dataset",
        "ucf101",
        "--dataset_root",
        str(root),
    ]
    with pytest.raises(ValueError, match="--short_video refuse"):
        run_pretraining(
            parse_args(
                PretrainingArguments,
                [*base, "--short_video", "refuse", "--output_dir", str(tmp_path / "refused")],
            )
        )
    out = run_pretraining(parse_args(PretrainingArguments, [*base, "--output_dir", str(tmp_path / "skip")]))
    assert (out / "model.safetensors").is_file()


def test_robustness_reports_skipped_videos_and_refuses_a_mismatched_config(ucf_copy, tmp_path):
    from hf_vssl.analysis.robustness import RobustnessArguments, run_robustness

    folder = tmp_path / "classifier"
    _tiny_classifier().save_pretrained(folder)
    broken = _records(ucf_copy)[2]
    Path(broken.path).write_bytes(b"not a video")
    args = [
        "--model_name_or_path",
        str(folder),
        "--dataset",
        "ucf101",
        "--dataset_root",
        str(ucf_copy),
        "--noises",
        "gaussian",
        "--severities",
        "1",
        "--eval_clips",
        "1",
        "--max_bad_fraction",
        "0.5",
        "--per_device_eval_batch_size",
        "4",
        "--output_dir",
        str(tmp_path / "out"),
    ]
    out = run_robustness(parse_args(RobustnessArguments, args))
    report = json.loads((out / "robustness.json").read_text())
    assert report["dataset_split"] == "test"
    assert [v["video_id"] for v in report["skipped_videos"]] == [broken.video_id]
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "width_multiplier": 0.25}))
    with pytest.raises(ValueError, match=r"do not match its config\.json"):
        run_robustness(parse_args(RobustnessArguments, args))


@pytest.mark.slow
def test_two_ranks_score_each_video_once_and_agree_with_one(ucf_copy, tmp_path):
    records = _records(ucf_copy)
    count = len(records) - 1 if len(records) % 2 == 0 else len(records)  # odd: the sampler pads a duplicate
    Path(records[1].path).write_bytes(b"not a video")
    folder = tmp_path / "classifier"
    model = _tiny_classifier()
    model.save_pretrained(folder)
    alone = evaluate_classifier(
        model, build_eval_dataset(records[:count], 8, 32, num_clips=1, max_bad_fraction=0.5)
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    out = tmp_path / "two_ranks.json"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
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
        str(port),
        str(repo / "tests" / "_dist_evaluate.py"),
        str(out),
        str(folder),
        str(ucf_copy),
        str(count),
    ]
    result = subprocess.run(
        command, check=False, env=env, cwd=repo, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    both = json.loads(out.read_text())
    assert both["num_videos"] == alone.num_videos == count - 1
    assert [e["index"] for e in both["skipped"]] == [e["index"] for e in alone.skipped_videos] == [1]
    torch.testing.assert_close(torch.tensor(both["scores"]), alone.video_scores, rtol=1e-4, atol=1e-5)


def test_training_loop_checks_the_bad_video_tolerance_at_every_epoch_end(tiny_corpus, tmp_path, monkeypatch):
    from hf_vssl.training import loop

    seen = []
    monkeypatch.setattr(
        loop, "check_bad_videos", lambda dataset, accelerator: seen.append(type(dataset).__name__)
    )
    at = SCRATCH.index("--max_steps")
    args = SCRATCH[:at] + SCRATCH[at + 2 :]
    run_finetuning(
        parse_args(
            FinetuningArguments,
            [
                *args,
                "--dataset_root",
                str(tiny_corpus),
                "--subset_size",
                "8",
                "--num_train_epochs",
                "2",
                "--output_dir",
                str(tmp_path / "run"),
            ],
        )
    )
    assert seen == ["VideoClipDataset"] * 2  # after epoch 0, and after the last one (the run's end)
