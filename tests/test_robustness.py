"""Robustness report: every cell present, severity 0 = clean through the noise path, deterministic, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hf_vssl.analysis.robustness import (
    RobustnessArguments,
    build_report,
    report_markdown,
    run_robustness,
)
from hf_vssl.data import load_source
from hf_vssl.data.noise import NoiseTransform
from hf_vssl.data.transforms import build_transform
from hf_vssl.evaluation import MultiCropTransform, build_eval_dataset, evaluate_classifier
from hf_vssl.models import VSSLConfig, VSSLForVideoClassification, VSSLModel, VSSLVideoProcessor
from hf_vssl.training.arguments import parse_args

NOISES = ["gaussian", "reversal"]  # one pixel noise, one temporal perturbation
SEVERITIES = [1, 3]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    """A tiny classification checkpoint as recipes/finetune.py leaves it (weights, processor, metrics.json)."""
    torch.manual_seed(0)
    config = VSSLConfig(
        backbone="r21d",
        width_multiplier=0.125,
        num_frames=8,
        image_size=32,
        num_labels=4,
        id2label={0: "move_left", 1: "move_right", 2: "move_up", 3: "move_down"},
    )
    path = tmp_path_factory.mktemp("classifier")
    VSSLForVideoClassification(config).save_pretrained(path)
    VSSLVideoProcessor.for_clip(8, 32).save_pretrained(path)
    (path / "metrics.json").write_text(
        json.dumps(
            {
                "task": "video-classification",
                "dataset": "synthetic",
                "dataset_split": "test",
                "fold": 1,
                "label_set": "motion",
                "evaluation": {"num_clips": 2, "num_crops": 1},
            }
        )
    )
    return path


def _run(classifier: Path, corpus: Path, output: Path) -> dict:
    args = parse_args(
        RobustnessArguments,
        [
            "--model_name_or_path",
            str(classifier),
            "--dataset_root",
            str(corpus),
            "--output_dir",
            str(output),
            "--noises",
            *NOISES,
            "--severities",
            *map(str, SEVERITIES),
            "--seed",
            "3",
            "--per_device_eval_batch_size",
            "4",
        ],
    )
    out = run_robustness(args)
    return json.loads((out / "robustness.json").read_text())


def test_report_contents_are_complete_and_deterministic(classifier, tiny_corpus, tmp_path):
    report = _run(classifier, tiny_corpus, tmp_path / "a")
    assert report["dataset"] == "synthetic" and report["preset"] == "video-p"
    assert report["num_clips"] == 2, "evaluation settings come from the checkpoint's metrics.json"
    cells = {(c["noise"], c["severity"]): c for c in report["cells"]}
    assert set(cells) == {(n, s) for n in NOISES for s in [0, *SEVERITIES]}
    clean = report["clean_top1"]
    assert 0.0 < clean <= 1.0
    for (_noise, severity), cell in cells.items():
        assert 0.0 <= cell["top1"] <= 1.0
        assert cell["relative_decrease"] == pytest.approx((clean - cell["top1"]) / clean)
        assert cell["relative_robustness"] == pytest.approx(cell["top1"] / clean)
        if severity == 0:
            assert cell["top1"] == clean and cell["relative_decrease"] == 0.0
    for noise in NOISES:
        average = report["average"][noise]
        assert average["top1"] == pytest.approx(
            sum(cells[(noise, s)]["top1"] for s in SEVERITIES) / len(SEVERITIES)
        )
        assert average["relative_robustness"] == pytest.approx(average["top1"] / clean)
    markdown = (tmp_path / "a" / "robustness.md").read_text()
    assert all(f"| {noise} |" in markdown for noise in NOISES) and "clean" in markdown
    assert (tmp_path / "a" / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A second run gives identical numbers.
    assert _run(classifier, tiny_corpus, tmp_path / "b") == report


def test_severity_zero_through_the_noise_path_equals_clean(classifier, tiny_corpus):
    model = VSSLForVideoClassification.from_pretrained(classifier)
    records = load_source("synthetic", tiny_corpus, "test", 1)

    def evaluate(noise):
        dataset = build_eval_dataset(records, 8, 32, num_clips=2, noise=noise, seed=3)
        return evaluate_classifier(model, dataset, batch_size=4)

    clean = evaluate(None)
    for kind in ("gaussian", "speckle", "jumbled"):
        zero = evaluate(NoiseTransform(kind, 0, seed=3))
        assert torch.equal(zero.video_scores, clean.video_scores) and zero.results() == clean.results()
    noisy = evaluate(NoiseTransform("gaussian", 5, seed=3))
    assert not torch.equal(noisy.video_scores, clean.video_scores), "severity 5 must change the inputs"
    # Video-level scores are the mean softmax over the views; clip-level counts every view.
    assert clean.num_views == 2 and clean.video_scores.sum(-1).allclose(torch.ones(len(records)))


def test_build_report_and_markdown_from_known_numbers():
    report = build_report(0.8, {("shot", 1): 0.6, ("shot", 2): 0.4}, dataset="ucf101", preset="imagenet-c")
    assert report["average"]["shot"] == {
        "top1": pytest.approx(0.5),
        "relative_decrease": pytest.approx(0.375),
        "relative_robustness": pytest.approx(0.625),
    }
    assert [(c["severity"], c["top1"]) for c in report["cells"]] == [(0, 0.8), (1, 0.6), (2, 0.4)]
    table = report_markdown(report)
    assert "| shot | 80.0 | 60.0 | 40.0 | 50.0 | 0.625 |" in table
    undefined = build_report(0.0, {("shot", 1): 0.0}, dataset="x", preset="video-p")
    assert undefined["average"]["shot"]["relative_decrease"] is None


def test_three_crops_include_the_center_crop_of_the_eval_transform():
    video = torch.randint(0, 256, (4, 3, 40, 60), dtype=torch.uint8)
    crops = MultiCropTransform(32, num_crops=3)(video)
    assert crops.shape == (3, 4, 3, 32, 32)
    torch.testing.assert_close(crops[1], build_transform("eval", 32, train=False)(video))
    assert not torch.equal(crops[0], crops[2])


def test_refuses_a_checkpoint_without_classifier_and_unknown_noise(tiny_corpus, tmp_path):
    VSSLModel(
        VSSLConfig(backbone="r21d", width_multiplier=0.125, num_frames=8, image_size=32)
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="finetuned classifier"):
        run_robustness(
            parse_args(
                RobustnessArguments,
                ["--model_name_or_path", str(tmp_path), "--dataset_root", str(tiny_corpus)],
            )
        )
    with pytest.raises(ValueError, match="unknown noise kind"):
        run_robustness(
            parse_args(RobustnessArguments, ["--model_name_or_path", str(tmp_path), "--noises", "fog"])
        )
