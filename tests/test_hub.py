"""Model cards, reports, publishing and loading by id.

Publishing and loading run the real ``huggingface_hub`` client against ``tests/_local_hub.py``
(a Hub-compatible server on 127.0.0.1): the real Hub is out of reach here.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard, constants

from hf_vssl import VSSLConfig, VSSLForPretraining, VSSLForVideoClassification, VSSLVideoProcessor
from hf_vssl.hub import (
    HubPublishError,
    assemble_reports,
    publish,
    publish_dataset,
    repo_name,
    write_model_card,
)
from hf_vssl.hub.naming import hub_dataset_id

sys.path.insert(0, str(Path(__file__).parent))
from _local_hub import LocalHub

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_local_alice"
REPO_ID = "org/rspnet-r21d-synthetic"
TINY = {"backbone": "r21d", "width_multiplier": 0.125, "num_frames": 8, "image_size": 32}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _metrics(dataset="ucf101", mode="finetune", top1=0.5, base_model="org/rspnet-r21d-k400-50k"):
    return {
        "task": "video-classification",
        "dataset": dataset,
        "dataset_split": "test",
        "fold": 1,
        "label_set": None,
        "mode": mode,
        "base_model": base_model,
        "num_train_epochs": 3.0,
        "results": {"clip_top1": top1, "clip_top5": 0.8, "video_top1": 0.55, "video_top5": 0.85},
        "retrieval": {"top1": 0.3, "top5": 0.4, "top10": 0.5, "top20": 0.6},
    }


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory) -> Path:
    """A tiny RSPNet pretraining checkpoint folder laid out as the pretraining recipe writes it."""
    folder = tmp_path_factory.mktemp("pretrained") / "rspnet-r21d-synthetic"
    config = VSSLConfig(**TINY, pretext_task="rspnet", pretext_config={"queue_size": 64})
    model = VSSLForPretraining(config)
    config.pretext_config = model.pretext.settings.to_dict()  # resolved settings, as the recipe records
    model.save_pretrained(folder)
    VSSLVideoProcessor.for_clip(8, 32, 1).save_pretrained(folder)
    args = {
        "output_dir": str(folder),
        "pretext_task": "rspnet",
        "backbone": "r21d",
        "width_multiplier": 0.125,
        "num_frames": 8,
        "image_size": 32,
        "frame_stride": 1,
        "dataset": "synthetic",
        "dataset_root": "/data/private",
        "dataset_split": "train",
        "subset_size": 8,
        "subset_seed": 0,
        "per_device_train_batch_size": 4,
        "num_train_epochs": 2.0,
        "max_steps": 2,
        "seed": 42,
        "bf16": True,
    }
    (folder / "training_args.yaml").write_text(yaml.safe_dump(args, sort_keys=False))
    (folder / "subset_ids.json").write_text(
        json.dumps(
            {
                "version": 1,
                "size": 8,
                "seed": 0,
                "class_counts": {"MoveLeft": 4, "MoveRight": 4},
                "ids": [f"v{i}" for i in range(8)],
            }
        )
    )
    (folder / "checkpoints" / "step-2").mkdir(parents=True)
    (folder / "checkpoints" / "step-2" / "optimizer.bin").write_bytes(b"pickled optimizer state")
    return folder


@pytest.fixture
def classifier_dir(tmp_path) -> Path:
    folder = tmp_path / "rspnet-r21d-synthetic-ucf101"
    config = VSSLConfig(
        **TINY,
        pretext_task="rspnet",
        pretext_config={"temperature": 0.07},
        id2label={0: "MoveLeft", 1: "MoveRight"},
    )
    VSSLForVideoClassification(config).save_pretrained(folder)
    VSSLVideoProcessor.for_clip(8, 32, 1).save_pretrained(folder)
    return folder


@pytest.fixture
def reports_dir(tmp_path) -> Path:
    """robustness.json/.md/.png and cka.json/.png as the robustness and CKA recipes write them."""
    folder = tmp_path / "reports"
    folder.mkdir()
    cells = [
        {
            "noise": noise,
            "severity": s,
            "top1": top1,
            "relative_decrease": 1 - top1 / 0.78,
            "relative_robustness": top1 / 0.78,
        }
        for noise, top1 in (("gaussian", 0.39), ("shot", 0.6))
        for s in (1, 2)
    ]
    average = {
        "gaussian": {"top1": 0.39, "relative_decrease": 0.5, "relative_robustness": 0.5},
        "shot": {"top1": 0.6, "relative_decrease": 0.23, "relative_robustness": 0.77},
    }
    (folder / "robustness.json").write_text(
        json.dumps(
            {"dataset": "ucf101", "preset": "video-p", "clean_top1": 0.78, "cells": cells, "average": average}
        )
    )
    (folder / "robustness.md").write_text("| noise | severity | top-1 |\n")
    (folder / "robustness.png").write_bytes(b"\x89PNG\r\n\x1a\nrobustness")
    (folder / "cka.json").write_text(
        json.dumps(
            {
                "model_a": "a",
                "model_b": "b",
                "layers_a": ["l1", "l2"],
                "layers_b": ["l1", "l2"],
                "matrix": [[1.0, 0.5], [0.5, 1.0]],
            }
        )
    )
    (folder / "cka.png").write_bytes(b"\x89PNG\r\n\x1a\ncka")
    return folder


# -- naming and templates ---------------------------------------------------------------------------


def test_repo_name():
    assert repo_name("rspnet", "r21d", "kinetics400", 50000) == "rspnet-r21d-k400-50k"
    assert repo_name("vcop", "shufflenet", "ucf101") == "vcop-shufflenet-ucf101"
    assert repo_name("cvrl", "r3d-18", "k400", 1500) == "cvrl-r3d-18-k400-1500"
    with pytest.raises(ValueError, match="valid Hub repo name"):
        repo_name("rspnet", "r21d", "my data/set", 10000)


def test_packaged_templates_match_model_cards_folder():
    for kind in ("pretrained", "finetuned"):
        packaged = (REPO_ROOT / "hf_vssl" / "hub" / "templates" / f"{kind}.md").read_text()
        assert packaged == (REPO_ROOT / "model_cards" / f"{kind}.md").read_text(), f"{kind}.md copies differ"


# -- cards and reports ------------------------------------------------------------------------------


def test_pretrained_card(pretrained_dir, tmp_path):
    folder = shutil.copytree(pretrained_dir, tmp_path / "ckpt")
    write_model_card(folder, repo_id=REPO_ID)
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "transformers"  # a library the Hub knows; hf_vssl is a tag
    assert card.data.pipeline_tag == "feature-extraction"
    assert {"video", "self-supervised", "rspnet", "r21d", "hf_vssl", "custom_code"} <= set(card.data.tags)
    assert card.data.datasets is None  # the synthetic corpus has no Hub id (never a name or a path)
    assert card.data.eval_results is None and card.data.base_model is None
    text = card.text
    assert '"queue_size": 64' in text  # the resolved task settings from config.json
    assert "8 frames x 32 x 32" in text and "width multiplier 0.125" in text
    assert "subset_ids.json" in text and "| MoveLeft | 4 |" in text
    assert "2 optimizer steps" in text
    assert f'AutoModel.from_pretrained("{REPO_ID}")' in text and "import hf_vssl" in text
    assert "/data/private" not in text  # local paths stay out of the card


def test_finetuned_card_holds_every_result(classifier_dir, reports_dir):
    card = assemble_reports(
        classifier_dir,
        metrics=_metrics(),
        robustness_dir=reports_dir,
        cka_dir=reports_dir,
        repo_id="org/rspnet-r21d-synthetic-ucf101",
    )
    for name in (
        "metrics.json",
        "robustness.json",
        "robustness.md",
        "robustness.png",
        "cka.json",
        "cka.png",
        "README.md",
    ):
        assert (classifier_dir / name).is_file(), name
    data = ModelCard.load(classifier_dir / "README.md").data
    assert data.pipeline_tag == "video-classification"
    assert data.base_model == "org/rspnet-r21d-k400-50k"
    values = {(r.dataset_type, r.dataset_config, r.metric_config): r.metric_value for r in data.eval_results}
    assert values[("ucf101", "fold1", "finetune/clip_top1")] == 0.5
    assert values[("ucf101", "fold1", "finetune/video_top5")] == 0.85
    assert values[("ucf101", "fold1", "retrieval/top10")] == 0.5
    assert values[("ucf101", "video-p", "clean/top1")] == 0.78
    assert values[("ucf101", "video-p", "gaussian/relative_robustness")] == 0.5
    assert values[("ucf101", "video-p", "shot/top1")] == 0.6
    # every robustness cell (noise x severity) is in the model-index, not only the averages
    assert values[("ucf101", "video-p", "gaussian/severity2/top1")] == 0.39
    assert values[("ucf101", "video-p", "shot/severity1/relative_robustness")] == pytest.approx(0.6 / 0.78)
    assert len(values) == 4 + 4 + 1 + 2 * 2 + 4 * 2
    assert "![Accuracy under noise](robustness.png)" in card.text and "![CKA map](cka.png)" in card.text
    assert "| UCF101 | test (fold 1) | finetune | 3 epochs | 50.0 | 80.0 | 55.0 | 85.0 |" in card.text
    assert (
        'AutoModelForVideoClassification.from_pretrained("org/rspnet-r21d-synthetic-ucf101", '
        "trust_remote_code=True)" in card.text
    )

    # assembling again is a no-op; a second downstream result lands beside the first
    before = _snapshot(classifier_dir)
    assemble_reports(
        classifier_dir,
        metrics=_metrics(),
        robustness_dir=reports_dir,
        repo_id="org/rspnet-r21d-synthetic-ucf101",
    )
    assert _snapshot(classifier_dir) == before
    assemble_reports(
        classifier_dir, metrics=_metrics("hmdb51", "linear_probe", 0.2, base_model=str(reports_dir))
    )
    assert (classifier_dir / "metrics-hmdb51-linear-probe-fold1.json").is_file()
    data = ModelCard.load(classifier_dir / "README.md").data
    values = {(r.dataset_type, r.metric_config): r.metric_value for r in data.eval_results}
    assert (
        values[("hmdb51", "linear_probe/clip_top1")] == 0.2
        and values[("ucf101", "finetune/clip_top1")] == 0.5
    )
    assert data.base_model == "org/rspnet-r21d-k400-50k"  # a local path is never a base_model


def test_pipeline_tag_differs_between_pretrained_and_finetuned(pretrained_dir, classifier_dir, tmp_path):
    pretrained = shutil.copytree(pretrained_dir, tmp_path / "p")
    tags = {write_model_card(f).data.pipeline_tag for f in (pretrained, classifier_dir)}
    assert tags == {"feature-extraction", "video-classification"}


def test_pretrained_card_lists_downstream_results(pretrained_dir, tmp_path):
    folder = shutil.copytree(pretrained_dir, tmp_path / "ckpt")
    retrieval_only = {
        "task": "video-retrieval",
        "dataset": "hmdb51",
        "dataset_split": "test",
        "fold": 1,
        "base_model": str(folder),
        "retrieval": {"top1": 0.25, "top5": 0.5},
    }
    assemble_reports(folder, metrics=[_metrics(base_model=str(folder)), retrieval_only])
    assert (folder / "metrics.json").is_file() and (folder / "retrieval.json").is_file()
    data = ModelCard.load(folder / "README.md").data
    assert data.pipeline_tag == "feature-extraction" and data.base_model is None
    values = {(r.dataset_type, r.metric_config): r.metric_value for r in data.eval_results}
    assert values[("ucf101", "finetune/video_top1")] == 0.55 and values[("hmdb51", "retrieval/top5")] == 0.5
    assert data.datasets is None  # none of synthetic / UCF101 / HMDB51 has a canonical Hub dataset


def test_percentages_are_refused(classifier_dir):
    with pytest.raises(ValueError, match=r"fractions in \[0, 1\]"):
        assemble_reports(classifier_dir, metrics=_metrics(top1=78.0))
    assert not (classifier_dir / "metrics.json").exists()


# -- publishing and loading by id -------------------------------------------------------------------


@pytest.fixture
def online(monkeypatch):
    """The test session runs with HF_HUB_OFFLINE=1 (conftest); publishing tests lift it in-process."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub(online):
    with LocalHub(tokens={TOKEN: "alice", "hf_local_bob": "bob"}, orgs={"org": ["alice"]}) as server:
        yield server


def _load_in_subprocess(tmp_path: Path, endpoint: str, hf_home: Path, offline: bool, local: Path) -> str:
    """Load ``REPO_ID`` by id in a fresh interpreter; compare with the local folder's weights."""
    script = textwrap.dedent(f"""
        import torch, hf_vssl
        from transformers import AutoModel
        hub = AutoModel.from_pretrained({REPO_ID!r})
        local = AutoModel.from_pretrained({str(local)!r})
        a, b = hub.state_dict(), local.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "weights differ"
        print("LOADED", type(hub).__name__, len(a))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="1" if offline else "0",
        TRANSFORMERS_OFFLINE="1" if offline else "0",
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_publish_then_load_by_id_online_and_offline(hub, pretrained_dir, tmp_path):
    folder = shutil.copytree(pretrained_dir, tmp_path / "rspnet-r21d-synthetic")
    url = publish(folder, REPO_ID, token=TOKEN, endpoint=hub.url)
    assert url == f"{hub.url}/{REPO_ID}"

    files = hub.files(REPO_ID)
    assert files["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    assert {
        "config.json",
        "video_preprocessor_config.json",
        "subset_ids.json",
        "training_args.yaml",
        "configuration_vssl.py",
        "README.md",
    } <= set(files)
    assert not any(name.startswith("checkpoints/") for name in files)  # resume pickles stay local
    assert len(hub.repos[("model", REPO_ID)].commits) == 2  # the initial commit + ONE upload commit
    assert (
        files["README.md"] == (folder / "README.md").read_bytes()
    )  # the card is saved locally after success
    assert "hf_vssl" in ModelCard.load(folder / "README.md").data.tags

    hf_home = tmp_path / "hf_home"  # empty cache: the first load downloads
    out = _load_in_subprocess(tmp_path, hub.url, hf_home, offline=False, local=folder)
    assert "LOADED VSSLModel" in out
    assert (hf_home / "hub" / "models--org--rspnet-r21d-synthetic" / "snapshots").is_dir()
    downloads = [path for method, path, status in hub.requests if method == "GET" and "/resolve/" in path]
    assert any(path.endswith("/model.safetensors") for path in downloads)

    hub.stop()  # the endpoint is gone: only the cache can serve now
    out = _load_in_subprocess(tmp_path, hub.url, hf_home, offline=True, local=folder)
    assert "LOADED VSSLModel" in out


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_publish_failures_leave_the_folder_intact(hub, pretrained_dir, tmp_path, monkeypatch):
    folder = shutil.copytree(pretrained_dir, tmp_path / "ckpt")
    before = _snapshot(folder)

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    with pytest.raises(HubPublishError, match="hf auth login") as error:
        publish(folder, REPO_ID, endpoint=hub.url)
    assert "HF_TOKEN" in str(error.value)
    assert _snapshot(folder) == before

    down = _closed_port_url()
    with pytest.raises(HubPublishError, match="could not reach the Hub") as error:
        publish(folder, REPO_ID, token=TOKEN, endpoint=down)
    assert down in str(error.value) and "run publish again" in str(error.value)
    assert _snapshot(folder) == before

    publish(folder, "bob/rspnet-r21d-synthetic", token="hf_local_bob", endpoint=hub.url)  # bob's repo
    folder = shutil.copytree(pretrained_dir, tmp_path / "ckpt2")
    before = _snapshot(folder)
    with pytest.raises(HubPublishError, match="permission denied"):
        publish(folder, "bob/rspnet-r21d-synthetic", token=TOKEN, endpoint=hub.url)
    assert _snapshot(folder) == before
    assert len(hub.repos[("model", "bob/rspnet-r21d-synthetic")].commits) == 2  # bob's upload only

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubPublishError, match="HF_HUB_OFFLINE"):
        publish(folder, REPO_ID, token=TOKEN, endpoint=hub.url)
    assert _snapshot(folder) == before


def test_publish_dataset_shards_and_subset(hub, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "synthetic-train-00000.tar").write_bytes(b"tar bytes" * 100)
    (shards / "manifest.json").write_text(
        json.dumps(
            {
                "format": "hf_vssl-webdataset",
                "splits": {"train": {"num_videos": 32, "shards": [], "class_counts": {}}},
            }
        )
    )
    subset = tmp_path / "subset_ids.json"
    subset.write_text(
        json.dumps({"version": 1, "size": 2, "seed": 0, "class_counts": None, "ids": ["a", "b"]})
    )
    before = _snapshot(tmp_path)

    url = publish_dataset(shards, "org/synthetic-shards", token=TOKEN, endpoint=hub.url)
    assert url == f"{hub.url}/datasets/org/synthetic-shards"
    files = hub.files("org/synthetic-shards", repo_type="dataset")
    assert files["synthetic-train-00000.tar"] == b"tar bytes" * 100
    assert "train: 32 videos" in files["README.md"].decode()
    publish_dataset(subset, "org/k400-subsets", token=TOKEN, endpoint=hub.url)
    files = hub.files("org/k400-subsets", repo_type="dataset")
    assert json.loads(files["subset_ids.json"])["ids"] == ["a", "b"] and "README.md" in files
    assert _snapshot(tmp_path) == before  # dataset publishing never writes locally


# -- Hub metadata users can act on ------------------------------------------------------------------


def test_hub_dataset_ids():
    assert hub_dataset_id("hf://datasets/org/shards@v1") == "org/shards"
    assert hub_dataset_id("org/shards") == "org/shards"
    for no_id in ("ucf101", "kinetics400", "ssv2", "synthetic", "/data/videos", "./videos", None):
        assert hub_dataset_id(no_id) is None, no_id


def test_card_lists_datasets_by_hub_id_and_keeps_every_number(classifier_dir, reports_dir):
    k400 = {
        **_metrics("hf://datasets/org/k400-shards"),
        "results": {
            "clip_top1": 0.4,
            "clip_top5": 0.7,
            "video_top1": 0.45,
            "video_top3": 0.6,
            "video_top5": 0.75,
        },
        "retrieval": {"top1": 0.2, "top50": 0.9},
    }
    zero_shot = {**_metrics("ucf101", mode="zero_shot"), "retrieval": None}
    card = assemble_reports(classifier_dir, metrics=[k400, zero_shot, _metrics("/data/my videos")])
    data = card.data
    assert data.datasets == ["org/k400-shards"]  # UCF101 and a local folder have no Hub id
    values = {(r.dataset_type, r.metric_config): r.metric_value for r in data.eval_results}
    assert values[("org/k400-shards", "finetune/video_top3")] == 0.6  # any k measured is kept
    assert values[("org/k400-shards", "retrieval/top50")] == 0.9
    assert values[("ucf101", "zero_shot/clip_top1")] == 0.5
    assert values[("ucf101", "zero_shot/video_top5")] == 0.85
    assert "/data/my videos" not in str(card)


def _provenance():
    return {
        "stages": [
            {
                "stage": "pretraining",
                "pretext_task": "rspnet",
                "pretext_config": {"queue_size": 64},
                "dataset": "kinetics400",
                "dataset_root": "/srv/me/kinetics",
                "subset_size": 50000,
                "max_steps": 1000,
                "output_dir": "/home/me/runs/rspnet",
            },
            {
                "stage": "finetune",
                "dataset": "ucf101",
                "mode": "finetune",
                "model_name_or_path": "/home/me/runs/rspnet",
                "num_train_epochs": 3.0,
            },
        ]
    }


@pytest.mark.parametrize("where", ["sidecar", "config"])
def test_card_states_the_provenance(tmp_path, where):
    folder = tmp_path / "classifier"
    extra = {"provenance": _provenance()} if where == "config" else {}
    config = VSSLConfig(
        **TINY, id2label={0: "MoveLeft", 1: "MoveRight"}, **extra
    )  # no pretext_task in config
    VSSLForVideoClassification(config).save_pretrained(folder)
    if where == "sidecar":
        (folder / "provenance.json").write_text(json.dumps(_provenance()))
    card = write_model_card(folder)
    text = str(card)
    assert "RSPNet (`rspnet`)" in text and "trained from scratch" not in text
    # the pretraining stage fills the constraints table; what it does not record is not guessed
    assert "| Pretraining data | Kinetics-400 (`kinetics400`), split `train` |" in text
    assert "| Subset | 50000 videos" in text and "| Length | 1000 optimizer steps" in text
    assert "| Batch |" not in text and "| Optimizer |" not in text
    assert "rspnet" in card.data.tags and not card.data.datasets  # kinetics400 on local disk: no Hub id
    assert "### Provenance" in text and "subset_size: 50000" in text and "queue_size: 64" in text
    assert "<local kinetics400 folder>" in text and "<local checkpoint>" in text
    assert "/srv/me" not in text and "/home/me" not in text


def test_card_names_a_local_base_model_without_its_path(classifier_dir):
    card = assemble_reports(classifier_dir, metrics=_metrics(base_model="/home/me/runs/rspnet-r21d-k400"))
    assert card.data.base_model is None
    assert "local checkpoint rspnet-r21d-k400" in card.text and "/home/me" not in card.text


def test_publish_uploads_only_what_belongs_to_the_model(hub, pretrained_dir, tmp_path):
    folder = shutil.copytree(pretrained_dir, tmp_path / "run")
    outside = tmp_path / "outside"
    (outside / "keys").mkdir(parents=True)
    (outside / "secret.txt").write_text("outside secret")
    (outside / "keys" / "id_rsa").write_text("private key")
    (folder / ".env").write_text("HF_TOKEN=hf_secret")
    (folder / ".aws").mkdir()
    (folder / ".aws" / "credentials").write_text("aws secret")
    (folder / "notes.txt").symlink_to(outside / "secret.txt")  # a file symlink leaving the folder
    (folder / "keys").symlink_to(outside / "keys")  # a folder symlink leaving the folder
    (folder / "args-link.yaml").symlink_to(folder / "subset_ids.json")  # inside: fine
    events = folder / "runs" / "Nov30_10-00-00_myhost"
    events.mkdir(parents=True)
    (events / "events.out.tfevents.1764496800.myhost.12345.0").write_bytes(b"hparams: /data/private")
    args = yaml.safe_load((folder / "training_args.yaml").read_text())
    args.update(
        output_dir=str(folder),
        model_name_or_path="/home/me/ckpt",
        logging_dir="runs",
        teacher_name_or_path="org/teacher",
        extra_paths=["/mnt/cache/x", "relative/y"],
    )
    (folder / "training_args.yaml").write_text(yaml.safe_dump(args, sort_keys=False))
    (folder / "metrics.json").write_text(json.dumps(_metrics(base_model="/home/me/ckpt")))
    before = _snapshot(folder)

    publish(folder, REPO_ID, token=TOKEN, endpoint=hub.url)
    files = hub.files(REPO_ID)
    hidden = [name for name in files if name.startswith(".") or "/." in name]
    assert hidden == [".gitattributes"], hidden  # only the one the repo's initial commit made
    assert "notes.txt" not in files and not any(name.startswith("keys/") for name in files)
    assert not any("tfevents" in name or "myhost" in name for name in files), sorted(files)
    assert files["args-link.yaml"] == (folder / "subset_ids.json").read_bytes()
    uploaded = b"\n".join(files.values())
    for secret in (
        b"hf_secret",
        b"aws secret",
        b"outside secret",
        b"private key",
        b"/data/private",
        b"/home/me",
        str(tmp_path).encode(),
        b"/mnt/cache",
    ):
        assert secret not in uploaded, secret

    published = yaml.safe_load(files["training_args.yaml"])
    assert published["dataset_root"] == "<local synthetic folder>" and published["dataset"] == "synthetic"
    assert published["output_dir"] == published["logging_dir"] == "<local path>"
    assert published["model_name_or_path"] == "<local checkpoint>"
    assert published["teacher_name_or_path"] == "org/teacher"  # a Hub id stays
    assert published["extra_paths"] == ["<local path>", "relative/y"]
    assert published["max_steps"] == args["max_steps"] and published["seed"] == args["seed"]
    assert json.loads(files["metrics.json"])["base_model"] == "<local checkpoint>"
    assert files["model.safetensors"] == (folder / "model.safetensors").read_bytes()

    after = _snapshot(folder)  # the run folder is only read (the card is saved as README.md)
    assert {k: v for k, v in after.items() if k != "README.md"} == before


def test_card_lists_the_test_videos_left_out(classifier_dir):
    metrics = {
        **_metrics(),
        "skipped_videos": [
            {
                "index": 3,
                "video_id": "v_Fencing_g01_c02",
                "reason": "truncated or corrupt (moov atom not found)",
            }
        ],
    }
    text = str(assemble_reports(classifier_dir, metrics=[metrics]))
    assert "Left out of the test (1 video, never replaced by another)" in text
    assert "`v_Fencing_g01_c02`: truncated or corrupt (moov atom not found)" in text
