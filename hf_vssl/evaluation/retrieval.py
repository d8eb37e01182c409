"""Nearest-neighbour video retrieval, the protocol of VCOP / PRP.

Every test video queries the training videos: features (the backbone's pooled output, averaged
over several clips per video) are L2-normalised, neighbours ranked by cosine similarity, and
top-k counts a hit when any of the k nearest training videos shares the query's class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .classification import extract_features

__all__ = ["DEFAULT_KS", "evaluate_retrieval", "retrieval_topk"]

DEFAULT_KS = (1, 5, 10, 20)


def retrieval_topk(
    query_features: torch.Tensor,
    query_labels: torch.Tensor,
    gallery_features: torch.Tensor,
    gallery_labels: torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """``{"top1": .., "top5": .., ...}``: fraction of queries with a same-class video among their k nearest.

    Args:
        query_features: ``(Q, D)`` test-video features.
        query_labels: ``(Q,)`` their classes.
        gallery_features: ``(G, D)`` training-video features.
        gallery_labels: ``(G,)`` their classes.
        ks: the k values; a k beyond ``G`` uses the whole gallery.

    The values are non-decreasing in k and lie in [0, 1]. Ties in similarity keep the gallery
    order (stable sort), so results are deterministic.
    """
    query, gallery = torch.as_tensor(query_features).float(), torch.as_tensor(gallery_features).float()
    query_labels, gallery_labels = torch.as_tensor(query_labels), torch.as_tensor(gallery_labels)
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"features must be (Q, D) and (G, D) with the same D, got {tuple(query.shape)} and "
            f"{tuple(gallery.shape)}"
        )
    if len(query) != len(query_labels) or len(gallery) != len(gallery_labels):
        raise ValueError("each feature row needs one label")
    if len(query) == 0 or len(gallery) == 0:
        raise ValueError(f"retrieval needs queries and a gallery, got {len(query)} and {len(gallery)}")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must be integers >= 1, got {ks!r}")
    similarity = torch.nn.functional.normalize(query, dim=1) @ torch.nn.functional.normalize(gallery, dim=1).T
    depth = min(max(int(k) for k in ks), len(gallery))
    ranked = similarity.argsort(dim=1, descending=True, stable=True)[:, :depth]
    matches = gallery_labels[ranked] == query_labels[:, None]  # (Q, depth)
    first_hit = matches.cummax(dim=1).values  # hit within the first j+1 neighbours
    return {f"top{int(k)}": float(first_hit[:, min(int(k), depth) - 1].float().mean()) for k in ks}


def evaluate_retrieval(
    backbone: torch.nn.Module,
    train_dataset,
    test_dataset,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 8,
    num_workers: int = 0,
    accelerator=None,
    return_skipped: bool = False,
) -> dict[str, float] | tuple[dict[str, float], dict[str, list[dict]]]:
    """Extract features of both splits with ``backbone`` (a ``VSSLModel``) and score test -> train retrieval.

    The datasets come from :func:`hf_vssl.evaluation.build_eval_dataset` (several
    uniform clips per video, center crop), the same code path as classification testing. With
    ``return_skipped`` also ``{"gallery": [...], "query": [...]}``: the videos left out of each.
    """
    common = {
        "batch_size": batch_size,
        "num_workers": num_workers,
        "accelerator": accelerator,
        "return_skipped": True,
    }
    gallery, gallery_labels, gallery_skipped = extract_features(
        backbone, train_dataset, desc="retrieval: train features", **common
    )
    query, query_labels, query_skipped = extract_features(
        backbone, test_dataset, desc="retrieval: test features", **common
    )
    scores = retrieval_topk(query, query_labels, gallery, gallery_labels, ks)
    return (scores, {"gallery": gallery_skipped, "query": query_skipped}) if return_skipped else scores
