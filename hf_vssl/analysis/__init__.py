"""Representation analysis: CKA maps between layers and models.

``hf_vssl.analysis.cka`` holds the estimators, ``hf_vssl.analysis.capture`` the forward hooks
that feed them, and ``hf_vssl.analysis.plots`` the heatmap (imported on its own so that the CKA
code does not pull in matplotlib).
"""

from .capture import LayerGramCapture
from .cka import MinibatchCKA, cka_matrix, linear_cka, rbf_cka

__all__ = ["LayerGramCapture", "MinibatchCKA", "cka_matrix", "linear_cka", "rbf_cka"]
