"""Balanced, nested, deterministic subsets and their JSON round trip."""

from __future__ import annotations

import itertools
import json
import random
import warnings
from collections import Counter

import pytest

from hf_vssl.data.records import VideoRecord
from hf_vssl.data.subsets import balanced_subset, load_subset, save_subset, select_by_ids


def corpus(sizes=(40, 25, 60, 33, 47, 30, 52)):
    """Uneven classes, as in a real corpus; class c has sizes[c] videos."""
    return [
        VideoRecord(
            path=f"/data/c{c}/v{c}_{i:03d}.mp4", label=c, label_name=f"class{c}", video_id=f"v{c}_{i:03d}"
        )
        for c, n in enumerate(sizes)
        for i in range(n)
    ]


def counts(records):
    return Counter(r.label for r in records)


@pytest.mark.parametrize("size", [1, 7, 10, 30, 100, 175])
def test_balanced(size):
    subset = balanced_subset(corpus(), size, seed=3)
    assert len(subset) == size and len({r.video_id for r in subset}) == size
    per_class = [counts(subset).get(c, 0) for c in range(7)]
    assert max(per_class) - min(per_class) <= 1


def test_nested_across_sizes():
    records = corpus()
    sizes = [10, 30, 50, 100]
    subsets = [{r.video_id for r in balanced_subset(records, n, seed=5)} for n in sizes]
    for small, large in itertools.pairwise(subsets):
        assert small < large


def test_deterministic_and_independent_of_input_order():
    records = corpus()
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    a = balanced_subset(records, 50, seed=11)
    assert a == balanced_subset(records, 50, seed=11)
    assert a == balanced_subset(shuffled, 50, seed=11)


def test_different_seeds_differ():
    records = corpus()
    a = {r.video_id for r in balanced_subset(records, 50, seed=0)}
    b = {r.video_id for r in balanced_subset(records, 50, seed=1)}
    assert a != b


def test_classes_running_out_warn_and_keep_the_rest_balanced():
    records = corpus()  # the smallest class has 25 videos
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        balanced_subset(records, 7 * 25 + 6, seed=0)  # every class within one: no warning
    with pytest.warns(UserWarning, match="cannot be balanced"):
        subset = balanced_subset(records, 250, seed=0)
    sizes = counts(records)
    per_class = counts(subset)
    exhausted = {c for c in sizes if per_class[c] == sizes[c]}
    assert {1, 3, 5} <= exhausted  # classes of 25, 33, 30 videos gave everything they have
    left = [per_class[c] for c in sizes if c not in exhausted]
    assert len(left) >= 2 and max(left) - min(left) <= 1
    assert min(left) >= max(per_class[c] for c in exhausted)
    with pytest.warns(UserWarning):
        assert len(balanced_subset(records, len(records))) == len(records)


def test_errors():
    records = corpus()
    with pytest.raises(ValueError, match="larger than the corpus"):
        balanced_subset(records, len(records) + 1)
    with pytest.raises(ValueError, match="positive"):
        balanced_subset(records, 0)
    with pytest.raises(ValueError, match="unique"):
        balanced_subset(records + records[:1], 10)


def test_save_load_select_round_trip(tmp_path):
    records = corpus()
    subset = balanced_subset(records, 21, seed=2)
    path = save_subset(subset, tmp_path / "sub" / "k400_21.json", seed=2)
    payload = json.loads(path.read_text())
    assert payload["size"] == 21 and payload["seed"] == 2
    assert payload["class_counts"] == {f"class{c}": 3 for c in range(7)}
    ids = load_subset(path)
    assert ids == [r.video_id for r in subset]
    assert select_by_ids(list(reversed(records)), ids) == subset

    save_subset(ids, tmp_path / "ids.json")
    assert load_subset(tmp_path / "ids.json") == ids
    assert json.loads((tmp_path / "ids.json").read_text())["class_counts"] is None


def test_select_and_load_errors(tmp_path):
    records = corpus()
    with pytest.raises(KeyError, match="not_there"):
        select_by_ids(records, ["v0_000", "not_there"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"size": 3}))
    with pytest.raises(ValueError, match="not a subset file"):
        load_subset(bad)
    with pytest.raises(TypeError, match="mix"):
        save_subset([records[0], "v0_001"], tmp_path / "mixed.json")
