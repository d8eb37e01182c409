"""Top-k accuracy as an ``evaluate`` metric, loaded by path (no network):

    >>> from hf_vssl.metrics import load_metric
    >>> metric = load_metric("topk_accuracy")
    >>> metric.compute(predictions=[[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]], references=[1, 2], k=[1, 2])
    {'top1': 0.5, 'top2': 1.0}

This file is self-contained (evaluate copies it into its modules cache and imports it there).
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Top-k accuracy: the fraction of examples whose reference class is among the k highest-scoring
classes of the prediction. Predictions are per-class scores (logits, probabilities or any
monotone score); ties are broken towards the lower class index, as ``numpy.argsort`` does.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): one row of per-class scores per example, all rows
        of the same length (the number of classes).
    references (`list` of `int`): the true class index of each example.
    k (`int` or `list` of `int`, defaults to `[1, 5]`): the k values to report. A k larger than
        the number of classes counts every class (accuracy 1.0).
Returns:
    `dict`: `{"top1": float, "top5": float, ...}`, fractions in [0, 1].
Examples:
    >>> metric.compute(predictions=[[0.1, 0.9], [0.8, 0.2]], references=[1, 1], k=1)
    {'top1': 0.5}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopkAccuracy(evaluate.Metric):
    """Top-k accuracy over per-class scores."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, k=(1, 5)):
        ks = [k] if isinstance(k, (int, np.integer)) else list(k)
        if not ks or any(int(value) < 1 for value in ks):
            raise ValueError(f"k must be one or more integers >= 1, got {k!r}")
        scores = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references, dtype=np.int64)
        if scores.ndim != 2 or len(scores) != len(labels):
            raise ValueError(
                f"predictions must be (num_examples, num_classes) scores matching {len(labels)} references, "
                f"got shape {scores.shape}"
            )
        if len(labels) == 0:
            raise ValueError("top-k accuracy of zero examples is undefined")
        num_classes = scores.shape[1]
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(
                f"references must be class indices in [0, {num_classes}), got {labels.min()}..{labels.max()}"
            )
        # Rank of the true class = number of classes scoring strictly higher (+ ties before it).
        true_scores = scores[np.arange(len(labels)), labels][:, None]
        higher = (scores > true_scores).sum(axis=1)
        ties_before = ((scores == true_scores) & (np.arange(num_classes)[None, :] < labels[:, None])).sum(
            axis=1
        )
        rank = higher + ties_before
        return {f"top{int(value)}": float((rank < int(value)).mean()) for value in ks}
