"""Prompt templates: how a class name becomes the text a foundation model's text tower embeds.

A template holds one ``{}`` where the cleaned class name goes. One template gives one text per
class; several templates (``--prompt_templates`` with more than one, or ``--prompt_ensemble``
for :data:`ENSEMBLE_TEMPLATES`) give a prompt ensemble: each class's text embedding is the mean
over its templates (see :mod:`hf_vssl.foundation.zero_shot`).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DEFAULT_TEMPLATES", "ENSEMBLE_TEMPLATES", "build_prompts", "resolve_templates"]

DEFAULT_TEMPLATES: tuple[str, ...] = ("a video of a person {}.",)

#: Action-video phrasings in the spirit of CLIP's prompt ensembles for action datasets.
ENSEMBLE_TEMPLATES: tuple[str, ...] = (
    "a video of a person {}.",
    "a video of a person doing {}.",
    "a photo of a person {}.",
    "a person {}.",
    "a clip of {}.",
    "a video of {}.",
    "an example of a person {}.",
    "a demonstration of {}.",
)


def resolve_templates(templates: Sequence[str] | None = None, ensemble: bool = False) -> tuple[str, ...]:
    """The templates of a run: ``templates`` if given, else the ensemble or the default one.

    Each must contain exactly one ``{}``; giving templates and ``ensemble=True`` together is refused.
    """
    if templates and ensemble:
        raise ValueError("pass --prompt_templates or --prompt_ensemble, not both")
    chosen = tuple(templates) if templates else (ENSEMBLE_TEMPLATES if ensemble else DEFAULT_TEMPLATES)
    bad = [t for t in chosen if t.count("{}") != 1]
    if bad:
        raise ValueError(
            f"--prompt_templates: each template needs exactly one '{{}}' for the class name, got {bad}"
        )
    return chosen


def build_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every (class, template) text, class-major: ``[c0 t0, c0 t1, ..., c1 t0, ...]``."""
    return [template.format(name) for name in class_names for template in templates]
