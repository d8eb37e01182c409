"""Relative decrease and relative robustness of accuracy under input noise, as an ``evaluate`` metric.

    >>> from hf_vssl.metrics import load_metric
    >>> metric = load_metric("relative_robustness")
    >>> metric.compute(clean_accuracy=[0.8, 0.8], noisy_accuracy=[0.6, 0.4])
    {'relative_decrease': 0.375, 'relative_robustness': 0.625}

Definitions (the video robustness benchmark): relative decrease = (A_clean - A_noisy) / A_clean,
relative robustness = 1 - relative decrease. This file is self-contained.
"""

from __future__ import annotations

import math

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Relative decrease (A_clean - A_noisy) / A_clean and relative robustness 1 - relative decrease,
averaged over the given (clean, noisy) accuracy pairs (e.g. the five severities of one noise).
"""

_KWARGS_DESCRIPTION = """
Args:
    clean_accuracy (`list` of `float`): accuracy on clean inputs, one per pair (non-zero).
    noisy_accuracy (`list` of `float`): accuracy on the noisy inputs of the same pair.
Returns:
    `dict`: `{"relative_decrease": float, "relative_robustness": float}`, means over the pairs.
Examples:
    >>> metric.compute(clean_accuracy=[0.5], noisy_accuracy=[0.25])
    {'relative_decrease': 0.5, 'relative_robustness': 0.5}
"""

_CITATION = """
@article{schiappa2022robustness,
  title={Large-scale Robustness Analysis of Video Action Recognition Models},
  author={Schiappa, Madeline C. and Biyani, Naman and Kamtam, Prudvi and Vyas, Shruti and Palangi, Hamid
          and Vineet, Vibhav and Rawat, Yogesh S.},
  journal={arXiv preprint arXiv:2207.01398},
  year={2022}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RelativeRobustness(evaluate.Metric):
    """Mean relative decrease / relative robustness over (clean, noisy) accuracy pairs."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"clean_accuracy": datasets.Value("float64"), "noisy_accuracy": datasets.Value("float64")}
            ),
        )

    def _compute(self, clean_accuracy, noisy_accuracy):
        clean = np.asarray(clean_accuracy, dtype=np.float64)
        noisy = np.asarray(noisy_accuracy, dtype=np.float64)
        if len(clean) == 0:
            raise ValueError("relative robustness needs at least one (clean, noisy) pair")
        if not all(math.isfinite(value) and value != 0 for value in clean):
            raise ValueError(
                f"relative decrease needs finite, non-zero clean accuracies, got {clean.tolist()}"
            )
        decrease = (clean - noisy) / clean
        return {
            "relative_decrease": float(decrease.mean()),
            "relative_robustness": float((1.0 - decrease).mean()),
        }
