"""Evaluation from shards: finetuning's retrieval, robustness and CKA read a local shard folder and a
Hub dataset repo (the tests' Hub-compatible server) and give what the same videos give from their
source; a published noisy split equals noise made on the fly; two ranks score each streamed video once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from _local_hub import LocalHub
from huggingface_hub import constants

from hf_vssl.analysis.cka_recipe import CKAArguments, run_cka
from hf_vssl.analysis.robustness import RobustnessArguments, run_robustness
from hf_vssl.data.clips import UniformClipSampler
from hf_vssl.data.datasets import collate_clips
from hf_vssl.data.eval_data import EvalStream, eval_clip_dataset, load_eval_videos, noisy_eval_videos
from hf_vssl.data.loading import load_records
from hf_vssl.data.noise import NoiseTransform
from hf_vssl.data.records import VideoRecord
from hf_vssl.data.shards import build_shards, read_manifest, write_noisy_split
from hf_vssl.evaluation import MultiCropTransform, build_eval_dataset, evaluate_classifier
from hf_vssl.models import VSSLConfig, VSSLForVideoClassification, VSSLVideoProcessor
from hf_vssl.training.arguments import parse_args
from hf_vssl.training.finetuning import FinetuningArguments, run_finetuning

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hf_local_alice"
SEED = 3  # the noise seed of the published split and of every robustness run here
NOISY = ("gaussian", 3)


# -- fixtures -------------------------------------------------------------------------------------


def _classifier(path: Path) -> Path:
    torch.manual_seed(0)
    labels = dict(enumerate(("move_left", "move_right", "move_up", "move_down")))
    config = VSSLConfig(backbone="r21d", width_multiplier=0.125, num_frames=8, image_size=32)
    VSSLForVideoClassification(config.for_classification(labels)).save_pretrained(path)
    VSSLVideoProcessor.for_clip(8, 32).save_pretrained(path)
    metrics = {"dataset": "synthetic", "dataset_split": "test", "label_set": "motion", "fold": 1}
    (path / "metrics.json").write_text(
        json.dumps({**metrics, "evaluation": {"num_clips": 2, "num_crops": 1}})
    )
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    """A tiny classification checkpoint as recipes/finetune.py leaves it."""
    return _classifier(tmp_path_factory.mktemp("classifier"))


@pytest.fixture(scope="module")
def shard_dir(tiny_corpus, tmp_path_factory) -> Path:
    """The tiny corpus's train and test splits as shards (original bytes), plus the published
    ``test.gaussian.s3`` made with seed ``SEED``."""
    records = [r for split in ("train", "test") for r in load_records("synthetic", str(tiny_corpus), split)]
    out = tmp_path_factory.mktemp("shards") / "tiny-shards"
    build_shards(records, out, shard_size=2, num_workers=1)
    write_noisy_split(out, "test", *NOISY, seed=SEED, num_workers=1)
    return out


def _robustness(classifier: Path, out: Path, *data: str) -> dict:
    flags = ["--noises", "gaussian", "reversal", "--severities", "1", "3", "--seed", str(SEED)]
    args = [*data, "--model_name_or_path", str(classifier), "--output_dir", str(out), *flags]
    args += ["--per_device_eval_batch_size", "4"]
    return json.loads((run_robustness(parse_args(RobustnessArguments, args)) / "robustness.json").read_text())


def _cka(classifier: Path, out: Path, *data: str) -> dict:
    args = [*data, "--model_name_or_path", str(classifier), "--output_dir", str(out), "--num_videos", "1000"]
    args += ["--per_device_eval_batch_size", "4", "--dataloader_num_workers", "0"]
    return json.loads((run_cka(parse_args(CKAArguments, args)) / "cka.json").read_text())


def _retrieval(classifier: Path, out: Path, *data: str) -> dict:
    args = [*data, "--model_name_or_path", str(classifier), "--output_dir", str(out), "--mode", "retrieval"]
    args += ["--per_device_eval_batch_size", "4", "--dataloader_num_workers", "0", "--eval_clips", "2"]
    args += ["--report_to", "none"]
    return json.loads((run_finetuning(parse_args(FinetuningArguments, args)) / "retrieval.json").read_text())


RECIPES = {"robustness": _robustness, "cka": _cka, "retrieval": _retrieval}


@pytest.fixture(scope="module")
def from_shards(classifier, shard_dir, tmp_path_factory) -> dict[str, dict]:
    """Each recipe's report when it reads the local shard folder."""
    out = tmp_path_factory.mktemp("from_shards")
    return {name: run(classifier, out / name, "--dataset", str(shard_dir)) for name, run in RECIPES.items()}


def _same_report(a: dict, b: dict, name: str) -> None:
    if name == "robustness":
        assert a["cells"] == b["cells"] and a["clean_top1"] == b["clean_top1"]
    elif name == "cka":
        torch.testing.assert_close(torch.tensor(a["matrix"]), torch.tensor(b["matrix"]), rtol=1e-5, atol=1e-6)
    else:
        assert a["retrieval"] == pytest.approx(b["retrieval"])


# -- noise: a function of the video's frames ------------------------------------------------------


def test_pixel_noise_is_per_frame_of_the_video_whatever_the_clip():
    video = torch.randint(
        0, 256, (12, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    noise = NoiseTransform("gaussian", 3, seed=SEED)
    whole = noise(video, "v1")
    one, two = noise.on_clips([video[2:6], video[4:8]], "v1", [np.arange(2, 6), np.arange(4, 8)])
    assert torch.equal(one, whole[2:6]) and torch.equal(two, whole[4:8])  # frames 4, 5 in both clips
    assert not torch.equal(whole[0], whole[1] - video[1] + video[0])  # fresh noise per frame
    assert not torch.equal(noise(video, "v2"), whole)
    # Temporal perturbations act on the clip: one draw per clip, as before.
    reversal = NoiseTransform("jumbled", 2, seed=SEED)
    clips = reversal.on_clips([video[:8], video[4:]], "v1", [np.arange(8), np.arange(4, 12)])
    assert torch.equal(clips[0], reversal(video[:8], "v1")) and torch.equal(
        clips[1], reversal(video[4:], "v1/clip1")
    )


def test_write_noisy_split_names_the_split_and_refuses_what_has_no_stored_form(shard_dir):
    manifest = read_manifest(shard_dir)
    entry = manifest["splits"]["test.gaussian.s3"]
    assert entry["noise"] == {"kind": "gaussian", "severity": 3, "preset": "video-p", "seed": SEED}
    assert entry["num_videos"] == manifest["splits"]["test"]["num_videos"]
    assert all((shard_dir / shard["file"]).is_file() for shard in entry["shards"])
    assert not list(shard_dir.glob(".*partial*"))
    again = write_noisy_split(shard_dir, "test", *NOISY, seed=SEED, num_workers=1)
    assert again.written == 0 and read_manifest(shard_dir) == manifest  # already there: nothing redone
    with pytest.raises(FileExistsError, match="already exists"):
        write_noisy_split(shard_dir, "test", *NOISY, seed=SEED + 1)
    with pytest.raises(ValueError, match="no stored form"):
        write_noisy_split(shard_dir, "test", "reversal", 1)
    with pytest.raises(ValueError, match="no split 'val'"):
        write_noisy_split(shard_dir, "val", "gaussian", 1)


# -- a published noisy split equals noise on the fly ----------------------------------------------


def test_published_noisy_split_gives_the_clips_and_scores_of_noise_on_the_fly(shard_dir):
    clean, _, _ = load_eval_videos(str(shard_dir))
    published, noise = noisy_eval_videos(clean, *NOISY, seed=SEED)
    assert noise is None and published.split == "test.gaussian.s3"
    assert noisy_eval_videos(clean, *NOISY, seed=SEED + 1)[1] is not None  # other seed: on the fly
    assert noisy_eval_videos(clean, "gaussian", 2, seed=SEED)[1] is not None  # not published
    on_the_fly = NoiseTransform(*NOISY, seed=SEED)

    sampler = UniformClipSampler(8, 1, num_clips=2, mode="uniform", short_video="error")
    stored = {s["video_id"]: s["clips"] for s in eval_clip_dataset(published, sampler)}
    made = {s["video_id"]: s["clips"] for s in eval_clip_dataset(clean, sampler, noise=on_the_fly)}
    plain = {s["video_id"]: s["clips"] for s in eval_clip_dataset(clean, sampler)}
    assert stored.keys() == made.keys() and len(stored) == clean.num_videos
    for video_id in stored:
        assert all(torch.equal(a, b) for a, b in zip(stored[video_id], made[video_id], strict=True)), video_id
        assert not torch.equal(stored[video_id][0], plain[video_id][0])

    model = VSSLForVideoClassification.from_pretrained(_classifier(shard_dir.parent / "model")).eval()
    a = evaluate_classifier(model, build_eval_dataset(published, 8, 32, num_clips=2), batch_size=3)
    b = evaluate_classifier(
        model, build_eval_dataset(clean, 8, 32, num_clips=2, noise=on_the_fly), batch_size=3
    )
    assert a.video_ids == b.video_ids == sorted(stored)
    assert torch.equal(a.video_scores, b.video_scores) and a.video_top1 == b.video_top1


# -- every recipe from a local shard folder = from the source --------------------------------------


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_from_local_shards_equals_the_source(name, classifier, tiny_corpus, from_shards, tmp_path):
    source = RECIPES[name](
        classifier, tmp_path / name, "--dataset", "synthetic", "--dataset_root", str(tiny_corpus)
    )
    _same_report(from_shards[name], source, name)
    if name == "robustness":
        assert from_shards[name]["published"] == {"gaussian s3": "test.gaussian.s3"}
        assert source["published"] == {}
        cells = {(c["noise"], c["severity"]): c["top1"] for c in source["cells"]}
        assert len(cells) == 6


# -- and from the Hub -----------------------------------------------------------------------------


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the session is offline (conftest)
    with LocalHub(tokens={TOKEN: "alice"}, orgs={"org": ["alice"]}) as server:
        yield server


@pytest.mark.slow
def test_recipes_stream_from_a_hub_dataset_repo(hub, classifier, shard_dir, from_shards, tmp_path):
    from hf_vssl.hub.publish import publish_dataset

    publish_dataset(shard_dir, "org/tiny-shards", token=TOKEN, endpoint=hub.url)
    # huggingface_hub and datasets read HF_ENDPOINT once, at import: a fresh interpreter.
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from pathlib import Path
        from test_stream_eval import RECIPES
        out = Path({str(tmp_path)!r})
        reports = {{name: run(Path({str(classifier)!r}), out / name, "--dataset", "org/tiny-shards")
                    for name, run in RECIPES.items()}}
        (out / "reports.json").write_text(json.dumps(reports))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_OFFLINE="0",
        HF_DATASETS_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONPATH=str(REPO),
        OMP_NUM_THREADS="1",
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=540
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    reports = json.loads((tmp_path / "reports.json").read_text())
    for name in RECIPES:
        _same_report(reports[name], from_shards[name], name)
    assert reports["robustness"]["published"] == {"gaussian s3": "test.gaussian.s3"}
    assert reports["robustness"]["dataset"] == "org/tiny-shards"


# -- every streamed video once, skipped ones reported ---------------------------------------------


def test_stream_reports_skipped_videos_and_checks_every_video_is_accounted_for(make_video, tmp_path):
    records = [
        VideoRecord(
            str(make_video(f"v{i}.mp4", num_frames=4 if i in (1, 4) else 12, height=32, width=32, seed=i)),
            i % 2,
            f"c{i % 2}",
            f"vid{i}",
            "test",
            "toy",
        )
        for i in range(6)
    ]
    build_shards(records, tmp_path / "shards", shard_size=2, num_workers=1)
    videos, id2label, split = load_eval_videos(str(tmp_path / "shards"))
    assert split == "test" and id2label == {0: "c0", 1: "c1"} and videos.num_videos == 6
    model = VSSLForVideoClassification(
        VSSLConfig(backbone="r21d", width_multiplier=0.125, num_frames=8, image_size=32).for_classification(
            {0: "c0", 1: "c1"}
        )
    ).eval()
    result = evaluate_classifier(
        model,
        build_eval_dataset(videos, 8, 32, num_clips=1, short_video="skip", max_bad_fraction=0.5),
        batch_size=4,
    )
    assert result.num_videos == 4 and result.video_ids == ["vid0", "vid2", "vid3", "vid5"]
    assert [(e["video_id"], e["index"]) for e in result.skipped_videos] == [("vid1", -1), ("vid4", -1)]
    # Rank 0 of 2 alone reads half the shards: the evaluation refuses to report a partial split.
    sampler = UniformClipSampler(8, mode="uniform", short_video="error")
    half = EvalStream(videos, sampler, transform=MultiCropTransform(32, 1), rank=0, world_size=2)
    with pytest.raises(RuntimeError, match="the split has 6"):
        evaluate_classifier(model, half, batch_size=4)


def test_first_videos_of_a_stream_are_the_same_under_ranks_and_workers(shard_dir):
    # CKA's --num_videos and published subsets read the first videos in manifest order; a plain
    # IterableDataset.take would take from each DataLoader worker's own shards instead.
    sampler = UniformClipSampler(8, mode="uniform", short_video="error")
    full, _, _ = load_eval_videos(str(shard_dir), split="train")
    order = [sample["video_id"] for sample in EvalStream(full, sampler)]
    limited, _, _ = load_eval_videos(str(shard_dir), split="train", limit=5)
    assert limited.num_videos == 5 and len(order) > 5
    for workers in (0, 2):
        read = []
        for rank in (0, 1):
            stream = EvalStream(limited, sampler, rank=rank, world_size=2)
            loader = torch.utils.data.DataLoader(
                stream, batch_size=2, num_workers=workers, collate_fn=collate_clips
            )
            read += [video_id for batch in loader for video_id in batch["video_ids"]]
            read += [
                video_id for batch in loader for video_id in batch["video_ids"]
            ]  # a second pass: the same
        assert sorted(read) == sorted(order[:5] * 2), workers


@pytest.mark.slow
def test_two_ranks_score_each_streamed_video_once(shard_dir, tmp_path):
    folder = _classifier(tmp_path / "classifier")
    videos = load_eval_videos(str(shard_dir), split="test")[0]
    model = VSSLForVideoClassification.from_pretrained(folder).eval()
    alone = evaluate_classifier(model, build_eval_dataset(videos, 8, 32, num_clips=1, max_bad_fraction=0.5))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = tmp_path / "two_ranks.json"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(port), str(REPO / "tests" / "_dist_evaluate.py")]
    result = subprocess.run(
        [*launch, str(out), str(folder), str(shard_dir), "0"],
        check=False,
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    both = json.loads(out.read_text())
    assert both["num_videos"] == alone.num_videos == videos.num_videos and both["skipped"] == []
    assert both["video_ids"] == alone.video_ids and len(set(both["video_ids"])) == videos.num_videos
    first = next(iter(EvalStream(videos, UniformClipSampler(8, mode="uniform", short_video="error"))))
    assert both["one_video"] == [first["video_id"]]  # the other rank read nothing and still gathered
    torch.testing.assert_close(torch.tensor(both["scores"]), alone.video_scores, rtol=1e-4, atol=1e-5)
