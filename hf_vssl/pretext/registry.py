"""The one registry of pretext tasks: name -> task class (which names its settings dataclass)."""

from __future__ import annotations

from typing import Any

from hf_vssl.models.conv_depth import pad_depth_explicitly

from .base import PretextTask
from .cvrl import CVRLTask
from .prp import PRPTask
from .rotnet import RotNetTask
from .rspnet import RSPNetTask
from .tdl import TDLTask
from .vcop import VCOPTask

PRETEXT_TASKS: dict[str, type[PretextTask]] = {
    task.name: task for task in (RotNetTask, CVRLTask, VCOPTask, TDLTask, PRPTask, RSPNetTask)
}


def list_pretext_tasks() -> list[str]:
    """Names of the registered pretext tasks: rotnet, cvrl, vcop, tdl, prp, rspnet."""
    return list(PRETEXT_TASKS)


def get_pretext_task_class(name: str) -> type[PretextTask]:
    """The task class of ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
    try:
        return PRETEXT_TASKS[name]
    except KeyError:
        raise ValueError(
            f"Unknown pretext task {name!r}. Valid pretext tasks: {', '.join(list_pretext_tasks())}."
        ) from None


def default_pretext_config(name: str) -> dict[str, Any]:
    """The study's default settings of task ``name`` as a JSON-able dict."""
    return get_pretext_task_class(name).settings_class().to_dict()


def build_pretext_task(
    name: str, num_features: int, pretext_config: dict[str, Any] | None = None
) -> PretextTask:
    """Instantiate task ``name`` for a backbone with ``num_features``-d pooled features.

    ``pretext_config`` overrides the task's defaults; unknown keys raise ``ValueError`` listing
    the valid ones.
    """
    task_class = get_pretext_task_class(name)
    settings = task_class.settings_class.from_overrides(name, pretext_config)
    # Heads with temporal convolutions (PRP's branches and decoder) meet short depths too: the same
    # explicit depth padding as the backbones (see hf_vssl.models.conv_depth).
    return pad_depth_explicitly(task_class(settings, num_features))
