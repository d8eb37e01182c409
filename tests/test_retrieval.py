"""Nearest-neighbour retrieval: a hand-made case with a known answer, invariances, and the real path."""

from __future__ import annotations

import pytest
import torch

from hf_vssl.data import load_source
from hf_vssl.evaluation import build_eval_dataset, extract_features
from hf_vssl.evaluation.retrieval import evaluate_retrieval, retrieval_topk
from hf_vssl.models import VSSLConfig, VSSLModel


def _unit(angle_degrees: float) -> list[float]:
    angle = torch.deg2rad(torch.tensor(angle_degrees))
    return [float(torch.cos(angle)), float(torch.sin(angle))]


def test_hand_made_features_give_the_known_answer():
    # Gallery on the unit circle; classes A=0 at 0/10 deg, B=1 at 90/100 deg, C=2 at 180 deg.
    gallery = torch.tensor([_unit(0), _unit(10), _unit(90), _unit(100), _unit(180)])
    gallery_labels = torch.tensor([0, 0, 1, 1, 2])
    queries = torch.tensor(
        [
            _unit(5),  # class 0: nearest are 0 and 10 deg -> top-1 hit
            _unit(
                92
            ),  # class 2: nearest 90, 100 (B), then 10 (A, 82 deg away), then 180 (C, 88 deg) at rank 4
            _unit(170),  # class 1: 180 (C) first, then 100 (B) -> hit at rank 2
        ]
    )
    query_labels = torch.tensor([0, 2, 1])
    # Scaling a feature must not matter (cosine similarity on L2-normalised features).
    scaled = queries * torch.tensor([[3.0], [0.5], [10.0]])
    for q in (queries, scaled):
        result = retrieval_topk(q, query_labels, gallery, gallery_labels, ks=(1, 2, 3, 4, 5))
        assert result == {
            "top1": pytest.approx(1 / 3),
            "top2": pytest.approx(2 / 3),
            "top3": pytest.approx(2 / 3),
            "top4": pytest.approx(1.0),
            "top5": pytest.approx(1.0),
        }


def test_values_are_monotone_and_in_range_on_random_features():
    generator = torch.Generator().manual_seed(0)
    gallery, query = torch.randn(40, 16, generator=generator), torch.randn(25, 16, generator=generator)
    labels_g, labels_q = (
        torch.randint(0, 6, (40,), generator=generator),
        torch.randint(0, 6, (25,), generator=generator),
    )
    result = retrieval_topk(query, labels_q, gallery, labels_g)  # k beyond 40 is not reached; 20 < 40
    values = [result[f"top{k}"] for k in (1, 5, 10, 20)]
    assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values)
    # A query identical to a gallery item of its class always hits at top-1.
    assert retrieval_topk(gallery[:5], labels_g[:5], gallery, labels_g, ks=(1,)) == {"top1": 1.0}
    # k beyond the gallery size uses the whole gallery: a hit iff the class exists there at all.
    assert retrieval_topk(query[:1], torch.tensor([99]), gallery, labels_g, ks=(100,)) == {"top100": 0.0}


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="same D"):
        retrieval_topk(torch.zeros(2, 3), torch.zeros(2), torch.zeros(4, 5), torch.zeros(4))
    with pytest.raises(ValueError, match="queries and a gallery"):
        retrieval_topk(torch.zeros(0, 3), torch.zeros(0), torch.zeros(4, 3), torch.zeros(4))


def test_retrieval_through_the_evaluation_path(tiny_corpus):
    train = load_source("synthetic", tiny_corpus, "train", 1)
    test = load_source("synthetic", tiny_corpus, "test", 1)
    model = VSSLModel(VSSLConfig(backbone="r21d", width_multiplier=0.125, num_frames=8, image_size=32))
    train_set = build_eval_dataset(train, 8, 32, num_clips=2)
    test_set = build_eval_dataset(test, 8, 32, num_clips=2)
    features, labels = extract_features(model, test_set, batch_size=4)
    assert features.shape == (len(test), model.num_features) and labels.tolist() == [r.label for r in test]
    again, _ = extract_features(model, test_set, batch_size=3)  # other batching, same features
    torch.testing.assert_close(again, features)
    result = evaluate_retrieval(model, train_set, test_set, batch_size=4)
    values = [result[f"top{k}"] for k in (1, 5, 10, 20)]
    assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values)
    assert values[-1] == 1.0  # 20 of 24 training videos over 4 classes always include every class
