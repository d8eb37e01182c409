"""hf_vssl Space: classify a video with a finetuned hf_vssl model, clean and under noise.

Run locally from the repository root (binds 127.0.0.1:7860):

    .venv/bin/python spaces/app.py
    HFVSSL_SPACE_MODELS=outputs/my-model,org/my-hub-model .venv/bin/python spaces/app.py

The page takes an uploaded video (or a shipped example), reads the central clip the model was
trained on, and shows the top-5 predictions on the clean clip beside those on a perturbed copy
(any pixel noise or temporal perturbation of :mod:`hf_vssl.data.noise`, severity 1-5), with the
perturbed clip playable. The selected model's CKA map (``cka.png``) and robustness chart
(``robustness.png``) are read from its folder or Hub repo when they exist.

Uploads are untrusted: every failure becomes a short message, and decoding is bounded by the
caps below (file size, duration, frame count, resolution, frames decoded, a deadline).

On the Hub the Space repo holds this folder's files next to the ``hf_vssl`` package source
(``hf_vssl/`` beside ``app.py``); in a checkout the package sits one folder up, and the import
below adds the repository root to ``sys.path`` when hf_vssl is not installed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPACE_DIR = Path(__file__).resolve().parent
REPO_ROOT = SPACE_DIR.parent
if importlib.util.find_spec("hf_vssl") is None:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))
import datasets
import gradio as gr
import httpx
import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)
from PIL import Image
from torchcodec.decoders import VideoDecoder
from torchcodec.transforms import Resize
from transformers import AutoConfig, AutoModelForVideoClassification, AutoVideoProcessor

import hf_vssl  # noqa: F401  (registers hf_vssl's Auto classes with transformers)
from hf_vssl.data.decoding import VideoDecodeError, decode_frames, open_video
from hf_vssl.data.noise import NOISE_KINDS, NOISE_PRESETS, PIXEL_NOISES, apply_noise
from hf_vssl.data.video_io import encode_video
from hf_vssl.models.processing_vssl import VSSLVideoProcessor, central_clip_indices
from hf_vssl.study.report import render_report

logger = logging.getLogger("hf_vssl.space")

# ---------------------------------------------------------------------------------------------
# Settings. The caps bound what one request may cost; a refused video gets a message naming them.
# ---------------------------------------------------------------------------------------------

#: Comma-separated model folders or Hub ids; overrides :data:`DEFAULT_MODELS`.
MODELS_ENV_VAR = "HFVSSL_SPACE_MODELS"
#: What the default runs write (recipes/pretrain.py, then recipes/finetune.py on its output),
#: relative to the repository root; every other
#: classifier checkpoint found under ``outputs/`` is offered too.
DEFAULT_MODELS = ("outputs/rspnet-r21d-synthetic-finetune-synthetic",)
OUTPUTS_DIR = REPO_ROOT / "outputs"
EXAMPLES_DIR = SPACE_DIR / "examples"

#: Largest accepted upload (also handed to Gradio, which refuses bigger uploads itself).
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
#: Longest accepted video, by duration and by frame count (2 min at 60 fps).
MAX_DURATION_S = 120.0
MAX_VIDEO_FRAMES = 7200
#: Largest accepted frame (4K UHD); larger sources are refused before any frame is decoded.
MAX_SOURCE_PIXELS = 3840 * 2160
#: Frames are decoded straight to this shortest side (or the model's resize size when larger),
#: so a clip never holds full-resolution frames: 16 frames of 16:9 video at 256 px ~ 11 MB.
DECODE_SHORT_SIDE = 256
#: Most frames one clip may decode (a model asking for more is refused at load time).
MAX_CLIP_FRAMES = 64
#: Deadline for opening and decoding one upload. Decoding runs in a worker thread; past the
#: deadline the request gets a message (the caps above bound what the thread still does).
DECODE_TIMEOUT_S = 30.0
DECODE_WORKERS = 2
#: Predictions shown per clip.
TOP_K = 5
#: The noise of a given (video, kind, severity) is the same on every run.
NOISE_SEED = 0
#: Frame rate of the perturbed clip when the source does not state one.
FALLBACK_FPS = 25.0
#: Perturbed clips older than this are deleted from the Space's temp folder.
OUTPUT_MAX_AGE_S = 3600

#: (perturbation, severity) given to the shipped examples in turn, to show both families.
EXAMPLE_SETTINGS = (("gaussian", 3), ("reversal", 1), ("frozen", 4), ("shot", 4))

CLASSIFIER_ARCHITECTURE = "VSSLForVideoClassification"
ARTIFACTS = {"cka": "cka.png", "robustness": "robustness.png"}


class SpaceError(Exception):
    """A problem to show the user as is (bad upload, unloadable model); never a traceback."""


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


@dataclass
class SpaceModel:
    """A loaded classifier, its processor and where it came from (a local folder or a Hub id)."""

    name: str
    source: str
    is_local: bool
    model: torch.nn.Module
    processor: VSSLVideoProcessor

    @property
    def labels(self) -> list[str]:
        id2label = self.model.config.id2label
        return [id2label[i] for i in sorted(id2label)]

    @property
    def num_frames(self) -> int:
        return int(self.processor.num_frames)

    @property
    def frame_stride(self) -> int:
        return int(getattr(self.processor, "frame_stride", 1) or 1)

    @property
    def decode_short_side(self) -> int:
        resize = self.processor.size or {}
        return max(DECODE_SHORT_SIDE, int(resize.get("shortest_edge") or 0))


_MODELS: dict[str, SpaceModel] = {}
_MODELS_LOCK = threading.Lock()


def default_model_paths() -> list[str]:
    """The models the Space offers: ``$HFVSSL_SPACE_MODELS`` if set, else the local checkpoints.

    Without the variable: :data:`DEFAULT_MODELS`, then every classifier checkpoint (a folder
    whose ``config.json`` names ``VSSLForVideoClassification``) one or two levels under
    ``outputs/``. When nothing exists the defaults are still returned, so the page can say
    which checkpoint it expected.
    """
    override = os.environ.get(MODELS_ENV_VAR, "")
    if override.strip():
        return [name.strip() for name in override.split(",") if name.strip()]
    found = [name for name in DEFAULT_MODELS if (REPO_ROOT / name / "config.json").is_file()]
    if OUTPUTS_DIR.is_dir():
        for config in sorted([*OUTPUTS_DIR.glob("*/config.json"), *OUTPUTS_DIR.glob("*/*/config.json")]):
            try:
                architectures = json.loads(config.read_text()).get("architectures") or []
            except (OSError, ValueError):
                continue
            name = config.parent.relative_to(REPO_ROOT).as_posix()
            if CLASSIFIER_ARCHITECTURE in architectures and name not in found:
                found.append(name)
    return found or list(DEFAULT_MODELS)


def _resolve_source(name: str) -> tuple[str, bool]:
    """``(source, is_local)``: an existing folder (as given, or under the repo root) or a Hub id."""
    for candidate in (Path(name).expanduser(), REPO_ROOT / name):
        if candidate.is_dir():
            return str(candidate.resolve()), True
    # Hub ids are `name` or `org/name`; anything else was meant as a folder.
    if name.startswith((".", "/", "~", "outputs/")) or name.count("/") > 1:
        raise SpaceError(f"model folder `{name}` does not exist (train one, or set {MODELS_ENV_VAR})")
    return name, False


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_model(name: str) -> SpaceModel:
    """Load classifier ``name`` (a local folder or a Hub id) once; later calls reuse it.

    Raises:
        SpaceError: the folder is missing, the Hub cannot be reached, or the checkpoint is not
            an hf_vssl video classifier.
    """
    with _MODELS_LOCK:
        if name in _MODELS:
            return _MODELS[name]
        source, is_local = _resolve_source(name)
        try:
            config = AutoConfig.from_pretrained(source)
            if CLASSIFIER_ARCHITECTURE not in (config.architectures or []) or not config.id2label:
                raise SpaceError(
                    f"`{name}` is not a finetuned hf_vssl classifier (architectures: {config.architectures}); "
                    "pretraining checkpoints have no class labels"
                )
            model = AutoModelForVideoClassification.from_pretrained(source).eval()
            try:
                processor = AutoVideoProcessor.from_pretrained(source)
            except (OSError, ValueError):  # checkpoints saved without their processor
                processor = VSSLVideoProcessor.for_clip(config.num_frames, config.image_size)
        except SpaceError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            where = "folder" if is_local else "Hub repo"
            raise SpaceError(f"cannot load model {where} `{name}`: {_first_line(error)}") from error
        loaded = SpaceModel(name=name, source=source, is_local=is_local, model=model, processor=processor)
        if loaded.num_frames > MAX_CLIP_FRAMES:
            raise SpaceError(
                f"`{name}` reads {loaded.num_frames}-frame clips; this Space decodes at most "
                f"{MAX_CLIP_FRAMES} frames per clip"
            )
        _MODELS[name] = loaded
        return loaded


def load_models(names: list[str]) -> tuple[list[SpaceModel], dict[str, str]]:
    """Load every model that loads; return them and ``{name: why it failed}`` for the others."""
    loaded, failed = [], {}
    for name in names:
        try:
            loaded.append(load_model(name))
        except SpaceError as error:
            failed[name] = str(error)
    return loaded, failed


# ---------------------------------------------------------------------------------------------
# Bounded decoding of the central clip
# ---------------------------------------------------------------------------------------------

_DECODE_POOL = concurrent.futures.ThreadPoolExecutor(
    max_workers=DECODE_WORKERS, thread_name_prefix="space-decode"
)


def _human_size(num_bytes: int) -> str:
    if num_bytes < 1024:
        return f"{num_bytes} bytes"
    if num_bytes < 1024 * 1024:
        return f"{num_bytes / 1024:.0f} KB"
    return f"{num_bytes / 1024 / 1024:.0f} MB"


def _check_upload(path: Path) -> None:
    """File-level checks that need no decoder."""
    if not path.is_file():
        raise SpaceError("the uploaded file is missing; please upload it again")
    size = path.stat().st_size
    if size == 0:
        raise SpaceError(f"`{path.name}` is empty (0 bytes); please upload a video file")
    if size > MAX_UPLOAD_BYTES:
        raise SpaceError(
            f"`{path.name}` is {_human_size(size)}; this Space accepts videos up to "
            f"{_human_size(MAX_UPLOAD_BYTES)}"
        )


def _decode_central_clip(
    path: Path, num_frames: int, frame_stride: int, short_side: int
) -> tuple[torch.Tensor, float]:
    """Open ``path``, enforce the caps, decode the central clip -> (uint8 (T, C, H, W), fps)."""
    try:
        probe = open_video(path, name=path.name)  # approximate mode: reads the header, not the file
    except VideoDecodeError as error:
        raise SpaceError(f"`{path.name}` cannot be read as a video: {error.reason}") from error
    meta = probe.metadata
    total = int(meta.num_frames)
    duration = float(meta.duration_seconds or 0.0)
    height, width = int(meta.height), int(meta.width)
    if duration > MAX_DURATION_S or total > MAX_VIDEO_FRAMES:
        raise SpaceError(
            f"`{path.name}` is too long ({duration:.0f} s, {total} frames); this Space accepts up to "
            f"{MAX_DURATION_S:.0f} s and {MAX_VIDEO_FRAMES} frames. Trim it and try again"
        )
    if height * width > MAX_SOURCE_PIXELS:
        raise SpaceError(f"`{path.name}` is {width}x{height}; this Space accepts frames up to 3840x2160")
    decoder = probe
    if min(height, width) > short_side:
        # Decode straight to a small size (FFmpeg scales each frame as it comes out).
        scale = short_side / min(height, width)
        size = (max(2, round(height * scale / 2) * 2), max(2, round(width * scale / 2) * 2))
        seek_mode = "approximate" if meta.num_frames_from_header else "exact"
        decoder = VideoDecoder(str(path), seek_mode=seek_mode, transforms=[Resize(size)])
    indices = central_clip_indices(total, num_frames, frame_stride)
    try:
        frames = decode_frames(decoder, indices, name=path.name)
    except (VideoDecodeError, IndexError) as error:
        reason = error.reason if isinstance(error, VideoDecodeError) else str(error)
        raise SpaceError(f"`{path.name}` could not be decoded: {reason}") from error
    fps = float(meta.average_fps or 0.0)
    return frames, (fps if math.isfinite(fps) and fps > 0 else FALLBACK_FPS)


def read_clip(
    video_path: str | os.PathLike, num_frames: int, frame_stride: int = 1, short_side: int = DECODE_SHORT_SIDE
) -> tuple[torch.Tensor, float]:
    """The central clip of an untrusted video as uint8 ``(T, C, H, W)`` and the source fps.

    Only the clip's frames are decoded, at most :data:`DECODE_SHORT_SIDE` pixels on the short
    side, within :data:`DECODE_TIMEOUT_S` seconds.

    Raises:
        SpaceError: with a message for the user (empty, too large, too long, not a video, ...).
    """
    path = Path(video_path)
    _check_upload(path)
    future = _DECODE_POOL.submit(_decode_central_clip, path, num_frames, frame_stride, short_side)
    try:
        return future.result(timeout=DECODE_TIMEOUT_S)
    except concurrent.futures.TimeoutError as error:
        future.cancel()  # only helps while it is still queued behind other decodes
        raise SpaceError(
            f"reading `{path.name}` took longer than {DECODE_TIMEOUT_S:g} s; try a shorter or smaller video"
        ) from error
    except (RuntimeError, ValueError) as error:  # anything torchcodec raised past open_video's checks
        raise SpaceError(f"`{path.name}` could not be decoded: {_first_line(error)}") from error


# ---------------------------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------------------------

_OUTPUT_DIR = Path(tempfile.mkdtemp(prefix="hf_vssl_space_"))


def _top_k(probabilities: torch.Tensor, labels: list[str], k: int = TOP_K) -> dict[str, float]:
    scores, indices = probabilities.topk(min(k, probabilities.numel()))
    return {labels[i]: round(float(s), 6) for s, i in zip(scores.tolist(), indices.tolist())}


@torch.inference_mode()
def classify(space_model: SpaceModel, clips: list[torch.Tensor]) -> torch.Tensor:
    """Class probabilities ``(len(clips), num_labels)`` for uint8 ``(T, C, H, W)`` clips."""
    batch = space_model.processor(clips, do_sample_frames=False, return_tensors="pt")
    logits = space_model.model(pixel_values=batch["pixel_values"]).logits
    return logits.float().softmax(dim=-1)


def _write_preview(frames: torch.Tensor, fps: float) -> str:
    """Encode ``frames`` as a browser-playable H.264 mp4 in the Space's temp folder."""
    cutoff = time.time() - OUTPUT_MAX_AGE_S
    for old in _OUTPUT_DIR.glob("*.mp4"):
        if old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)
    height, width = frames.shape[-2] // 2 * 2, frames.shape[-1] // 2 * 2  # yuv420p needs even sizes
    path = _OUTPUT_DIR / f"perturbed-{uuid.uuid4().hex[:12]}.mp4"
    encode_video(frames[..., :height, :width], path, fps=fps)
    return str(path)


def _check_choice(noise_kind: str, severity: Any, preset: str) -> int:
    if noise_kind not in NOISE_KINDS:
        raise SpaceError(f"unknown noise kind `{noise_kind}`; choose one of {', '.join(NOISE_KINDS)}")
    if preset not in NOISE_PRESETS:
        raise SpaceError(f"unknown preset `{preset}`; choose one of {', '.join(NOISE_PRESETS)}")
    try:
        level = int(severity)
    except (TypeError, ValueError):
        level = -1
    if level != severity or not 1 <= level <= 5:
        raise SpaceError(f"severity must be a whole number from 1 to 5, got {severity!r}")
    return level


def _check_offered(model_name: str | None, offered: Collection[str] | None) -> str:
    if not model_name:
        raise SpaceError("no model is loaded; see the note at the top of the page")
    if offered is not None and model_name not in offered:
        # The page's API is public: never let a caller make the Space load an arbitrary repo.
        raise SpaceError(f"`{model_name}` is not one of this Space's models ({', '.join(offered) or 'none'})")
    return model_name


def predict(
    model_name: str,
    video_path: str | None,
    noise_kind: str = "gaussian",
    severity: int = 3,
    preset: str = "video-p",
    *,
    offered: Collection[str] | None = None,
) -> tuple[dict[str, float] | None, dict[str, float] | None, str | None, str]:
    """Classify the central clip of ``video_path`` clean and perturbed.

    Returns ``(top5_clean, top5_noisy, noisy_video_path, status_markdown)``: label -> probability
    dicts (the Gradio ``Label`` format), the perturbed clip as an mp4, and a one-paragraph summary.
    ``offered`` limits ``model_name`` to those names (the page passes its dropdown's choices).
    Every problem (bad upload, unloadable model, bad choice) comes back as ``(None, None, None,
    message)`` and a ``gr.Warning``; nothing raises.
    """
    try:
        _check_offered(model_name, offered)
        if not video_path:
            raise SpaceError("upload a video or pick one of the examples first")
        level = _check_choice(noise_kind, severity, preset)
        space_model = load_model(model_name)
        frames, fps = read_clip(
            video_path, space_model.num_frames, space_model.frame_stride, space_model.decode_short_side
        )
        generator = torch.Generator().manual_seed(NOISE_SEED)
        noisy = apply_noise(frames, noise_kind, level, preset, generator=generator)
        probabilities = classify(space_model, [frames, noisy])
        clean_top, noisy_top = (_top_k(p, space_model.labels) for p in probabilities)
        preview = _write_preview(noisy, fps)
    except SpaceError as error:
        message = str(error)
        gr.Warning(message)
        return None, None, None, f"**Could not classify:** {message}"
    except Exception:  # the request boundary: log the traceback here, show the user one line
        logger.exception("predict failed for model %r on %r", model_name, video_path)
        message = (
            f"something went wrong while classifying `{Path(video_path).name}`; please try another video"
        )
        gr.Warning(message)
        return None, None, None, f"**Could not classify:** {message}"
    clean_label, clean_score = next(iter(clean_top.items()))
    noisy_label, noisy_score = next(iter(noisy_top.items()))
    changed = "unchanged" if clean_label == noisy_label else "**changed**"
    kind_text = (
        f"{noise_kind} noise" if noise_kind in PIXEL_NOISES else f"temporal perturbation `{noise_kind}`"
    )
    status = (
        f"`{Path(video_path).name}`: central clip of {frames.shape[0]} frames (stride {space_model.frame_stride}), "
        f"decoded at {frames.shape[-1]}x{frames.shape[-2]}. With {kind_text}, severity {level} ({preset}), "
        f"the top prediction is {changed}: **{clean_label}** ({clean_score:.1%}) -> "
        f"**{noisy_label}** ({noisy_score:.1%})."
    )
    return clean_top, noisy_top, preview, status


# ---------------------------------------------------------------------------------------------
# Model artifacts (CKA map, robustness chart, metrics)
# ---------------------------------------------------------------------------------------------

_HUB_ERRORS = (
    EntryNotFoundError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    HFValidationError,
    HfHubHTTPError,
    httpx.HTTPError,
    OSError,
    ValueError,
)


def artifact_path(space_model: SpaceModel, filename: str) -> Path | None:
    """``filename`` from the model's folder or Hub repo, or None when it is not available."""
    if space_model.is_local:
        path = Path(space_model.source) / filename
        return path if path.is_file() else None
    try:
        return Path(hf_hub_download(space_model.source, filename))
    except _HUB_ERRORS as error:
        logger.info("%s has no %s: %s", space_model.source, filename, _first_line(error))
        return None


def _load_image(path: Path | None) -> Image.Image | None:
    if path is None:
        return None
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError):
        return None


def _metrics_lines(space_model: SpaceModel) -> list[str]:
    """The headline numbers of ``metrics.json`` (written by recipes/finetune.py), as Markdown."""
    path = artifact_path(space_model, "metrics.json")
    try:
        metrics = json.loads(path.read_text()) if path else {}
    except (OSError, ValueError):
        return []
    if not isinstance(metrics, dict):
        return []
    results = metrics.get("results") if isinstance(metrics.get("results"), dict) else metrics
    numbers = {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    lines = [f"- {key}: {value:.4g}" for key, value in list(numbers.items())[:8]]
    if lines and metrics.get("dataset"):
        lines.insert(0, f"Evaluation ({metrics.get('mode', 'finetune')}, {metrics['dataset']}):")
    return lines


def model_details(
    model_name: str | None,
    *,
    offered: Collection[str] | None = None,
) -> tuple[Image.Image | None, Image.Image | None, str]:
    """``(cka_image, robustness_image, markdown)`` for the selected model (one of ``offered``)."""
    if not model_name:
        return None, None, ""
    try:
        space_model = load_model(_check_offered(model_name, offered))
    except SpaceError as error:
        return None, None, f"**{error}**"
    config = space_model.model.config
    images = {key: _load_image(artifact_path(space_model, filename)) for key, filename in ARTIFACTS.items()}
    missing = [ARTIFACTS[key] for key, image in images.items() if image is None]
    where = "folder" if space_model.is_local else "Hub repo"
    lines = [
        (
            f"**{model_name}**: backbone `{config.backbone}`, clips of {space_model.num_frames} frames at "
            f"{config.image_size}x{config.image_size}, {len(space_model.labels)} classes."
        ),
        *_metrics_lines(space_model),
    ]
    if missing:
        lines.append(f"Not available in this model's {where}: {', '.join(f'`{m}`' for m in missing)}.")
    return images["cka"], images["robustness"], "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The study report (tables and figures rendered from a results dataset)
# ---------------------------------------------------------------------------------------------

#: Comma-separated study folders or Hub dataset ids the Study tab offers; overrides the default.
STUDIES_ENV_VAR = "HFVSSL_SPACE_STUDIES"
#: The shipped results dataset (the miniature study's numbers), relative to this folder.
DEFAULT_STUDIES = ("examples/study",)
#: Most results rows read from a Hub dataset typed into the page (the rest are left out, and said so).
MAX_STUDY_ROWS = 100_000
_HUB_DATASET_ID = re.compile(r"^[\w.\-]+/[\w.\-]+$")
_MARKDOWN_IMAGE = re.compile(r"\s*!\[[^\]]*\]\([^)]*\)")
_PNG_LINK = re.compile(r" \(\[PNG\]\([^)]*\)\)")
_MARKDOWN_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


@dataclass(frozen=True)
class StudyPage:
    """One page of a rendered study report: its title, Markdown (without the image) and PNG."""

    title: str
    markdown: str
    image: Path


#: source -> (rendered at, folder, report). Offered folders are kept; Hub reports are redone
#: once older than OUTPUT_MAX_AGE_S (the dataset may have grown), and their folders deleted.
_STUDY_REPORTS: dict[str, tuple[float, Path, tuple[str, list[StudyPage]]]] = {}
_STUDY_LOCK = threading.Lock()


def default_study_sources() -> list[str]:
    """The results the Study tab offers: ``$HFVSSL_SPACE_STUDIES`` if set, else the shipped example."""
    override = os.environ.get(STUDIES_ENV_VAR, "")
    names = [name.strip() for name in override.split(",") if name.strip()]
    return names or list(DEFAULT_STUDIES)


def _study_folder(source: str) -> Path | None:
    for candidate in (Path(source).expanduser(), SPACE_DIR / source):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def _hub_results(repo_id: str) -> datasets.Dataset:
    """At most :data:`MAX_STUDY_ROWS` rows of a Hub results dataset, streamed (never all of a big one)."""
    try:
        stream = datasets.load_dataset(repo_id, split="train", streaming=True)
        rows = list(stream.take(MAX_STUDY_ROWS + 1))
    except (OSError, ValueError, HfHubHTTPError, httpx.HTTPError) as error:
        raise SpaceError(f"cannot read the Hub dataset `{repo_id}`: {_first_line(error)}") from error
    if not rows:
        raise SpaceError(f"the Hub dataset `{repo_id}` has no rows")
    if len(rows) > MAX_STUDY_ROWS:
        gr.Warning(
            f"`{repo_id}` has more than {MAX_STUDY_ROWS} rows; the report shows the first {MAX_STUDY_ROWS}"
        )
    return datasets.Dataset.from_list(rows[:MAX_STUDY_ROWS])


def load_study(source: str, offered: Collection[str] | None = None) -> tuple[str, list[StudyPage]]:
    """``(summary markdown, pages)`` of the report rendered from ``source``.

    ``source`` is one of ``offered`` (a study folder, here or relative to this folder, or a Hub
    dataset id) or any Hub dataset id ``org/name``: a name typed into the page never reads a local
    folder. Reports are rendered once and reused (a Hub dataset's for :data:`OUTPUT_MAX_AGE_S`).

    Raises:
        SpaceError: an unknown source, an unreadable dataset or results without the report's columns.
    """
    source = (source or "").strip()
    folder = _study_folder(source) if offered is None or source in offered else None
    if folder is None and not _HUB_DATASET_ID.match(source):
        raise SpaceError(f"`{source}` is not one of this Space's studies nor a Hub dataset id (org/name)")
    with _STUDY_LOCK:
        cutoff = time.time() - OUTPUT_MAX_AGE_S
        for name, (rendered_at, old, _) in list(_STUDY_REPORTS.items()):
            if name not in (offered or ()) and rendered_at < cutoff:
                shutil.rmtree(old, ignore_errors=True)
                del _STUDY_REPORTS[name]
        if source in _STUDY_REPORTS:
            return _STUDY_REPORTS[source][2]
    out = _OUTPUT_DIR / "study" / uuid.uuid4().hex[:12]
    try:
        written = render_report(folder if folder is not None else _hub_results(source), out)
    except ValueError as error:
        raise SpaceError(f"cannot render `{source}`: {_first_line(error)}") from error
    index, pages = written[0], []
    for markdown, image in zip(written[1::2], written[2::2]):
        title, _, text = markdown.read_text().partition("\n")
        pages.append(StudyPage(title.lstrip("# "), _MARKDOWN_IMAGE.sub("", text).strip(), image))
    summary = _PNG_LINK.sub("", index.read_text().partition("\n")[2]).strip()
    report = (_MARKDOWN_LINK.sub(r"\1", summary), pages)
    with _STUDY_LOCK:
        _STUDY_REPORTS[source] = (time.time(), out, report)
    return report


def study_report(source: str, *, offered: Collection[str] | None = None):
    """``(summary, page dropdown, first page markdown, first page image)`` for ``source``.

    Problems come back as a message in the summary (and a ``gr.Warning``); nothing raises.
    """
    try:
        summary, pages = load_study(source, offered)
    except SpaceError as error:
        gr.Warning(str(error))
        return f"**Could not load the study:** {error}", gr.Dropdown(choices=[], value=None), "", None
    first = pages[0]
    choices = [page.title for page in pages]
    return summary, gr.Dropdown(choices=choices, value=first.title), first.markdown, _load_image(first.image)


def study_page(source: str, title: str | None, *, offered: Collection[str] | None = None):
    """``(markdown, image)`` of the report page ``title`` of ``source``."""
    try:
        _, pages = load_study(source, offered)
    except SpaceError as error:
        return f"**{error}**", None
    page = next((p for p in pages if p.title == title), None)
    if page is None:
        return f"**No page `{title}` in this report.**", None
    return page.markdown, _load_image(page.image)


STUDY_DESCRIPTION = """Tables and figures of a study (`recipes/study.py`), rendered from its results
dataset: pick one of the offered results or type a Hub dataset id (`org/name`), then **Show**. The
`(paper)` columns hold the published numbers of the study hf_vssl implements; `n/a` marks cells
without results. The default is the miniature study (a small r21d on the built-in synthetic corpus).
"""


def _study_tab(demo: gr.Blocks, sources: list[str]) -> None:
    """The Study tab's components and events (inside an open ``gr.Blocks``); filled on page load."""
    gr.Markdown(STUDY_DESCRIPTION)
    with gr.Row():
        source = gr.Dropdown(
            sources, value=sources[0] if sources else None, label="Results", allow_custom_value=True, scale=4
        )
        show = gr.Button("Show", variant="primary", scale=1)
    summary = gr.Markdown()
    page = gr.Dropdown([], label="Table or figure")
    page_markdown = gr.Markdown()
    page_image = gr.Image(label="Figure", type="pil", interactive=False)
    report = functools.partial(study_report, offered=sources)
    outputs = [summary, page, page_markdown, page_image]
    show.click(report, inputs=source, outputs=outputs, api_name="study")
    demo.load(report, inputs=source, outputs=outputs, api_name=False)
    page.input(
        functools.partial(study_page, offered=sources),
        inputs=[source, page],
        outputs=[page_markdown, page_image],
        api_name="study_page",
    )


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------

DESCRIPTION = """# hf_vssl: video classification under noise
Upload a short video (up to {max_mb}, {max_s} s) or pick an example. The model reads the clip
from the middle of the video; the right column shows what it predicts when the same clip is
perturbed with a pixel noise (gaussian, shot, impulse, speckle) or a temporal perturbation
(sampling rate, reversal, jumbled segments, frozen frames) at severity 1-5.
"""


def _no_model_note(failed: dict[str, str]) -> str:
    reasons = "\n".join(f"- {reason}" for reason in failed.values()) or "- no model was configured"
    return (
        f"### No model could be loaded\n{reasons}\n\nTrain and finetune one (see the project README), "
        f"or point `{MODELS_ENV_VAR}` at model folders or Hub ids (comma-separated)."
    )


def build_demo(model_paths: list[str] | None = None, study_sources: list[str] | None = None) -> gr.Blocks:
    """The Space's page: a "Classify" tab for ``model_paths`` and a "Study" tab for ``study_sources``.

    ``model_paths`` defaults to :func:`default_model_paths`, ``study_sources`` to
    :func:`default_study_sources`. Models that fail to load are listed in a note at the top of the
    Classify tab; with none at all the page still opens and says why. The prediction event is
    exposed on the API as ``/predict``, the model details as ``/model_details``, the study report
    as ``/study`` and one of its pages as ``/study_page``.
    """
    with gr.Blocks(title="hf_vssl video classification under noise", delete_cache=(3600, 3600)) as demo:
        with gr.Tab("Classify"):
            _classify_tab(list(model_paths) if model_paths is not None else default_model_paths())
        with gr.Tab("Study"):
            _study_tab(demo, list(study_sources) if study_sources is not None else default_study_sources())
    return demo


def _classify_tab(names: list[str]) -> None:
    """The classification tab's components and events (inside an open ``gr.Blocks``)."""
    loaded, failed = load_models(names)
    choices = [m.name for m in loaded]
    examples = sorted(EXAMPLES_DIR.glob("*.mp4"))
    gr.Markdown(DESCRIPTION.format(max_mb=_human_size(MAX_UPLOAD_BYTES), max_s=int(MAX_DURATION_S)))
    if not loaded:
        gr.Markdown(_no_model_note(failed))
    elif failed:
        gr.Markdown("Some models could not be loaded:\n" + "\n".join(f"- {r}" for r in failed.values()))
    with gr.Row():
        with gr.Column():
            model_name = gr.Dropdown(choices, value=choices[0] if choices else None, label="Model")
            video = gr.Video(label="Video", sources=["upload"], include_audio=True)
            with gr.Row():
                noise_kind = gr.Dropdown(list(NOISE_KINDS), value="gaussian", label="Perturbation")
                severity = gr.Slider(1, 5, value=3, step=1, label="Severity")
                preset = gr.Radio(list(NOISE_PRESETS), value="video-p", label="Noise preset")
            run = gr.Button("Classify", variant="primary")
            if examples:
                settings = [EXAMPLE_SETTINGS[i % len(EXAMPLE_SETTINGS)] for i in range(len(examples))]
                gr.Examples(
                    [[str(p), kind, level, "video-p"] for p, (kind, level) in zip(examples, settings)],
                    inputs=[video, noise_kind, severity, preset],
                    cache_examples=False,
                )
        with gr.Column():
            status = gr.Markdown("Upload a video or pick an example, then press **Classify**.")
            with gr.Row():
                clean_top = gr.Label(num_top_classes=TOP_K, label="Clean clip: top 5")
                noisy_top = gr.Label(num_top_classes=TOP_K, label="Perturbed clip: top 5")
            noisy_video = gr.Video(
                label="Perturbed clip (what the model saw)", interactive=False, autoplay=True, loop=True
            )
    gr.Markdown("## About the model")
    # The first model's details are rendered with the page (no load event to wait for).
    first_cka, first_robustness, first_details = model_details(
        choices[0] if choices else None, offered=choices
    )
    details = gr.Markdown(first_details)
    with gr.Row():
        cka = gr.Image(first_cka, label="CKA map (cka.png)", type="pil", interactive=False)
        robustness = gr.Image(
            first_robustness, label="Robustness (robustness.png)", type="pil", interactive=False
        )

    run.click(
        functools.partial(predict, offered=choices),
        inputs=[model_name, video, noise_kind, severity, preset],
        outputs=[clean_top, noisy_top, noisy_video, status],
        api_name="predict",
    )
    model_name.change(
        functools.partial(model_details, offered=choices),
        inputs=model_name,
        outputs=[cka, robustness, details],
        api_name="model_details",
    )


def launch_kwargs(host: str | None = None, port: int | None = None) -> dict[str, Any]:
    """Arguments for ``demo.launch``: local-only by default, uploads capped, examples servable."""
    return {
        "server_name": host or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        "server_port": port or int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        "max_file_size": MAX_UPLOAD_BYTES,
        "allowed_paths": [str(EXAMPLES_DIR)],
    }


def main(argv: list[str] | None = None) -> None:
    """Launch the Space (``python spaces/app.py [--models a,b] [--host H] [--port P]``)."""
    parser = argparse.ArgumentParser(description="hf_vssl Gradio Space")
    parser.add_argument(
        "--models",
        help=f"comma-separated model folders or Hub ids (default: ${MODELS_ENV_VAR} "
        "or the checkpoints under outputs/)",
    )
    parser.add_argument(
        "--studies",
        help=f"comma-separated study folders or Hub dataset ids for the Study tab (default: ${STUDIES_ENV_VAR} "
        "or examples/study)",
    )
    parser.add_argument("--host", help="address to bind (default 127.0.0.1; Spaces set GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, help="port (default 7860)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    studies = [m.strip() for m in args.studies.split(",") if m.strip()] if args.studies else None
    build_demo(models, studies).launch(**launch_kwargs(args.host, args.port))


if __name__ == "__main__":
    main()
