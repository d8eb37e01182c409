"""Multi-teacher knowledge distillation behind ``accelerate launch recipes/distill.py``.

The study distils several self-supervised teachers (different backbones, source datasets or
pretext tasks) into one student and finds that the student beats every teacher when the
teachers carry complementary information (docs/study_settings.md#distillation). Here:

- **teachers**: any number of hf_vssl checkpoints (any backbone, any pretext task), frozen in
  eval mode, run under ``torch.no_grad()`` (and bf16 autocast with ``--bf16``). Each teacher
  gets the student's clip resized (trilinear) to the clip shape of its own config, so teachers
  trained on other ``num_frames`` / ``image_size`` need no extra data pass.
- **feature distillation**: for teacher ``k``, a projector maps the student's pooled feature
  (``D_s``) to the teacher's (``D_k``); both are L2-normalised and compared with the cosine
  distance ``1 - cos`` (default) or the squared distance ``||s - t||^2`` (``--feature_loss mse``,
  which on unit vectors equals ``2 - 2 cos``).
- **logit distillation**: teachers that are ``VSSLForVideoClassification`` checkpoints also give
  logits; the student then gets a classification head with the same labels and learns
  ``KL(softmax(t / T) || softmax(s / T)) * T^2`` (Hinton et al.), ``T = --temperature``.
- **loss**: ``feature_weight * mean_k(feature loss_k) + logit_weight * mean_k(logit loss_k)``;
  averaging over teachers keeps the scale (and the learning rate) independent of their number.

Labels are never used: any split of any dataset works as the unlabeled transfer set. The model
side (teachers, losses, projectors, student) is :mod:`hf_vssl.distill`; the loop is
:func:`hf_vssl.training.loop.train` (seedable sampler, device-side metric sums synced at logging
steps only, NaN guard, checkpoints and exact resume, ``log_history.jsonl``). The output folder holds the student (``VSSLModel``, or ``VSSLForVideoClassification`` when logits
were distilled) with its ``VSSLVideoProcessor``, ready for ``recipes/finetune.py
--model_name_or_path``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from hf_vssl.data.batch_augment import train_transforms
from hf_vssl.data.clips import UniformClipSampler
from hf_vssl.data.dataset_argument import parse_dataset_argument
from hf_vssl.data.training_data import dataset_name, open_training_videos
from hf_vssl.data.transforms import TRANSFORM_PRESETS
from hf_vssl.distill import (
    FEATURE_LOSSES,
    PROJECTORS,
    DistillationStudent,
    Teacher,
    feature_distillation_loss,
    load_teacher,
    logit_distillation_loss,
    shared_labels,
)
from hf_vssl.models import VSSLConfig, VSSLForVideoClassification, VSSLModel, VSSLVideoProcessor
from hf_vssl.models.loading import load_vssl_model
from hf_vssl.training.arguments import LoopArguments, TrainingDataArguments
from hf_vssl.training.loop import (
    NonFiniteLossError,
    TrainingJob,
    build_accelerator,
    build_train_data,
    save_trained_model,
    train,
)
from hf_vssl.training.optim import build_optimizer, resolve_optimizer_settings
from hf_vssl.utils.naming import output_name, resolve_output_dir

logger = logging.getLogger(__name__)

# Teachers, losses and the student live in hf_vssl.distill; re-exported here for callers of this module.
__all__ = [
    "DistillationArguments",
    "DistillationStudent",
    "NonFiniteLossError",
    "Teacher",
    "build_student",
    "feature_distillation_loss",
    "load_teacher",
    "logit_distillation_loss",
    "run_distillation",
]

#: SGD as in the study's pretraining recipes; the projectors start from scratch, so no lower lr.
DISTILLATION_OPTIMIZER = {"optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 1e-4}


@dataclass
class DistillationArguments(TrainingDataArguments, LoopArguments):
    """Settings of a distillation run. Defaults: the CPU demo (1/4-width R21D student, 8x56x56 clips).

    The data flags (:class:`~hf_vssl.training.arguments.TrainingDataArguments`) name the transfer
    set; its labels are ignored."""

    learning_rate: float | None = field(default=None, metadata={"help": "default: 0.01 (SGD)"})

    config: str | None = field(
        default=None, metadata={"help": "YAML file of these arguments (CLI flags win)"}
    )
    teachers: list[str] = field(
        default_factory=list,
        metadata={"help": "teacher checkpoints (local folders or Hub ids), any backbone and pretext task"},
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "default: outputs/distill-{backbone}-{dataset}"}
    )
    student_name_or_path: str | None = field(
        default=None,
        metadata={"help": "initialise the student from this checkpoint (default: a fresh --backbone)"},
    )
    backbone: str = field(
        default="r21d", metadata={"help": "student backbone, from hf_vssl.list_backbones()"}
    )
    width_multiplier: float = field(default=0.25, metadata={"help": "student channel scale (1.0 = study)"})
    num_frames: int = field(default=8, metadata={"help": "frames per student clip (the study: 16)"})
    image_size: int = field(default=56, metadata={"help": "student crop size (the study: 112)"})
    frame_stride: int = field(default=1, metadata={"help": "temporal stride of the student's clips"})
    feature_loss: str = field(default="cosine", metadata={"help": "cosine or mse, on L2-normalised features"})
    projector: str = field(default="mlp", metadata={"help": "student -> teacher feature map: mlp or linear"})
    feature_weight: float = field(default=1.0, metadata={"help": "weight of the feature loss"})
    distill_logits: bool = field(
        default=True, metadata={"help": "also distil the logits of teachers with a classification head"}
    )
    logit_weight: float = field(default=1.0, metadata={"help": "weight of the logit loss"})
    temperature: float = field(default=4.0, metadata={"help": "softmax temperature of logit distillation"})
    transform_preset: str = field(
        default="rspnet", metadata={"help": "augmentation preset of hf_vssl.data.transforms ('eval' = none)"}
    )
    clip_sampling: str = field(default="random", metadata={"help": "random or center clip positions"})


def build_student(args: DistillationArguments, id2label: dict[int, str] | None):
    """The student: fresh ``--backbone`` or ``--student_name_or_path``, with a head when ``id2label`` is set."""
    if args.student_name_or_path:
        base = load_vssl_model(args.student_name_or_path)
        config = base.config
    else:
        base = None
        config = VSSLConfig(
            backbone=args.backbone,
            num_frames=args.num_frames,
            image_size=args.image_size,
            width_multiplier=args.width_multiplier,
        )
    if config.backbone_spec.fixed_input_shape and (config.num_frames, config.image_size) != (
        args.num_frames,
        args.image_size,
    ):
        raise ValueError(
            f"student {args.student_name_or_path}: backbone {config.backbone!r} was built for {config.num_frames} "
            f"frames at {config.image_size}x{config.image_size}; pass --num_frames {config.num_frames} "
            f"--image_size {config.image_size}"
        )
    config = config.backbone_only() if id2label is None else config.for_classification(id2label)
    config.num_frames, config.image_size = args.num_frames, args.image_size
    student = VSSLModel(config) if id2label is None else VSSLForVideoClassification(config)
    if base is not None:
        (student.vssl if id2label is not None else student).load_state_dict(base.state_dict())
    return student


def _validate(args: DistillationArguments) -> None:
    if not args.teachers:
        raise ValueError("no teachers: pass --teachers PATH_OR_ID [PATH_OR_ID ...]")
    if args.feature_loss not in FEATURE_LOSSES:
        raise ValueError(f"--feature_loss must be one of {FEATURE_LOSSES}, got {args.feature_loss!r}")
    if args.projector not in PROJECTORS:
        raise ValueError(f"--projector must be one of {PROJECTORS}, got {args.projector!r}")
    if args.transform_preset not in TRANSFORM_PRESETS:
        raise ValueError(
            f"--transform_preset must be one of {sorted(TRANSFORM_PRESETS)}, got {args.transform_preset!r}"
        )
    if args.clip_sampling not in ("random", "center"):
        raise ValueError(f"--clip_sampling must be 'random' or 'center', got {args.clip_sampling!r}")


# ----------------------------------------------------------------------------------------------
# The run


def run_distillation(args: DistillationArguments) -> Path:
    """Distil ``args.teachers`` into one student; return the output folder (the student checkpoint)."""
    _validate(args)
    argument = parse_dataset_argument(args.dataset, args.dataset_root, args.dataset_revision)
    name = output_name(
        "distill",
        args.backbone if not args.student_name_or_path else None,
        dataset_name(argument),
        args.subset_size if args.dataset != "synthetic" else None,
    )
    output_dir = resolve_output_dir(args.output_dir, name)
    accelerator = build_accelerator(args, output_dir)

    # -- teachers and student (refuse impossible settings before anything runs) -----------------
    teachers = [load_teacher(path) for path in args.teachers]
    id2label = shared_labels(teachers) if args.distill_logits else None
    student = build_student(args, id2label)
    model = DistillationStudent(
        student,
        [t.num_features for t in teachers],
        args.projector,
        args.feature_loss,
        args.temperature,
        args.feature_weight,
        args.logit_weight,
    )
    use_logits = id2label is not None
    teacher_autocast = torch.bfloat16 if accelerator.mixed_precision == "bf16" else None
    for teacher in teachers:
        teacher.to(accelerator.device)
        if args.channels_last:
            teacher.model.to(memory_format=torch.channels_last_3d)
    accelerator.print(
        "teachers: "
        + ", ".join(
            f"{t.name} ({t.model.config.backbone}, {t.model.config.num_frames}x{t.model.config.image_size}, "
            f"D={t.num_features}{', logits' if use_logits and t.classifier is not None else ''})"
            for t in teachers
        )
    )

    # -- data: the transfer set (labels ignored) ---------------------------------------------------
    videos = open_training_videos(
        argument,
        args.dataset_split,
        fold=args.fold,
        subset_size=args.subset_size,
        subset_seed=args.subset_seed,
        label_set=args.label_set,
    )
    transform, device_augment = train_transforms(
        args.transform_preset,
        args.image_size,
        args.augment_on,
        accelerator.device,
        train=args.transform_preset != "eval",
        seed=args.seed,
        process_index=accelerator.process_index,
    )
    sampler = UniformClipSampler(
        args.num_frames, args.frame_stride, mode=args.clip_sampling, short_video="error"
    )  # the dataset applies --short_video per video
    dataset, dataloader = build_train_data(videos, sampler, transform, args, accelerator)

    # -- optimiser -------------------------------------------------------------------------------
    optimizer = build_optimizer(
        model,
        resolve_optimizer_settings(
            DISTILLATION_OPTIMIZER,
            optimizer=args.optimizer,
            learning_rate=args.learning_rate,
            weight_decay=args.weight_decay,
        ),
    )

    # -- the loop, then the export: the student alone, loadable by AutoModel and the finetune recipe
    def step(prepared: nn.Module, batch: dict, generator: torch.Generator):
        pixel_values = batch["pixel_values"]
        targets = [teacher(pixel_values, teacher_autocast) for teacher in teachers]
        return prepared(
            pixel_values,
            [features for features, _ in targets],
            [logits if use_logits else None for _, logits in targets],
        )

    def export(trained: DistillationStudent, global_step: int) -> None:
        processor = VSSLVideoProcessor.for_clip(args.num_frames, args.image_size, args.frame_stride)
        save_trained_model(accelerator, trained.student, processor, output_dir, "the distilled student")

    train(
        accelerator,
        args,
        output_dir,
        TrainingJob(
            name=name,
            model=model,
            optimizer=optimizer,
            dataset=dataset,
            dataloader=dataloader,
            step=step,
            export=export,
            records=videos.records,
            device_augment=device_augment,
            desc=f"distill {name}",
        ),
    )
    return output_dir
