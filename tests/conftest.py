"""Shared test fixtures. Every test runs offline: nothing may reach the Hub."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from accelerate.state import AcceleratorState


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models: tiny convolutions gain nothing from more, and
    on a shared 2-core machine a second spinning thread makes steps 10-50x slower. Restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Each test's runs build their Accelerator afresh: Accelerate keeps its state per process and
    refuses another precision (or reading ACCELERATE_MIXED_PRECISION again) once initialised.
    Reset before (after module fixtures that trained something) and after each test."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture
def make_video(tmp_path):
    """Factory writing a real encoded video of moving noise; returns its path.

    ``make_video(name="clip.mp4", num_frames=24, height=48, width=64, fps=25, **encode_kwargs)``.
    """
    from hf_vssl.data.video_io import encode_video

    def _make(
        name: str = "clip.mp4",
        num_frames: int = 24,
        height: int = 48,
        width: int = 64,
        fps: float = 25,
        seed: int = 0,
        **kwargs,
    ):
        generator = torch.Generator().manual_seed(seed)
        base = torch.randint(0, 256, (3, height, width + num_frames), generator=generator, dtype=torch.uint8)
        frames = torch.stack([base[:, :, t : t + width] for t in range(num_frames)])  # a panning texture
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        encode_video(frames, path, fps=fps, **kwargs)
        return path

    return _make


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A small synthetic corpus (UCF101 layout, 4 motion classes x 8 videos of 64 frames at 48x48)."""
    from hf_vssl.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny_corpus")
    return make_synthetic_dataset(
        root / "ucf101",
        layout="ucf101",
        seed=0,
        num_classes=4,
        videos_per_class=8,
        clips_per_group=2,
        num_frames=64,
        size=(48, 48),
    )


@pytest.fixture(scope="session")
def real_videos(tmp_path_factory):
    """name -> path of each container/codec combination of ``_real_videos`` (XVID+MP3 AVI,
    1080p H.264 AVI, VFR MP4, rotated MOV), encoded once per session."""
    from _real_videos import REAL_VIDEO_MAKERS

    root = tmp_path_factory.mktemp("real_videos")
    return {name: make(root / name) for name, make in REAL_VIDEO_MAKERS.items()}
