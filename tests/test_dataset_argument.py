"""`--dataset` parsing and the manifest's named variants (nested subsets, noisy splits)."""

from __future__ import annotations

import json

import pytest

from hf_vssl.data.dataset_argument import parse_dataset_argument
from hf_vssl.data.shards.variants import noisy_split_name, published_noisy_split, subset_shards


def test_sources_shard_folders_and_hub_ids(tmp_path):
    assert parse_dataset_argument("UCF101", "/data/ucf").source == "ucf101"
    assert parse_dataset_argument("synthetic").root is None
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "hf_vssl.webdataset"}))
    local = parse_dataset_argument(str(tmp_path))
    assert local.is_shards and local.base == str(tmp_path)
    assert parse_dataset_argument("org/k400", revision="v2").base == "hf://datasets/org/k400@v2"
    assert parse_dataset_argument("hf://datasets/org/k400@v1").base == "hf://datasets/org/k400@v1"


@pytest.mark.parametrize(
    ("dataset", "root", "revision", "message"),
    [
        ("org/k400", "/data", None, "--dataset_root is for built-in sources"),
        ("ucf101", "/data", "v1", "--dataset_revision only applies"),
        ("not a dataset", None, None, "not a built-in source"),
    ],
)
def test_bad_dataset_arguments_are_one_line_errors(dataset, root, revision, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message) as error:
        parse_dataset_argument(dataset, root, revision)
    assert "\n" not in str(error.value)


def test_folder_without_manifest_points_to_dataset_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"--dataset_root {tmp_path}"):
        parse_dataset_argument(str(tmp_path))


MANIFEST = {
    "splits": {
        "train": {
            "num_videos": 10,
            "shards": [{"file": f"t-{i}.tar", "num_videos": n} for i, n in enumerate((2, 2, 4, 2))],
            "subsets": {"4": {"num_shards": 2, "num_videos": 4, "seed": 0}},
        },
        "test.gaussian.s3": {
            "num_videos": 2,
            "shards": [],
            "noise": {"kind": "gaussian", "severity": 3, "preset": "video-p", "seed": 0},
        },
    }
}


def test_nested_subsets_are_shard_prefixes():
    assert [s["file"] for s in subset_shards(MANIFEST, "train", 4, "x")] == ["t-0.tar", "t-1.tar"]
    assert len(subset_shards(MANIFEST, "train", None, "x")) == 4
    assert len(subset_shards(MANIFEST, "train", 10, "x")) == 4  # the whole split
    with pytest.raises(ValueError, match=r"no 6-video subset .*published sizes: 4\)"):
        subset_shards(MANIFEST, "train", 6, "org/k400")
    with pytest.raises(ValueError, match="no split 'val'"):
        subset_shards(MANIFEST, "val", None, "org/k400")


def test_published_noisy_split_needs_identical_settings():
    assert noisy_split_name("test", "gaussian", 3) == "test.gaussian.s3"
    assert published_noisy_split(MANIFEST, "test", "gaussian", 3, "video-p", 0) == "test.gaussian.s3"
    assert published_noisy_split(MANIFEST, "test", "gaussian", 3, "video-p", 1) is None  # other seed
    assert published_noisy_split(MANIFEST, "test", "shot", 3, "video-p", 0) is None
