"""Every source parses the synthetic corpus in its official layout; bad annotations are reported."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import pytest
from torchcodec.decoders import VideoDecoder

from hf_vssl.data.sources import SOURCES, UnlabelledSplitError, default_eval_split, list_sources, load_source
from hf_vssl.data.synthetic import LAYOUTS, make_synthetic_dataset, read_metadata

SMALL = {
    "seed": 1,
    "num_classes": 3,
    "videos_per_class": 4,
    "clips_per_group": 2,
    "num_frames": 16,
    "size": (32, 32),
    "num_workers": 1,
}
# split -> videos in the synthetic corpus above (3 classes x 2 groups of 2; fold 1 holds out group 1)
EXPECTED = {
    "ucf101": {"train": 6, "test": 6},
    "hmdb51": {"train": 6, "test": 6},
    "kinetics400": {"train": 6, "val": 6, "test": 6},
    "ssv2": {"train": 6, "val": 6, "test": 6},
    "diving48": {"train": 6, "test": 6},
    "videofolder": {"train": 6, "test": 6},
}
NAMES = {
    "ucf101": ["MoveLeft", "MoveRight", "MoveUp"],
    "hmdb51": ["move_left", "move_right", "move_up"],
    "kinetics400": ["move left", "move right", "move up"],
    "ssv2": [
        "Moving something from right to left",
        "Moving something from left to right",
        "Moving something up",
    ],
    "diving48": ["move_left", "move_right", "move_up"],
    "videofolder": ["move_left", "move_right", "move_up"],
}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpora")
    return {layout: make_synthetic_dataset(base / layout, layout, **SMALL) for layout in LAYOUTS}


@pytest.fixture
def copy_of(corpora, tmp_path):
    def _copy(layout):
        return shutil.copytree(corpora[layout], tmp_path / layout)

    return _copy


def test_registry():
    assert list_sources() == sorted(
        ["ucf101", "hmdb51", "kinetics400", "ssv2", "diving48", "videofolder", "synthetic"]
    )
    with pytest.raises(ValueError, match="unknown source 'ucf'"):
        load_source("ucf", ".")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_source_parses_its_layout(corpora, layout):
    root = corpora[layout]
    seen = {}
    for split, count in EXPECTED[layout].items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a clean layout reports nothing
            records = load_source(layout, root, split)
        assert len(records) == count, split
        assert all(r.split == split and r.source == layout for r in records)
        assert all(Path(r.path).is_file() for r in records)
        seen[split] = {r.video_id for r in records}
        labelled = [r for r in records if r.label >= 0]
        if not labelled:  # Kinetics / SSv2 test lists carry no labels, as the originals
            assert split == "test" and all(r.label == -1 and r.label_name == "" for r in records)
            continue
        names = {r.label: r.label_name for r in labelled}
        assert sorted(names.values()) == sorted(NAMES[layout])
        assert len(set(names.values())) == len(names)  # one name per id
        if layout in ("ucf101", "diving48", "ssv2"):  # official index order = the corpus class order
            assert [names[i] for i in range(3)] == NAMES[layout]
        else:  # sorted class names
            assert [names[i] for i in range(3)] == sorted(NAMES[layout])
    assert not seen["train"] & seen[next(s for s in seen if s != "train")]
    decoder = VideoDecoder(records[0].path)
    clip = decoder.get_frames_at([0, 4, 8, 12]).data
    assert decoder.metadata.num_frames == 16 and tuple(clip.shape) == (4, 3, 32, 32)


@pytest.mark.parametrize("layout", ["ucf101", "hmdb51"])
def test_three_folds_partition_by_group(corpora, layout):
    everything = set()
    for fold in (1, 2, 3):
        train = load_source(layout, corpora[layout], "train", fold)
        test = load_source(layout, corpora[layout], "test", fold)
        assert len(train) + len(test) == 12
        groups = [{(r.label, r.video_id.rsplit("_c", 1)[0]) for r in records} for records in (train, test)]
        assert not groups[0] & groups[1]
        everything |= {r.video_id for r in test}
    assert len(everything) == 12  # every group is held out in some fold


@pytest.mark.parametrize("layout", ["ucf101", "kinetics400", "ssv2"])
def test_synthetic_source_serves_both_label_sets(corpora, layout):
    motion = load_source("synthetic", corpora[layout], "train")
    appearance = load_source("synthetic", corpora[layout], "train", label_set="appearance")
    assert [r.path for r in motion] == [r.path for r in appearance]
    assert {r.label_name for r in motion} == {"move_left", "move_right", "move_up"}
    assert all(r.label_name == r.extra["appearance"] for r in appearance)
    assert len({r.label for r in appearance}) > 3
    assert len(load_source("synthetic", corpora[layout], "val")) == 6  # the held-out part
    with pytest.raises(ValueError, match="label_set"):
        load_source("synthetic", corpora[layout], label_set="colour")


def test_synthetic_source_folds_follow_the_layout(corpora):
    meta = read_metadata(corpora["ucf101"])
    for fold in (1, 2, 3):
        official = {r.video_id for r in load_source("ucf101", corpora["ucf101"], "test", fold)}
        assert official == {r.video_id for r in load_source("synthetic", corpora["ucf101"], "test", fold)}
    assert meta["folds"] == [1, 2, 3]
    with pytest.raises(ValueError, match="folds"):
        load_source("synthetic", corpora["kinetics400"], "train", fold=2)


# ---- bad annotations: reported with file, line and reason; the entry is skipped -------------


def _append(path, text):
    with open(path, "a", newline="") as handle:
        handle.write(text)


def _bad_ucf(root):
    lists = root / "ucfTrainTestlist/trainlist01.txt"
    n = len(lists.read_text().splitlines())
    _append(lists, "MoveLeft/v_MoveLeft_g99_c01.avi 1\r\nNoSuchClass/v_x.avi 4\r\ngarbage line here\r\n")
    return lists, {n + 1: "not found", n + 2: "unknown class", n + 3: "expected"}, 6


def _bad_hmdb(root):
    split = root / "testTrainMulti_7030_splits/move_left_test_split1.txt"
    n = len(split.read_text().splitlines())
    _append(split, "ghost.avi 1 \nsynthetic_move_left_g01_c01.avi 7 \n")
    return split, {n + 1: "not found", n + 2: "expected"}, 6


def _bad_kinetics(root):
    path = root / "train.csv"
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    with open(path, "a", newline="") as handle:
        csv.writer(handle).writerows(
            [
                ["move left", "AAAAAAAAAAA", "0", "10", "train"],
                ["move left", rows[1][1], "zero", "10", "train"],
            ]
        )
    # an unknown label shows up in the validation CSV (train.csv defines the labels)
    val = root / "validate.csv"
    with open(val, "a", newline="") as handle:
        csv.writer(handle).writerow(["juggling", rows[1][1], rows[1][2], rows[1][3], "val"])
    n = len(rows)
    return path, {n + 1: "not found", n + 2: "not numbers"}, 6


def _bad_ssv2(root):
    path = root / "labels/train.json"
    entries = json.loads(path.read_text())
    entries += [
        {"id": "999999", "label": "x", "template": "Moving [something] up", "placeholders": ["x"]},
        {"id": entries[0]["id"], "label": "x", "template": "Juggling [something]", "placeholders": ["x"]},
        {"label": "no id"},
    ]
    path.write_text(json.dumps(entries))
    return path, {7: "not found", 8: "unknown label", 9: "without an id"}, 6


def _bad_diving(root):
    path = root / "Diving48_V2_train.json"
    entries = json.loads(path.read_text())
    entries += [
        {"vid_name": "nope", "label": 0, "start_frame": 0, "end_frame": 5},
        {"vid_name": entries[0]["vid_name"], "label": 48, "start_frame": 0, "end_frame": 5},
    ]
    path.write_text(json.dumps(entries))
    return path, {7: "not found", 8: "vocabulary"}, 6


def _bad_videofolder(root):
    stray = root / "train" / "stray.mp4"
    shutil.copy(next((root / "train" / "move_left").iterdir()), stray)
    (root / "train" / "move_left" / "notes.txt").write_text("not a video")
    return stray, {None: "outside any class folder"}, 6


@pytest.mark.parametrize(
    "layout, corrupt",
    [
        ("ucf101", _bad_ucf),
        ("hmdb51", _bad_hmdb),
        ("kinetics400", _bad_kinetics),
        ("ssv2", _bad_ssv2),
        ("diving48", _bad_diving),
        ("videofolder", _bad_videofolder),
    ],
)
def test_bad_annotations_are_reported_and_skipped(copy_of, layout, corrupt):
    root = copy_of(layout)
    bad_file, expected, kept = corrupt(root)
    with pytest.warns(UserWarning, match=f"skipped {len(expected)} annotation entries"):
        records = load_source(layout, root, "train")
    assert len(records) == kept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = load_source(layout, root, "train", return_report=True)
    assert report.records == records
    assert {p.line: p.file for p in report.problems} == {line: str(bad_file) for line in expected}
    for problem in report.problems:
        assert expected[problem.line] in problem.reason
        assert str(bad_file) in str(problem)
    if layout == "kinetics400":
        with pytest.warns(UserWarning, match="juggling"):
            val = load_source("kinetics400", root, "validate", return_report=True)
        assert len(val.records) == 6 and "unknown label 'juggling'" in val.problems[0].reason


def test_kinetics_flat_mirror(copy_of):
    root = copy_of("kinetics400")
    flat = root / "flat"
    flat.mkdir()
    for video in list(root.glob("train/*/*.mp4")):
        video.rename(flat / video.name)
    shutil.rmtree(root / "train")
    records = load_source("kinetics400", root, "train")
    assert len(records) == 6 and all(r.path.startswith(str(flat)) for r in records)
    assert records[0].extra["time_end"] - records[0].extra["time_start"] == 10


# ---- errors in what was asked for ------------------------------------------------------------


@pytest.mark.parametrize(
    "layout, missing, pattern",
    [
        ("ucf101", "ucfTrainTestlist/testlist01.txt", "testlist01.txt"),
        ("ucf101", "ucfTrainTestlist/classInd.txt", "classInd.txt"),
        ("hmdb51", "testTrainMulti_7030_splits", "testTrainMulti_7030_splits"),
        ("kinetics400", "validate.csv", "validate.csv"),
        ("ssv2", "labels/labels.json", "labels.json"),
        ("diving48", "Diving48_vocab.json", "Diving48_vocab.json"),
        ("synthetic", "synthetic_metadata.json", "synthetic_metadata.json"),
    ],
)
def test_missing_annotation_file_names_the_expected_path(copy_of, layout, missing, pattern):
    root = copy_of("ucf101" if layout == "synthetic" else layout)
    target = root / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError, match=pattern) as info:
        load_source(layout, root, "val" if layout == "kinetics400" else "test")
    assert str(root) in str(info.value)


def test_unknown_split_or_fold(corpora):
    with pytest.raises(ValueError, match="no split 'dev'"):
        load_source("ucf101", corpora["ucf101"], "dev")
    with pytest.raises(ValueError, match=r"folds \[1, 2, 3\], got 4"):
        load_source("hmdb51", corpora["hmdb51"], "train", fold=4)
    with pytest.raises(ValueError, match="fold must be 1"):
        load_source("ssv2", corpora["ssv2"], "train", fold=2)
    with pytest.raises(ValueError, match="found splits"):
        load_source("videofolder", corpora["videofolder"], "val")
    with pytest.raises(FileNotFoundError, match="root folder not found"):
        load_source("diving48", corpora["diving48"] / "nowhere")
    assert SOURCES["kinetics400"].canonical_split("validate") == "val"


def test_videofolder_flat_layout(copy_of):
    root = copy_of("videofolder")
    flat = root / "flat"
    shutil.move(str(root / "test"), str(flat))
    records = load_source("videofolder", flat, "test")
    assert len(records) == 6 and {r.label_name for r in records} == {"move_left", "move_right", "move_up"}


# ---- label spaces and the splits evaluation may use --------------------------------------------


@pytest.mark.parametrize("layout", sorted(NAMES))
def test_report_carries_the_whole_label_space(corpora, layout):
    report = load_source(layout, corpora[layout], "train", return_report=True)
    assert report.id2label() == dict(enumerate(NAMES[layout]))


def test_ucf101_label_space_is_classind_even_for_a_partial_copy(copy_of):
    # A partial copy (videos of some classes only) used to give max(seen label) + 1 outputs with
    # made-up names for the classes it did not see; the label space is classInd.txt's.
    root = copy_of("ucf101")
    lists = root / "ucfTrainTestlist"
    extra = [f"Action{i:03d}" for i in range(4, 102)]
    names = [*NAMES["ucf101"], *extra]
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {name}\n" for i, name in enumerate(names)))
    shutil.rmtree(root / "UCF-101" / "MoveRight")  # this copy lacks a class's videos
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the missing videos are reported, not the point here
        report = load_source("ucf101", root, "train", return_report=True)
    assert {r.label_name for r in report.records} == {"MoveLeft", "MoveUp"}
    id2label = report.id2label()
    assert len(id2label) == 101 and id2label[1] == "MoveRight" and id2label[40] == "Action041"
    assert id2label[100] == "Action101"


@pytest.mark.parametrize("layout", ["kinetics400", "ssv2"])
def test_unlabelled_test_split_is_refused_where_labels_are_needed(corpora, copy_of, layout):
    # Evaluating on the official (unlabelled) test split crashed finetuning after training and
    # gave retrieval a silent top-1 of 0.
    assert default_eval_split(layout) == "val" and SOURCES[layout].unlabelled_splits == ("test",)
    assert {r.label for r in load_source(layout, corpora[layout], "test")} == {-1}  # still listable
    with pytest.raises(
        UnlabelledSplitError,
        match=r"split 'test' of .* no labels for 6 of its 6 videos "
        r"\(the official list carries none\); evaluate on .*'val'",
    ):
        load_source(layout, corpora[layout], "test", require_labels=True)
    records = load_source(layout, corpora[layout], default_eval_split(layout), require_labels=True)
    assert len(records) == 6 and min(r.label for r in records) >= 0


def test_a_labelled_copy_of_an_officially_unlabelled_split_is_accepted(copy_of):
    root = copy_of("kinetics400")
    rows = (root / "validate.csv").read_text().replace(",val\n", ",test\n").replace(",val\r\n", ",test\r\n")
    (root / "test.csv").write_text(rows)
    records = load_source("kinetics400", root, "test", require_labels=True)
    assert len(records) == 6 and min(r.label for r in records) >= 0


@pytest.mark.parametrize("layout", ["ucf101", "hmdb51", "diving48", "videofolder"])
def test_held_out_test_split_is_the_evaluation_default_elsewhere(corpora, layout):
    assert default_eval_split(layout) == "test"
    assert len(load_source(layout, corpora[layout], "test", require_labels=True)) == EXPECTED[layout]["test"]
