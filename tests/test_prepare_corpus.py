"""Preparing a corpus: official layout -> shards with nested subsets, card, resume, skipped inputs, Hub."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from _local_hub import LocalHub

from hf_vssl.data.prepare import main as prepare_main
from hf_vssl.data.shards import noisy, read_manifest
from hf_vssl.data.shards.read import iter_tar
from hf_vssl.data.shards.variants import subset_shards
from hf_vssl.data.sources import load_source
from hf_vssl.data.subsets import balanced_subset

REPO = Path(__file__).resolve().parents[1]
SIZES = (4, 8, 12)
TOKEN = "hf_local_alice"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny synthetic corpus in the UCF101 layout (4 classes, 24 train / 8 test videos) with one
    train video cut short and one test video missing."""
    from hf_vssl.data.synthetic import make_synthetic_dataset

    root = make_synthetic_dataset(
        tmp_path_factory.mktemp("prepare") / "ucf101",
        layout="ucf101",
        num_classes=4,
        videos_per_class=8,
        clips_per_group=2,
        num_frames=32,
        size=(48, 48),
        num_workers=1,
    )
    train = load_source("synthetic", root, "train")
    test = load_source("synthetic", root, "test")
    corrupt = Path(train[5].path)
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 3])
    missing = Path(test[0].path)
    missing.unlink()
    return {
        "root": root,
        "corrupt": corrupt,
        "missing": missing,
        "train": [r for r in train if r.path != str(corrupt)],
    }


def _argv(corpus, out, *extra):
    return [
        "--dataset", "synthetic", "--dataset_root", str(corpus["root"]), "--output_dir", str(out),
        "--subset_sizes", *map(str, SIZES), "--shard_size", "3", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """An uninterrupted preparation, 2 worker processes."""
    out = tmp_path_factory.mktemp("reference") / "tiny"
    report = prepare_main(_argv(corpus, out, "--num_workers", "2"))
    return out, report


def _samples(out: Path, files) -> list[tuple[str, dict]]:
    return [(meta["video_id"], meta) for file in files for _, meta in iter_tar(out / file)]


def test_subsets_are_balanced_nested_shard_prefixes(corpus, reference):
    out, report = reference
    manifest = read_manifest(out)
    train = manifest["splits"]["train"]
    assert train["num_videos"] == 23 and manifest["splits"]["test"]["num_videos"] == 7
    assert report.subsets == {"train": {4: 4, 8: 8, 12: 12}} and report.shards_reused == 0
    previous: list[str] = []
    for size in SIZES:
        shards = subset_shards(manifest, "train", size, str(out))
        assert sum(shard["num_videos"] for shard in shards) == size  # a shard closed at the boundary
        ids = [video_id for video_id, _ in _samples(out, [s["file"] for s in shards])]
        # exactly the balanced subset of the readable videos, in dealing order, so nested
        assert ids == [r.video_id for r in balanced_subset(corpus["train"], size, seed=0)]
        assert ids[: len(previous)] == previous
        previous = ids
        counts = train["subsets"][str(size)]["class_counts"]
        assert max(counts.values()) - min(counts.values()) <= 1 and sum(counts.values()) == size
    everything = _samples(out, [s["file"] for s in train["shards"]])
    assert sorted(i for i, _ in everything) == sorted(r.video_id for r in corpus["train"])
    assert all(meta["container"] == "mp4" and meta["num_frames"] == 32 for _, meta in everything)


def test_skipped_inputs_are_reported_with_reasons(corpus, reference):
    out, report = reference
    manifest = read_manifest(out)
    by_stage = {item["stage"]: item for item in manifest["skipped"]}
    assert set(by_stage) == {"check", "annotation"}
    assert by_stage["check"]["path"].endswith(corpus["corrupt"].name) and by_stage["check"]["reason"]
    assert (
        "not found" in by_stage["annotation"]["reason"]
        and corpus["missing"].name in by_stage["annotation"]["reason"]
    )
    assert not any(os.path.isabs(item["path"]) for item in manifest["skipped"])  # no local paths published
    summary = report.summary()
    assert f"{by_stage['check']['path']}: {by_stage['check']['reason']}" in summary
    card = (out / "README.md").read_text()
    assert corpus["corrupt"].name in card and "2 inputs were left out" in card


def test_card_has_layout_counts_subsets_licence_and_command(reference):
    out, _ = reference
    text = (out / "README.md").read_text()
    front, body = text.split("---\n", 2)[1:]
    meta = yaml.safe_load(front)
    assert meta["license"] == "apache-2.0" and "video-classification" in meta["task_categories"]
    configs = {config["config_name"]: config["data_files"] for config in meta["configs"]}
    assert configs["default"] == [
        {"split": "train", "path": "synthetic-train-*.tar"},
        {"split": "test", "path": "synthetic-test-*.tar"},
    ]
    manifest = read_manifest(out)
    assert configs["subset_8"][0]["path"] == [s["file"] for s in subset_shards(manifest, "train", 8, "")]
    for row in ("| train | 23 |", "| train | 8 | 8 |", "| move_left |", "Apache-2.0"):
        assert row in body, row
    counts = manifest["splits"]["train"]["class_counts"]
    assert all(f"| {name} | {count} |" in body for name, count in counts.items())
    command = (
        "python -m hf_vssl.data.prepare --dataset synthetic --output_dir <output_dir> --dataset_root <dataset_root> "
        "--subset_sizes 4 8 12 --shard_size 3"
    )
    assert f"```bash\n{command}\n```" in body and manifest["prepare"]["command"] == command


def test_a_failed_preparation_resumes_where_it_stopped(corpus, reference, tmp_path, monkeypatch):
    """A run that fails at its fourth shard keeps three; the rerun writes only the others."""
    from hf_vssl.data.prepare import writing

    write, written = writing.write_planned_shard, []

    def failing(task):
        if len(written) == 3:
            raise OSError("No space left on device")
        written.append(task[3]["file"])
        return write(task)

    monkeypatch.setattr(writing, "write_planned_shard", failing)
    out = tmp_path / "tiny"
    with pytest.raises(OSError, match="No space left"):
        prepare_main(_argv(corpus, out, "--num_workers", "1"))
    finished = {name: (out / name).stat().st_mtime_ns for name in written}
    assert sorted(p.name for p in out.glob("*.tar")) == sorted(written)
    monkeypatch.setattr(writing, "write_planned_shard", write)
    report = prepare_main(_argv(corpus, out, "--num_workers", "1"))
    assert (
        report.shards_reused == 3 and {name: (out / name).stat().st_mtime_ns for name in written} == finished
    )
    assert read_manifest(out) == read_manifest(reference[0])


@pytest.mark.slow
def test_a_killed_preparation_resumes_without_redoing_finished_shards(corpus, reference, tmp_path):
    """Kill -9 a serial preparation after a few shards; the rerun keeps them and ends equal to the
    uninterrupted (parallel) run."""
    out = tmp_path / "tiny"
    script = tmp_path / "slow_prepare.py"
    script.write_text(
        textwrap.dedent(f"""
        import time
        from hf_vssl.data.prepare import run, writing

        write = writing.write_planned_shard

        def slow(task):  # leaves time to kill the run between shards
            marker = write(task)
            time.sleep(1.0)
            return marker

        writing.write_planned_shard = slow
        run.main({_argv(corpus, out, "--num_workers", "1")!r})
        """)
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    done = out / ".prepare" / "done"
    deadline = time.monotonic() + 240
    try:
        while len(list(done.glob("*.json"))) < 3:
            assert process.poll() is None, process.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the preparation wrote no 3 shards in time"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    markers = [json.loads(path.read_text())["file"] for path in done.glob("*.json")]
    finished = {name: (out / name).stat().st_mtime_ns for name in markers}
    total = sum(len(entry["shards"]) for entry in read_manifest(reference[0])["splits"].values())
    assert 3 <= len(finished) < total and not (out / "manifest.json").exists()

    report = prepare_main(_argv(corpus, out, "--num_workers", "1"))
    assert report.shards_reused == len(finished) and report.shards_written == total - len(finished)
    assert {name: (out / name).stat().st_mtime_ns for name in finished} == finished  # not rewritten
    assert not list(out.glob(".*.partial"))
    assert read_manifest(out) == read_manifest(reference[0])
    for name in sorted(p.name for p in reference[0].glob("*.tar")):
        # x264 is not always byte-reproducible from run to run: compare the samples, not the bytes
        assert [meta for _, meta in iter_tar(out / name)] == [
            meta for _, meta in iter_tar(reference[0] / name)
        ]
    assert (out / "README.md").read_text() == (reference[0] / "README.md").read_text()


def test_resume_refuses_other_settings_and_foreign_folders(corpus, reference, tmp_path):
    out, _ = reference
    with pytest.raises(ValueError, match="shard_size: 3 then, 4 now"):
        prepare_main([*_argv(corpus, out), "--shard_size", "4"])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        prepare_main(_argv(corpus, foreign))
    with pytest.raises(ValueError, match="--subset_sizes 40: split 'train' has only 23"):
        prepare_main(["--dataset", "synthetic", "--dataset_root", str(corpus["root"]), "--output_dir",
                      str(tmp_path / "big"), "--subset_sizes", "40"])  # fmt: skip
    with pytest.raises(ValueError, match="--noise_split val"):
        prepare_main([*_argv(corpus, tmp_path / "n"), "--noise", "gaussian", "--noise_split", "val"])
    with pytest.raises(ValueError, match="--noise fog"):
        prepare_main([*_argv(corpus, tmp_path / "n"), "--noise", "fog"])


def test_noisy_variants_are_added_once(corpus, reference, tmp_path, monkeypatch):
    calls: list = []
    real = noisy.write_noisy_split

    def counted(shard_dir, split, kind, severity, *rest):  # the real writer, its calls counted
        calls.append((split, kind, severity))
        return real(shard_dir, split, kind, severity, *rest)

    monkeypatch.setattr(noisy, "write_noisy_split", counted)
    out = shutil.copytree(reference[0], tmp_path / "tiny")
    argv = [*_argv(corpus, out), "--noise", "gaussian", "--severities", "1", "3"]
    report = prepare_main(argv)
    assert calls == [("test", "gaussian", 1), ("test", "gaussian", 3)]
    assert report.shards_written == 0 and report.noisy_written == ["test.gaussian.s1", "test.gaussian.s3"]
    manifest = read_manifest(out)
    assert manifest["splits"]["test.gaussian.s3"]["noise"] == {
        "kind": "gaussian",
        "severity": 3,
        "preset": "video-p",
        "seed": 0,
    }
    assert "| test.gaussian.s3 | gaussian | 3 | video-p | 0 | 7 |" in (out / "README.md").read_text()

    again = prepare_main(argv)  # published already: not made again, and kept in the manifest
    assert len(calls) == 2 and again.noisy_reused == ["test.gaussian.s1", "test.gaussian.s3"]
    assert read_manifest(out)["splits"].keys() == manifest["splits"].keys()


@pytest.mark.slow
def test_push_to_hub_and_read_the_subsets_back(corpus, reference, tmp_path):
    """``recipes/prepare_corpus.py --push_to_hub`` against the tests' Hub; the manifest and a subset's
    shards come back by repo id."""
    out = shutil.copytree(reference[0], tmp_path / "tiny")
    with LocalHub(tokens={TOKEN: "alice"}, orgs={"org": ["alice"]}) as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        env.update(
            PYTHONPATH=str(REPO), HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf"),
            HF_HUB_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1",
        )  # fmt: skip
        argv = [*_argv(corpus, out), "--push_to_hub", "--hub_dataset_id", "org/tiny"]
        pushed = subprocess.run(
            [sys.executable, str(REPO / "recipes" / "prepare_corpus.py"), *argv],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        assert "pushed to" in pushed.stdout and "0 shards written" in pushed.stdout
        files = hub.files("org/tiny", repo_type="dataset")
        assert not any(name.startswith(".prepare") for name in files)
        assert "--dataset org/tiny" in files["README.md"].decode()

        read_back = textwrap.dedent("""
            import json
            from hf_vssl.data.shards.variants import subset_shards
            from hf_vssl.data.streaming import dataset_base, load_manifest
            manifest = load_manifest(dataset_base("org/tiny"))
            print(json.dumps({"manifest": manifest, "subset": subset_shards(manifest, "train", 8, "org/tiny")}))
        """)
        result = subprocess.run(
            [sys.executable, "-c", read_back],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        back = json.loads(result.stdout.strip().splitlines()[-1])
    local = read_manifest(out)
    assert back["manifest"] == local
    assert (
        back["subset"]
        == local["splits"]["train"]["shards"][: local["splits"]["train"]["subsets"]["8"]["num_shards"]]
    )
    for shard in back["subset"]:
        assert files[shard["file"]] == (out / shard["file"]).read_bytes()


def test_a_shard_folder_is_not_a_source(reference, tmp_path):
    with pytest.raises(ValueError, match="already a shard dataset"):
        prepare_main(["--dataset", str(reference[0]), "--output_dir", str(tmp_path / "x")])


def test_prepared_shards_stream_as_a_video_dataset(reference):
    from hf_vssl.data.streaming import load_video_dataset

    out, _ = reference
    table = load_video_dataset(out, split="test", streaming=False)
    assert len(table) == 7
    assert table[0]["video"].get_frames_at([0, 31]).data.shape == (2, 3, 48, 48)


def test_a_video_folder_is_reencoded_to_the_short_side(make_video, tmp_path):
    """Any built-in source works: a video folder with MP4 and WebM inputs, a stray video and a text
    file posing as a video, scaled to a 16-pixel short side with a 4-frame GOP."""
    import av

    root = tmp_path / "videos"
    for split, count in (("train", 2), ("test", 1)):
        for name in ("jump", "run"):
            for i in range(count):
                ext = "webm" if name == "run" and i == 1 else "mp4"
                make_video(
                    f"videos/{split}/{name}/{name}{i}.{ext}", num_frames=12, height=32, width=48, seed=i
                )
    (root / "train" / "run" / "notes.mp4").write_text("not a video")
    make_video("videos/train/stray.mp4", num_frames=4)
    out = tmp_path / "shards"
    report = prepare_main(
        ["--dataset", "videofolder", "--dataset_root", str(root), "--output_dir", str(out),
         "--short_side", "16", "--gop_size", "4", "--num_workers", "1"]
    )  # fmt: skip
    assert report.per_split == {"train": 4, "test": 2}
    assert {(item["stage"], item["path"]) for item in report.skipped} == {
        ("annotation", "train/stray.mp4"),
        ("check", "train/run/notes.mp4"),
    }
    samples = {meta["video_id"]: data for data, meta in iter_tar(out / "videofolder-train-00000.tar")}
    assert sorted(samples) == ["jump/jump0", "jump/jump1", "run/run0", "run/run1"]
    with av.open(io.BytesIO(samples["run/run1"])) as container:  # a WebM input, now H.264 in MP4
        frames = list(container.decode(video=0))
    assert container.format.name.startswith("mov") and frames[0].format.name == "yuv420p"
    assert (frames[0].height, frames[0].width) == (16, 24) and len(frames) == 12
    assert [i for i, frame in enumerate(frames) if frame.key_frame] == [0, 4, 8]
    assert "license: unknown" in (out / "README.md").read_text()


def test_probe_results_are_kept_for_a_resumed_run(corpus, tmp_path, monkeypatch):
    from hf_vssl.data.prepare import plan

    cache = tmp_path / "probe.jsonl"
    good, bad = corpus["train"][0].path, str(corpus["corrupt"])
    first = plan.probe_all([good, bad], cache, num_workers=1)
    assert first[good] is None and first[bad]
    cache.write_text(cache.read_text() + '{"path": "/cut short')  # a killed run's last line
    monkeypatch.setattr(plan, "probe_video", lambda path: pytest.fail(f"{path} probed twice"))
    assert plan.probe_all([good, bad], cache, num_workers=1) == first
