"""Evaluation shared by training and analysis: the classification test, retrieval and robustness scoring.

- :mod:`~hf_vssl.evaluation.classification`: multi-clip x multi-crop test views, clip- and
  video-level top-k of a classifier, pooled features of a backbone;
- :mod:`~hf_vssl.evaluation.retrieval`: nearest-neighbour video retrieval on those features;
- :mod:`~hf_vssl.evaluation.robustness`: the classification test on noisy variants of a test set.
"""

from .classification import (
    EvaluationResult,
    MultiCropTransform,
    build_eval_dataset,
    check_bad_videos,
    evaluate_classifier,
    extract_features,
)
from .retrieval import DEFAULT_KS, evaluate_retrieval, retrieval_topk
from .robustness import build_report, check_noises, evaluate_robustness

__all__ = [
    "DEFAULT_KS",
    "EvaluationResult",
    "MultiCropTransform",
    "build_eval_dataset",
    "build_report",
    "check_bad_videos",
    "check_noises",
    "evaluate_classifier",
    "evaluate_retrieval",
    "evaluate_robustness",
    "extract_features",
    "retrieval_topk",
]
