"""The six pretext tasks of the study and :class:`VSSLForPretraining`.

``list_pretext_tasks()`` -> ``["rotnet", "cvrl", "vcop", "tdl", "prp", "rspnet"]``; each task is
an ``nn.Module`` (:class:`PretextTask`) with its sampler, augmentation preset, heads and loss.
"""

from .base import PretextSettings, PretextTask
from .contrastive import (
    FeatureQueue,
    MomentumEncoder,
    batch_instance_accuracy,
    concat_all_gather,
    info_nce,
    symmetric_info_nce,
)
from .modeling import VSSLForPretraining, VSSLPretrainingOutput
from .registry import (
    PRETEXT_TASKS,
    build_pretext_task,
    default_pretext_config,
    get_pretext_task_class,
    list_pretext_tasks,
)
from .sampling import ClipPlan, ClipSampler, VideoTooShortError

__all__ = [
    "PRETEXT_TASKS",
    "ClipPlan",
    "ClipSampler",
    "FeatureQueue",
    "MomentumEncoder",
    "PretextSettings",
    "PretextTask",
    "VSSLForPretraining",
    "VSSLPretrainingOutput",
    "VideoTooShortError",
    "batch_instance_accuracy",
    "build_pretext_task",
    "concat_all_gather",
    "default_pretext_config",
    "get_pretext_task_class",
    "info_nce",
    "list_pretext_tasks",
    "symmetric_info_nce",
]
