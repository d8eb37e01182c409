"""The built-in synthetic corpus, in whatever layout it was written, with either label set.

Reads ``synthetic_metadata.json`` (written by :func:`hf_vssl.data.synthetic.make_synthetic_dataset`
next to the layout's own files), so the same videos serve the ``"motion"`` labels (classes that
need several frames) and the ``"appearance"`` labels (classes one frame tells apart). Splits
are those of the layout's official files: folds 1-3 for UCF101/HMDB51 layouts, fold 1 otherwise;
the held-out part is "test" ("val" is accepted for it). ``root=None`` means the default corpus
(:func:`hf_vssl.data.synthetic.get_default_corpus`). ``extra`` carries both labels, group, clip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hf_vssl.data.records import VideoRecord
from hf_vssl.data.sources._common import SourceReport, SourceSpec

#: the corpus's own annotation: every video's attributes, both labels and its split in each fold.
METADATA_FILE = "synthetic_metadata.json"


def read_metadata(root: str | os.PathLike) -> dict[str, Any]:
    """Load ``synthetic_metadata.json`` of a corpus written by :func:`hf_vssl.data.synthetic.make_synthetic_dataset`."""
    path = Path(root) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no synthetic corpus metadata at {path}; generate one with make_synthetic_dataset()"
        )
    return json.loads(path.read_text())


def parse(root: Path, split: str, fold: int, report: SourceReport, *, label_set: str = "motion") -> None:
    """Fill ``report`` with the synthetic videos of ``split`` in ``fold``, labelled by ``label_set``."""
    metadata = read_metadata(root)
    classes = metadata["classes"]
    if label_set not in classes:
        raise ValueError(f"label_set must be one of {sorted(classes)}, got {label_set!r}")
    if fold not in metadata["folds"]:
        raise ValueError(
            f"the synthetic corpus at {root} ({metadata['layout']} layout) has folds "
            f"{metadata['folds']}, got {fold!r}"
        )
    names = classes[label_set]
    report.class_names = list(names)
    for number, video in enumerate(metadata["videos"], start=1):
        if video["splits"][str(fold)] != split:
            continue
        name = video[label_set]
        if name not in names:  # motion classes beyond num_classes never occur; guard anyway
            report.skip(root / METADATA_FILE, number, f"unknown {label_set} class {name!r}")
            continue
        path = root / video["path"]
        if not path.is_file():
            report.skip(root / METADATA_FILE, number, f"video file not found: {path}")
            continue
        extra = {
            "motion": video["motion"],
            "appearance": video["appearance"],
            "group": video["group"],
            "clip": video["clip"],
            "layout": metadata["layout"],
            "num_frames": video["num_frames"],
        }
        report.records.append(
            VideoRecord(
                str(path), names.index(name), name, video["video_id"], split, "synthetic", extra=extra
            )
        )


SOURCE = SourceSpec(
    "synthetic",
    parse,
    splits=("train", "test"),
    folds=(1, 2, 3),
    aliases={"val": "test", "validate": "test", "validation": "test"},
    description="built-in synthetic corpus (label_set='motion' or 'appearance')",
)
