"""The Gradio Space (spaces/app.py): served on 127.0.0.1 and driven through gradio_client.

One tiny classifier checkpoint (6 labels, so top-5 really truncates) with a CKA map and a
robustness chart is written once; the Space is launched once for the module and closed at the end.
The Study tab reads the shipped results (``spaces/examples/study``); the Space is published to
``tests/_local_hub.py`` by ``python -m hf_vssl.hub.space``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np
import pytest
import torch

from hf_vssl import VSSLConfig, VSSLForVideoClassification, VSSLVideoProcessor
from hf_vssl.data.decoding import decode_frames, num_frames, open_video

# Gradio's queue uses pandas options that pandas 3 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")

REPO_ROOT = Path(__file__).resolve().parents[1]
LABELS = dict(enumerate(["left", "right", "up", "down", "orbit", "swing"]))
TINY = {"backbone": "r3d", "width_multiplier": 0.125, "num_frames": 8, "image_size": 32}


def _load_app():
    spec = importlib.util.spec_from_file_location("hf_vssl_space_app", REPO_ROOT / "spaces" / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


app = _load_app()


def _save_chart(path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
    ax.imshow(np.arange(16).reshape(4, 4))
    ax.set_title(title)
    fig.savefig(path)
    plt.close(fig)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("space") / "tiny-classifier"
    torch.manual_seed(0)
    config = VSSLConfig(**TINY, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    VSSLForVideoClassification(config).eval().save_pretrained(folder)
    VSSLVideoProcessor.for_clip(8, 32).save_pretrained(folder)
    _save_chart(folder / "cka.png", "CKA")
    _save_chart(folder / "robustness.png", "robustness")
    metrics = {"dataset": "synthetic", "mode": "finetune", "results": {"video_top1": 0.625, "clip_top5": 1.0}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def space(checkpoint):
    """The Space on a free local port, configured through HFVSSL_SPACE_MODELS; yields its URL."""
    previous = os.environ.get(app.MODELS_ENV_VAR)
    os.environ[app.MODELS_ENV_VAR] = str(checkpoint)
    demo = app.build_demo()
    try:
        demo.launch(**app.launch_kwargs("127.0.0.1", _free_port()), prevent_thread_lock=True, quiet=True)
        yield demo.local_url
    finally:
        demo.close()
        if previous is None:
            os.environ.pop(app.MODELS_ENV_VAR, None)
        else:
            os.environ[app.MODELS_ENV_VAR] = previous


@pytest.fixture(scope="module")
def client(space):
    from gradio_client import Client

    return Client(space, verbose=False)


def _video_file(output) -> str:
    """gradio_client returns a Video output as a path or as ``{"video": path, ...}``."""
    return output["video"] if isinstance(output, dict) else output


def _read_all(path) -> torch.Tensor:
    decoder = open_video(path)
    return decode_frames(decoder, range(num_frames(decoder)))


def test_env_var_overrides_the_default_models(monkeypatch):
    monkeypatch.setenv(app.MODELS_ENV_VAR, " a/one, ./two ,,")
    assert app.default_model_paths() == ["a/one", "./two"]
    monkeypatch.delenv(app.MODELS_ENV_VAR)
    assert app.default_model_paths()  # the checkpoints under outputs/, or the expected default names


def test_predict_through_the_api(client, checkpoint, make_video):
    from gradio_client import handle_file

    video = make_video("clip.mp4", num_frames=30, height=48, width=64)
    clean, noisy, noisy_video, status = client.predict(
        str(checkpoint), handle_file(str(video)), "gaussian", 5, "video-p", api_name="/predict"
    )
    for top in (clean, noisy):
        confidences = {c["label"]: c["confidence"] for c in top["confidences"]}
        assert len(confidences) == 5  # 6 labels, top 5 shown
        assert set(confidences) <= set(LABELS.values())
        assert sum(confidences.values()) <= 1 + 1e-6
        assert top["label"] == max(confidences, key=confidences.get)
    assert "clip.mp4" in status and "severity 5" in status

    # The perturbed clip is a playable mp4 of the central clip, visibly different from it.
    noisy_frames = _read_all(_video_file(noisy_video))
    clean_frames, _ = app.read_clip(video, num_frames=8)
    assert noisy_frames.shape == clean_frames.shape == (8, 3, 48, 64)
    difference = (noisy_frames.float() - clean_frames.float()).abs().mean()
    assert difference > 20, difference


def test_bad_uploads_get_a_friendly_message(client, checkpoint, tmp_path):
    from gradio_client import handle_file

    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path, expected in [(text, "cannot be read as a video"), (empty, "empty (0 bytes)")]:
        clean, noisy, noisy_video, status = client.predict(
            str(checkpoint), handle_file(str(path)), "gaussian", 3, "video-p", api_name="/predict"
        )
        assert not clean and not noisy and noisy_video is None  # a cleared Label arrives as {}
        assert status.startswith("**Could not classify:**") and expected in status, status
        assert "Traceback" not in status

    # The public API only serves the Space's own models: Gradio's dropdown refuses other names,
    # and predict checks them again.
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict(
            "someone/other-model", handle_file(str(text)), "gaussian", 3, "video-p", api_name="/predict"
        )
    with pytest.warns(UserWarning):
        clean, _, _, status = app.predict("someone/other-model", str(text), offered=[str(checkpoint)])
    assert clean is None and "is not one of this Space's models" in status


def test_model_details_show_the_charts(client, checkpoint, tmp_path):
    cka, robustness, details = client.predict(str(checkpoint), api_name="/model_details")
    for image in (cka, robustness):
        assert image is not None and Path(image).stat().st_size > 0
    assert "`r3d`" in details and "6 classes" in details and "Not available" not in details
    assert "Evaluation (finetune, synthetic)" in details and "video_top1: 0.625" in details

    bare = tmp_path / "bare"
    shutil.copytree(checkpoint, bare, ignore=shutil.ignore_patterns("*.png"))
    cka, robustness, details = app.model_details(str(bare))
    assert cka is None and robustness is None
    assert "Not available" in details and "`cka.png`" in details and "`robustness.png`" in details


def test_temporal_perturbation_plays_the_clip_backwards(checkpoint, make_video):
    video = make_video("pan.mp4", num_frames=40, height=48, width=64)
    clean, noisy, noisy_video, status = app.predict(str(checkpoint), str(video), "reversal", 1, "video-p")
    assert clean is not None and noisy is not None, status
    reversed_frames = _read_all(noisy_video).float()
    clean_frames = app.read_clip(video, num_frames=8)[0].float()
    # x264 is lossy: frame 0 of the reversed clip is near the last clean frame, far from the first.
    assert (reversed_frames[0] - clean_frames[-1]).abs().mean() < (
        reversed_frames[0] - clean_frames[0]
    ).abs().mean() / 2


def test_large_frames_are_decoded_at_a_reduced_size(make_video):
    video = make_video("wide.mp4", num_frames=12, height=48, width=64)
    frames, fps = app.read_clip(video, num_frames=8, short_side=32)
    assert frames.shape == (8, 3, 32, 42) and frames.dtype == torch.uint8  # even sizes, aspect kept
    assert fps == 25
    full, _ = app.read_clip(video, num_frames=8)  # already under the cap: decoded as is
    assert full.shape == (8, 3, 48, 64)


def test_hub_model_without_network_has_no_artifacts(checkpoint):
    model = app.load_model(str(checkpoint))
    remote = app.SpaceModel(
        name="someone/not-here",
        source="someone/not-here",
        is_local=False,
        model=model.model,
        processor=model.processor,
    )
    assert app.artifact_path(remote, "cka.png") is None  # HF_HUB_OFFLINE: a clean "not available"


def test_caps_and_bad_inputs_are_reported_not_raised(checkpoint, make_video, tmp_path, monkeypatch):
    import av

    audio = tmp_path / "speech.m4a"
    with av.open(str(audio), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    video = make_video("ok.mp4", num_frames=30, height=48, width=64)

    def message(*args):
        with pytest.warns(UserWarning) as warned:  # gr.Warning outside a request is a Python warning
            clean, noisy, noisy_video, status = app.predict(*args)
        assert clean is None and noisy is None and noisy_video is None
        assert str(warned[0].message) in status
        return status

    model = str(checkpoint)
    assert "no video stream" in message(model, str(audio), "gaussian", 3, "video-p")
    assert "upload a video" in message(model, None, "gaussian", 3, "video-p")
    assert "unknown noise kind" in message(model, str(video), "blur", 3, "video-p")
    assert "severity must be" in message(model, str(video), "gaussian", 9, "video-p")
    assert "does not exist" in message("outputs/no-such-model", str(video), "gaussian", 3, "video-p")

    monkeypatch.setattr(app, "MAX_UPLOAD_BYTES", 100)
    assert "accepts videos up to" in message(model, str(video), "gaussian", 3, "video-p")
    monkeypatch.undo()
    monkeypatch.setattr(app, "MAX_VIDEO_FRAMES", 20)
    assert "too long" in message(model, str(video), "gaussian", 3, "video-p")
    monkeypatch.undo()

    def hanging_decode(*args):
        import time

        time.sleep(2)

    monkeypatch.setattr(app, "_decode_central_clip", hanging_decode)
    monkeypatch.setattr(app, "DECODE_TIMEOUT_S", 0.2)
    assert "took longer than" in message(model, str(video), "gaussian", 3, "video-p")


def test_page_opens_without_any_loadable_model(tmp_path):
    demo = app.build_demo([str(tmp_path / "missing"), "someone/not-on-the-hub"])
    try:
        config = demo.get_config_file()
        text = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
        assert "No model could be loaded" in text and "does not exist" in text
    finally:
        demo.close()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_page_screenshot_is_not_blank(space, tmp_path):
    from PIL import Image

    png = tmp_path / "space.png"
    subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=15000",
            f"--screenshot={png}",
            "--window-size=1280,1600",
            space,
        ],
        capture_output=True,
        timeout=90,
        check=False,
    )
    assert png.is_file() and png.stat().st_size > 0
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert pixels.shape == (1600, 1280)
    assert pixels.std() > 5 and len(np.unique(pixels)) > 16  # text and widgets, not one flat colour


def test_committed_examples_show_what_the_current_generator_renders(tmp_path):
    """`spaces/examples` must be regenerated when the corpus changes (CORPUS_VERSION bumps)."""
    spec = importlib.util.spec_from_file_location(
        "make_space_examples", REPO_ROOT / "spaces" / "make_examples.py"
    )
    make_examples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_examples)
    for fresh in make_examples.make_examples(tmp_path):
        committed = REPO_ROOT / "spaces" / "examples" / fresh.name
        difference = (_read_all(committed).float() - _read_all(fresh).float()).abs().mean()
        # Encoders may differ by a grey level; another scene, object or motion differs by tens.
        assert difference < 1.0, (
            f"{committed} is stale (mean |difference| {difference:.1f}): run spaces/make_examples.py"
        )


def test_study_tab_through_the_api(client):
    """The Study tab renders the shipped results (the miniature study) and serves each page."""
    summary, page, markdown, image = client.predict("examples/study", api_name="/study")
    assert "results rows of" in summary and "Table 6: pretext tasks x noise kinds" in summary
    assert "](" not in summary  # links to files the page cannot serve are plain text
    titles = [choice[0] for choice in page["choices"]]  # the page list arrives as a Dropdown update
    assert page["value"] == titles[0] == "Overview by initialisation" and len(titles) == 14
    assert any(t.startswith("CKA maps per pretext task") for t in titles)
    assert "| init | synthetic motion finetune top-1 (n) |" in markdown
    assert Path(image).stat().st_size > 0

    title = "Relative robustness per noise kind (1 - relative decrease, averaged over severities)"
    markdown, image = client.predict("examples/study", title, api_name="/study_page")
    # The miniature study's measured numbers, as the shipped results rows hold them.
    import pandas as pd

    rows = pd.read_parquet(REPO_ROOT / "spaces" / "examples" / "study" / "results" / "miniature.parquet")
    rotnet = rows[
        (rows["task"] == "rotnet") & (rows["metric"] == "relative_robustness") & (rows["noise"] == "gaussian")
    ]
    row = next(line for line in markdown.splitlines() if line.startswith("| rotnet |"))
    assert row.split(" | ")[1] == f"{rotnet['value'].iloc[0]:.2f}", row
    assert Path(image).stat().st_size > 0

    markdown, image = client.predict("examples/study", "CKA maps per pretext task", api_name="/study_page")
    assert "| rspnet |" in markdown and "| yes |" in markdown  # the maps travel in the results rows

    table3 = "Table 3: pretext tasks under equal constraints (finetune top-1 %)"
    markdown, image = client.predict("examples/study", table3, api_name="/study_page")
    assert "(paper)" in markdown and "78.0" in markdown  # the published numbers beside ours
    assert "![" not in markdown  # the PNG is shown by the image component, not as a broken link


def test_study_tab_refuses_unknown_sources(tmp_path):
    """Only the offered folders are read; a typed name is a Hub dataset id or refused."""
    study = tmp_path / "study"
    (study / "results").mkdir(parents=True)
    (study / "results" / "part.parquet").write_bytes(
        (REPO_ROOT / "spaces" / "examples" / "study" / "results" / "miniature.parquet").read_bytes()
    )
    offered = [str(study)]
    summary, _, markdown, image = app.study_report(str(study), offered=offered)
    import pandas as pd

    rows = len(pd.read_parquet(study / "results" / "part.parquet"))
    assert f"{rows} results rows" in summary and markdown and image is not None
    with pytest.warns(UserWarning):
        summary, _, markdown, image = app.study_report(
            str(REPO_ROOT / "spaces" / "examples" / "study"), offered=offered
        )
    assert "is not one of this Space's studies" in summary and image is None
    with pytest.warns(UserWarning):  # offline: a Hub id is tried, and fails with a message
        summary, *_ = app.study_report("someone/results", offered=offered)
    assert "cannot read the Hub dataset `someone/results`" in summary
    markdown, image = app.study_page(str(study), "no such page", offered=offered)
    assert "No page" in markdown and image is None


def test_committed_study_example_is_the_miniature_study(tmp_path):
    """`spaces/examples/study` must be regenerated when the miniature study's results change."""
    committed = REPO_ROOT / "spaces" / "examples" / "study" / "results" / "miniature.parquet"
    shipped = REPO_ROOT / "docs" / "miniature_study" / "results.parquet"
    assert committed.read_bytes() == shipped.read_bytes(), "stale: run spaces/make_examples.py"


@pytest.mark.filterwarnings("ignore:It seems that you are about to commit a data file")  # the example results
def test_one_command_publishes_the_space_with_hf_vssl_vendored(tmp_path, monkeypatch, capsys):
    """`python -m hf_vssl.hub.space` against the local Hub: a Gradio Space repo whose copy runs."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _local_hub import LocalHub
    from huggingface_hub import HfApi, constants

    from hf_vssl.hub.publish import HubPublishError
    from hf_vssl.hub.space import main, publish_space

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the session is offline (conftest)
    with LocalHub(tokens={"hf_alice": "alice"}, orgs={"org": ["alice"]}) as hub:
        url = main(["--repo_id", "org/hf-vssl-demo", "--token", "hf_alice", "--endpoint", hub.url])
        assert url == f"{hub.url}/spaces/org/hf-vssl-demo" and capsys.readouterr().out.strip() == url
        repo = hub.repos[("space", "org/hf-vssl-demo")]
        assert repo.sdk == "gradio" and len(repo.commits) == 2  # created, then one upload commit
        files = hub.files("org/hf-vssl-demo", repo_type="space")
        for name in ("app.py", "README.md", "requirements.txt", "packages.txt", "examples/move_left.mp4"):
            assert files[name] == (REPO_ROOT / "spaces" / name).read_bytes(), name
        assert "examples/study/results/miniature.parquet" in files
        for name in (
            "hf_vssl/__init__.py",
            "hf_vssl/study/report.py",
            "hf_vssl/study/published/table6_noise.csv",
        ):
            assert files[name] == (REPO_ROOT / name).read_bytes(), name
        assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]

        # A file of an earlier upload that is no longer part of the Space goes away on republish.
        api = HfApi(endpoint=hub.url, token="hf_alice")
        api.upload_file(
            path_or_fileobj=b"old",
            path_in_repo="hf_vssl/removed.py",
            repo_id="org/hf-vssl-demo",
            repo_type="space",
        )
        publish_space("org/hf-vssl-demo", token="hf_alice", endpoint=hub.url)
        files = hub.files("org/hf-vssl-demo", repo_type="space")
        assert "hf_vssl/removed.py" not in files and ".gitattributes" in files

        with pytest.raises(HubPublishError, match="not a Space folder"):
            publish_space("org/other", space_dir=tmp_path, token="hf_alice", endpoint=hub.url)
        with pytest.raises(SystemExit):
            main(["--repo_id", "someone-else/demo", "--token", "hf_alice", "--endpoint", hub.url])
        assert "error:" in capsys.readouterr().err

    # The uploaded tree runs on its own: its vendored hf_vssl is the one imported, and renders the study.
    space = tmp_path / "space"
    for name, data in files.items():
        (space / name).parent.mkdir(parents=True, exist_ok=True)
        (space / name).write_bytes(data)
    script = (
        "import hf_vssl; from hf_vssl.study.report import render_report; "
        "print(hf_vssl.__file__); print(len(render_report('examples/study', 'report')))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=space, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    module_file, count = result.stdout.split()
    assert Path(module_file).is_relative_to(space) and int(count) == 29
