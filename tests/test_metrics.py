"""The shipped evaluate metrics: load offline by path, compute known values, refuse bad input."""

from __future__ import annotations

import evaluate
import numpy as np
import pytest

from hf_vssl.metrics import METRIC_NAMES, load_metric, metric_path


@pytest.fixture(scope="module")
def topk():
    return load_metric("topk_accuracy")


def test_every_metric_loads_by_path_with_evaluate_load():
    for name in METRIC_NAMES:
        metric = evaluate.load(str(metric_path(name)))  # plain evaluate.load, no Hub (tests run offline)
        assert isinstance(metric, evaluate.Metric)
    with pytest.raises(ValueError, match="unknown hf_vssl metric"):
        metric_path("accuracy")


def test_topk_accuracy_known_values(topk):
    scores = [
        [0.1, 0.7, 0.2, 0.0],  # label 1: rank 0
        [0.5, 0.1, 0.4, 0.0],  # label 2: rank 1
        [0.4, 0.3, 0.2, 0.1],  # label 3: rank 3
        [0.9, 0.05, 0.03, 0.02],  # label 0: rank 0
    ]
    result = topk.compute(predictions=scores, references=[1, 2, 3, 0], k=[1, 2, 3, 4, 5])
    assert result == {"top1": 0.5, "top2": 0.75, "top3": 0.75, "top4": 1.0, "top5": 1.0}
    # Logits work as well as probabilities (only the order matters).
    logits = np.log(np.asarray(scores) + 1e-6)
    assert topk.compute(predictions=logits, references=[1, 2, 3, 0], k=1) == {"top1": 0.5}


def test_topk_accuracy_ties_are_not_counted_as_hits(topk):
    # All classes tie: the true class ranks by its index, so a constant model gets no free top-1.
    result = topk.compute(predictions=[[0.0, 0.0, 0.0]] * 3, references=[0, 1, 2], k=[1, 2])
    assert result == {"top1": pytest.approx(1 / 3), "top2": pytest.approx(2 / 3)}


def test_topk_accuracy_rejects_bad_input(topk):
    with pytest.raises(ValueError, match="class indices"):
        topk.compute(predictions=[[0.2, 0.8]], references=[2], k=1)
    with pytest.raises(ValueError, match="k must be"):
        topk.compute(predictions=[[0.2, 0.8]], references=[1], k=[0])


def test_relative_robustness_known_values():
    metric = load_metric("relative_robustness")
    assert metric.compute(clean_accuracy=[0.8], noisy_accuracy=[0.6]) == {
        "relative_decrease": pytest.approx(0.25), "relative_robustness": pytest.approx(0.75)}
    # docs/study_settings.md#noise: R21D RSPNet clean 78.0, Gaussian severity 1 16.7.
    result = metric.compute(clean_accuracy=[0.780, 0.780], noisy_accuracy=[0.167, 0.780])
    assert result["relative_decrease"] == pytest.approx((0.613 / 0.780 + 0.0) / 2)
    assert result["relative_robustness"] == pytest.approx(1 - result["relative_decrease"])
    with pytest.raises(ValueError, match="non-zero clean"):
        metric.compute(clean_accuracy=[0.0], noisy_accuracy=[0.0])
