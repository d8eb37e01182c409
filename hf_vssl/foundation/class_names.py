"""Class names as text: the dataset's own label names, cleaned into words a text tower reads.

UCF101 spells its classes in CamelCase (``ApplyEyeMakeup`` -> "apply eye makeup"), HMDB51 in
snake_case (``brush_hair`` -> "brush hair"); Kinetics and Something-Something names are already
phrases and stay as they are. Other sources (the synthetic corpus, plain video folders,
Diving48) are cleaned by the ``auto`` rule: a name without spaces has its underscores and
hyphens turned into spaces and its CamelCase split, then is lower-cased.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "CLASS_NAME_STYLES",
    "DATASET_STYLES",
    "class_names_from_labels",
    "clean_class_name",
    "read_class_names_file",
]

CLASS_NAME_STYLES = ("auto", "camel", "snake", "as_is")
#: How each built-in source spells its classes (other sources: ``auto``).
DATASET_STYLES = {"ucf101": "camel", "hmdb51": "snake", "kinetics400": "as_is", "ssv2": "as_is"}

# A word boundary inside CamelCase: lower/digit -> upper ("EyeMakeup"), or the last capital of an
# acronym before a capitalised word ("TVShow" -> "TV Show").
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def _words(name: str) -> str:
    return " ".join(name.split())


def clean_class_name(name: str, style: str = "auto") -> str:
    """``name`` as the words of a prompt (see the module docstring for the styles)."""
    if style not in CLASS_NAME_STYLES:
        raise ValueError(f"class name style must be one of {', '.join(CLASS_NAME_STYLES)}, got {style!r}")
    if style == "as_is":
        return _words(name)
    if style == "snake":
        return _words(name.replace("_", " ")).lower()
    if style == "camel":
        return _words(_CAMEL_BOUNDARY.sub(" ", name)).lower()
    if " " in name.strip():
        return _words(name)
    return _words(_CAMEL_BOUNDARY.sub(" ", re.sub(r"[_\-]+", " ", name))).lower()


def class_names_from_labels(
    label_names: Mapping[int, str], dataset: str, style: str | None = None
) -> list[str]:
    """Cleaned names of classes ``0..max`` from ``{label: label_name}``; a missing index raises ``ValueError``."""
    if not label_names:
        raise ValueError(f"dataset {dataset!r}: no labelled videos, so no class names to build prompts from")
    missing = [i for i in range(max(label_names) + 1) if i not in label_names]
    if missing:
        raise ValueError(
            f"dataset {dataset!r}: no video of class index {missing[:5]} in the loaded splits, so "
            "its name is unknown; pass --class_names_file"
        )
    style = style or DATASET_STYLES.get(dataset.lower(), "auto")
    return [clean_class_name(label_names[i], style) for i in range(len(label_names))]


def read_class_names_file(path: str | Path, num_labels: int) -> list[str]:
    """Class names from a file: a JSON list, a JSON object ``{label: name}``, or one name per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--class_names_file {path}: no such file")
    text = path.read_text(encoding="utf-8")
    names: Sequence[str]
    if path.suffix == ".json":
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"--class_names_file {path}: not valid JSON ({error})") from None
        if isinstance(payload, dict):
            payload = {int(k): v for k, v in payload.items()}
            names = [payload.get(i) for i in range(max(payload) + 1)] if payload else []
        else:
            names = payload
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != num_labels or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(
            f"--class_names_file {path}: expected {num_labels} non-empty class names (one per label "
            f"index of the dataset), got {len(names)}"
        )
    return [_words(n) for n in names]
