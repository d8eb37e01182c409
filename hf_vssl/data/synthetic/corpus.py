"""Corpus assembly: who is in which class, group and split; the videos and the layout's files.

Clips of one *group* (UCF101's ``gXX``) share a background scene, and the official split files
never put one group in both train and test, as in UCF101. Group ``g`` of every class shows the
same scene, so the background says nothing about the label: a model cannot pass the training
set by remembering scenes (with class-specific scenes it did, and failed on the held-out ones).

The layout's annotation files are written by the writer of the source that reads them
(:attr:`hf_vssl.data.sources.SourceSpec.write_annotations`), so a layout is defined in one place.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import string
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from hf_vssl.data.sources import SOURCES
from hf_vssl.data.sources.synthetic import METADATA_FILE
from hf_vssl.data.video_io import encode_video

from .classes import LABEL_SETS, class_names, layout_class_name, ssv2_template
from .render import render_video
from .spec import sample_scene, sample_video_spec

#: bump when the rendering or the layouts change: cached corpora of another version are redone.
CORPUS_VERSION = 3
#: written last by :func:`make_synthetic_dataset`; a corpus without it is incomplete.
COMPLETE_MARKER = ".hf_vssl_complete"
LAYOUTS: tuple[str, ...] = ("ucf101", "hmdb51", "kinetics400", "ssv2", "diving48", "videofolder")
#: container written for each layout (the codec follows from it in ``encode_video``).
LAYOUT_EXTENSIONS: dict[str, str] = {
    "ucf101": "avi",
    "hmdb51": "avi",
    "kinetics400": "mp4",
    "ssv2": "webm",
    "diving48": "mp4",
    "videofolder": "mp4",
}


def _fold_test_groups(num_groups: int, fold: int) -> set[int]:
    """Groups held out in ``fold`` (1-based): consecutive blocks of ~30 %, like UCF101's lists."""
    block = max(1, round(num_groups * 0.3))
    return {((fold - 1) * block + m) % num_groups + 1 for m in range(block)}


def _short_id(seed: int, index: int, length: int = 11) -> str:
    """A YouTube-like id, stable for (seed, index)."""
    alphabet = string.ascii_letters + string.digits + "-_"
    digest = hashlib.sha256(f"hf_vssl-{seed}-{index}".encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def _video_path(
    layout: str, cls: str, split: str, group: int, clip: int, index: int, seed: int
) -> tuple[str, str]:
    """(relative path, video id) of a video in ``layout``."""
    name = layout_class_name(cls, layout)
    ext = LAYOUT_EXTENSIONS[layout]
    if layout == "ucf101":
        vid = f"v_{name}_g{group:02d}_c{clip:02d}"
        return f"UCF-101/{name}/{vid}.{ext}", vid
    if layout == "hmdb51":
        vid = f"synthetic_{name}_g{group:02d}_c{clip:02d}"
        return f"{name}/{vid}.{ext}", vid
    if layout == "kinetics400":
        start = int(hashlib.sha256(f"t{seed}-{index}".encode()).digest()[0])
        vid = f"{_short_id(seed, index)}_{start:06d}_{start + 10:06d}"
        return f"{'train' if split == 'train' else 'val'}/{name}/{vid}.{ext}", vid
    if layout == "ssv2":
        vid = str(index + 1)
        return f"20bn-something-something-v2/{vid}.{ext}", vid
    if layout == "diving48":
        vid = f"{_short_id(seed, index)}_{index:05d}"
        return f"rgb/{vid}.{ext}", vid
    if layout == "videofolder":
        vid = f"{name}_g{group:02d}_c{clip:02d}"
        return f"{split}/{name}/{vid}.{ext}", vid
    raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")


def _encode_one(job: tuple[str, dict[str, Any], int, tuple[int, int], float, dict[str, Any]]) -> None:
    path, spec, num_frames, size, fps, encode_kwargs = job
    frames = render_video(spec, num_frames, size)
    encode_video(frames, path, fps=fps, layout="THWC", **encode_kwargs)


#: per-container quality: small files that still keep the 1-2 pixel detail of the objects.
_ENCODE_KWARGS: dict[str, dict[str, Any]] = {
    "avi": {"bit_rate": 600_000, "gop_size": 16},
    "mp4": {"crf": 20, "gop_size": 16},
    "webm": {"bit_rate": 600_000, "gop_size": 16},
}


def make_synthetic_dataset(
    root: str | os.PathLike,
    layout: str = "ucf101",
    seed: int = 0,
    *,
    label_set: str = "motion",
    num_classes: int | None = None,
    videos_per_class: int = 30,
    clips_per_group: int = 3,
    num_frames: int = 64,
    size: tuple[int, int] = (64, 64),
    fps: float = 25,
    num_workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic corpus into ``root`` in the official layout of ``layout``; return ``root``.

    Args:
        root: output folder; must be empty or absent (or an earlier synthetic corpus with
            ``overwrite=True``).
        layout: one of :data:`LAYOUTS`. Videos are ``.avi`` (MPEG-4) for UCF101/HMDB51,
            ``.webm`` (VP8) for SSv2 and ``.mp4`` (H.264) otherwise; every annotation file of the
            layout is written (UCF101 ``classInd.txt`` and three train/test lists, HMDB51
            ``testTrainMulti_7030_splits/``, Kinetics CSVs, SSv2 and Diving48 JSONs).
        seed: everything (classes, scenes, motions, ids) follows from it: the same seed gives
            byte-identical frames.
        label_set: which label set names the layout's classes ("motion" or "appearance"); the
            other one is still recorded in ``synthetic_metadata.json``.
        num_classes: the first N classes of ``label_set`` (default: all).
        videos_per_class: videos of each class of ``label_set``; the other label set is spread
            evenly over them.
        clips_per_group: clips sharing a background scene (UCF101's ``gXX``); each fold holds out
            ~30 % of the groups, so a scene never sits in both train and test.
        num_frames, size, fps: the clips' length, ``(height, width)`` (even numbers) and rate.
        num_workers: processes rendering and encoding (default 1: the default corpus takes ~10-15 s
            on one core, and forking from a process that already runs torch is best avoided).
        overwrite: replace an earlier synthetic corpus at ``root``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    classes = class_names(label_set, num_classes)
    other_set = "appearance" if label_set == "motion" else "motion"
    other_classes = LABEL_SETS[other_set]
    height, width = int(size[0]), int(size[1])
    if height % 2 or width % 2 or min(height, width) < 32:
        raise ValueError(f"size must be even and at least 32x32, got {size}")
    num_groups = math.ceil(videos_per_class / clips_per_group)
    if num_groups < 2:
        raise ValueError(
            f"need at least 2 groups per class: videos_per_class={videos_per_class} "
            f"with clips_per_group={clips_per_group} gives {num_groups}"
        )
    root = Path(root)
    _prepare_root(root, overwrite)

    folds = list(SOURCES[layout].folds)  # UCF101 / HMDB51: 3 folds; the others: fold 1's partition
    videos: list[dict[str, Any]] = []
    jobs = []
    encode_kwargs = _ENCODE_KWARGS[LAYOUT_EXTENSIONS[layout]]
    for ci, cls in enumerate(classes):
        # The other label set: a balanced, shuffled sequence inside every class (independent labels).
        assign_rng = np.random.default_rng([seed, ci, 11])
        others = np.resize(assign_rng.permutation(len(other_classes)), videos_per_class)
        others = others[assign_rng.permutation(videos_per_class)]
        for j in range(videos_per_class):
            index = ci * videos_per_class + j
            group, clip = j // clips_per_group + 1, j % clips_per_group + 1
            splits = {
                str(f): ("test" if group in _fold_test_groups(num_groups, f) else "train") for f in folds
            }
            labels = {label_set: cls, other_set: other_classes[int(others[j])]}
            scene = sample_scene(np.random.default_rng([seed, group, 3]))  # group g of every class: one scene
            spec = sample_video_spec(
                seed, index, labels["motion"], labels["appearance"], scene, (height, width)
            )
            rel, vid = _video_path(layout, cls, splits["1"], group, clip, index, seed)
            videos.append(
                {
                    "path": rel,
                    "video_id": vid,
                    "index": index,
                    "group": group,
                    "clip": clip,
                    "num_frames": num_frames,
                    "motion": labels["motion"],
                    "appearance": labels["appearance"],
                    "layout_label": layout_class_name(cls, layout),
                    "splits": splits,
                    "spec": spec,
                }
            )
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            jobs.append((str(root / rel), spec, num_frames, (height, width), fps, encode_kwargs))

    workers = num_workers or 1
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_encode_one, jobs, chunksize=8))
    else:
        for job in jobs:
            _encode_one(job)

    config = {
        "version": CORPUS_VERSION,
        "layout": layout,
        "seed": seed,
        "label_set": label_set,
        "num_classes": len(classes),
        "videos_per_class": videos_per_class,
        "clips_per_group": clips_per_group,
        "num_frames": num_frames,
        "size": [height, width],
        "fps": fps,
    }
    SOURCES[layout].write_annotations(root, *_annotation_inputs(layout, classes, videos))
    metadata = {
        **config,
        "folds": folds,
        "classes": {label_set: list(classes), other_set: list(other_classes)},
        "videos": videos,
    }
    (root / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
    (root / COMPLETE_MARKER).write_text(json.dumps(config, sort_keys=True))  # last: marks completion
    return root


def _annotation_inputs(
    layout: str, classes: tuple[str, ...], videos: list[dict[str, Any]]
) -> tuple[list, list]:
    """The class names (SSv2: templates) and video entries the layout's writer takes."""
    names = [ssv2_template(c) if layout == "ssv2" else layout_class_name(c, layout) for c in classes]
    entries = [
        {**v, "placeholders": [_describe(v["spec"]["primary"]), _describe(v["spec"]["secondary"])]}
        for v in videos
    ]
    return names, entries


def _describe(obj: dict[str, Any]) -> str:
    return f"{obj['texture']} {obj['shape']}"


def _prepare_root(root: Path, overwrite: bool) -> None:
    if root.exists() and any(root.iterdir()):
        ours = (root / METADATA_FILE).exists() or (root / COMPLETE_MARKER).exists()
        if not overwrite:
            raise FileExistsError(
                f"{root} is not empty; pass overwrite=True to replace a synthetic corpus there"
            )
        if not ours:
            raise FileExistsError(f"{root} is not empty and holds no {METADATA_FILE}; refusing to delete it")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
