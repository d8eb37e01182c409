"""The study as one command: a YAML grid of recipe runs, run locally or on Slurm, results as a dataset.

- :mod:`.spec`: the spec (stages, axes, cell kinds, dependencies) and stable cell ids;
- :mod:`.plan`: ``--only``/``--exclude`` filters, dependency waves, the GPU-hour estimate;
- :mod:`.executors`: the local and the Slurm (submitit) executors;
- :mod:`.runner`: skip finished cells, run the rest, list failures;
- :mod:`.results`: the results dataset (parquet parts, ``load_results``, ``push_results``);
- :mod:`.report` (with :mod:`.overview`, :mod:`.tables`, :mod:`.figures`, :mod:`.published`): the
  overview by initialisation and the paper's tables and figures rendered from the results, the
  study's published numbers (and each task's originally reported ones) side by side.

``recipes/study.py`` is the command line; ``docs/study.md`` the guide.
"""

from .plan import format_plan, parse_filters, select, waves
from .results import RESULT_COLUMNS, load_results, push_results
from .runner import StudyOutcome, run_study
from .spec import PRESETS, Cell, StudySpecError, expand, load_spec

__all__ = [
    "PRESETS",
    "RESULT_COLUMNS",
    "Cell",
    "StudyOutcome",
    "StudySpecError",
    "expand",
    "format_plan",
    "load_results",
    "load_spec",
    "parse_filters",
    "push_results",
    "run_study",
    "select",
    "waves",
]
