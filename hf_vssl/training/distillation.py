"""Multi-teacher knowledge distillation behind ``accelerate launch recipes/distill.py``.

The study distils several self-supervised teachers (different backbones, source datasets or
pretext tasks) into one student and finds that the student beats every teacher when the
teachers carry complementary information (REFERENCE.md section 4). Here:

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

Labels are never used: any split of any dataset works as the unlabeled transfer set. The loop
mirrors :mod:`hf_vssl.training.pretraining` (seedable sampler, device-side metric sums synced
at logging steps only, NaN guard, checkpoints and exact resume, ``log_history.jsonl``). The
output folder holds the student (``VSSLModel``, or ``VSSLForVideoClassification`` when logits
were distilled) with its ``VSSLVideoProcessor``, ready for ``recipes/finetune.py
--model_name_or_path``.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers import AutoConfig

from hf_vssl.analysis.cka_maps import load_vssl_model, resize_clip
from hf_vssl.data.batch_augment import train_transforms
from hf_vssl.data.clips import UniformClipSampler
from hf_vssl.data.datasets import VideoClipDataset, collate_clips
from hf_vssl.data.transforms import TRANSFORM_PRESETS
from hf_vssl.models import VSSLConfig, VSSLForVideoClassification, VSSLModel, VSSLVideoProcessor
from hf_vssl.training.arguments import LoopArguments, mixed_precision_for
from hf_vssl.training.data import load_records, output_name, resolve_output_dir
from hf_vssl.training.loop import (
    NonFiniteLossError,
    append_log,
    prepare_training,
    raise_if_nonfinite,
    save_checkpoint,
    start_or_resume,
)
from hf_vssl.training.optim import build_optimizer, resolve_optimizer_settings

logger = logging.getLogger(__name__)

__all__ = [
    "DistillationArguments",
    "DistillationStudent",
    "NonFiniteLossError",
    "Teacher",
    "feature_distillation_loss",
    "load_teacher",
    "logit_distillation_loss",
    "run_distillation",
]

FEATURE_LOSSES = ("cosine", "mse")
PROJECTORS = ("mlp", "linear")
#: SGD as in the study's pretraining recipes; the projectors start from scratch, so no lower lr.
DISTILLATION_OPTIMIZER = {"optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 1e-4}


@dataclass
class DistillationArguments(LoopArguments):
    """Settings of a distillation run. Defaults: the CPU demo (1/4-width R21D student, 8x56x56 clips)."""

    learning_rate: float | None = field(default=None, metadata={"help": "default: 0.01 (SGD)"})

    config: str | None = field(default=None, metadata={"help": "YAML file of these arguments (CLI flags win)"})
    teachers: list[str] = field(default_factory=list, metadata={
        "help": "teacher checkpoints (local folders or Hub ids), any backbone and pretext task"})
    output_dir: str | None = field(default=None, metadata={"help": "default: outputs/distill-{backbone}-{dataset}"})
    student_name_or_path: str | None = field(default=None, metadata={
        "help": "initialise the student from this checkpoint (default: a fresh --backbone)"})
    backbone: str = field(default="r21d", metadata={"help": "student backbone, from hf_vssl.list_backbones()"})
    width_multiplier: float = field(default=0.25, metadata={"help": "student channel scale (1.0 = study)"})
    num_frames: int = field(default=8, metadata={"help": "frames per student clip (the study: 16)"})
    image_size: int = field(default=56, metadata={"help": "student crop size (the study: 112)"})
    frame_stride: int = field(default=1, metadata={"help": "temporal stride of the student's clips"})
    feature_loss: str = field(default="cosine", metadata={"help": "cosine or mse, on L2-normalised features"})
    projector: str = field(default="mlp", metadata={"help": "student -> teacher feature map: mlp or linear"})
    feature_weight: float = field(default=1.0, metadata={"help": "weight of the feature loss"})
    distill_logits: bool = field(default=True, metadata={
        "help": "also distil the logits of teachers with a classification head"})
    logit_weight: float = field(default=1.0, metadata={"help": "weight of the logit loss"})
    temperature: float = field(default=4.0, metadata={"help": "softmax temperature of logit distillation"})
    dataset: str = field(default="synthetic", metadata={"help": "ucf101, hmdb51, kinetics400, ssv2, diving48, "
                                                                "videofolder or synthetic (labels are ignored)"})
    dataset_root: str | None = field(default=None, metadata={"help": "dataset folder (synthetic: built in)"})
    dataset_split: str = field(default="train", metadata={"help": "split of --dataset to distil on"})
    fold: int = field(default=1, metadata={"help": "official fold (UCF101 / HMDB51: 1-3)"})
    label_set: str | None = field(default=None, metadata={"help": "synthetic corpus only: motion or appearance"})
    subset_size: int | None = field(default=None, metadata={"help": "class-balanced nested subset of this size"})
    subset_seed: int = field(default=0, metadata={"help": "seed of the class-balanced subset"})
    transform_preset: str = field(default="rspnet", metadata={
        "help": "augmentation preset of hf_vssl.data.transforms ('eval' = none)"})
    clip_sampling: str = field(default="random", metadata={"help": "random or center clip positions"})


# ----------------------------------------------------------------------------------------------
# Teachers


@dataclass
class Teacher:
    """A frozen teacher: its backbone, its classifier (classification checkpoints only) and labels."""

    name: str
    model: VSSLModel
    classifier: nn.Module | None = None
    id2label: dict[int, str] | None = None

    @property
    def num_features(self) -> int:
        return self.model.num_features

    def to(self, *args, **kwargs) -> Teacher:
        self.model.to(*args, **kwargs)
        if self.classifier is not None:
            self.classifier.to(*args, **kwargs)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every weight and buffer (the classifier's under ``classifier.``), for checks that nothing moved."""
        state = dict(self.model.state_dict())
        if self.classifier is not None:
            state.update({f"classifier.{k}": v for k, v in self.classifier.state_dict().items()})
        return state

    @torch.no_grad()
    def __call__(self, pixel_values: torch.Tensor, autocast_dtype: torch.dtype | None = None):
        """``(features (B, D), logits (B, C) or None)`` for the clip resized to this teacher's clip shape."""
        config = self.model.config
        pixel_values = resize_clip(pixel_values, config.num_frames, config.image_size)
        autocast = (torch.autocast(pixel_values.device.type, dtype=autocast_dtype) if autocast_dtype is not None
                    else nullcontext())
        with autocast:
            features = self.model(pixel_values, return_dict=True).pooler_output
            logits = self.classifier(features) if self.classifier is not None else None
        return features.float(), (logits.float() if logits is not None else None)


def load_teacher(path_or_id: str) -> Teacher:
    """Load a teacher checkpoint, frozen and in eval mode.

    A ``VSSLForVideoClassification`` checkpoint contributes features and logits; any other hf_vssl
    checkpoint (pretraining, exported backbone, distilled student) contributes features.
    """
    try:
        config = AutoConfig.from_pretrained(path_or_id)
    except (OSError, ValueError) as error:
        raise ValueError(f"teacher {path_or_id!r}: cannot read its config.json ({error})") from None
    if getattr(config, "model_type", None) != "vssl":
        raise ValueError(f"teacher {path_or_id!r} is a {getattr(config, 'model_type', '?')!r} model; "
                         "expected an hf_vssl (model_type 'vssl') checkpoint")
    name = Path(path_or_id).name if Path(path_or_id).exists() else str(path_or_id)
    if VSSLForVideoClassification.__name__ in (config.architectures or []):
        full = VSSLForVideoClassification.from_pretrained(path_or_id)
        teacher = Teacher(name, full.vssl, full.classifier, {int(k): v for k, v in full.config.id2label.items()})
    else:
        teacher = Teacher(name, load_vssl_model(path_or_id))
    for module in (teacher.model, teacher.classifier):
        if module is not None:
            module.eval().requires_grad_(False)
    return teacher


# ----------------------------------------------------------------------------------------------
# Losses and the trainable part


def feature_distillation_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Distance between L2-normalised ``(B, D)`` features: mean ``1 - cos`` or mean ``||s - t||^2``."""
    s = F.normalize(student.float(), dim=-1)
    t = F.normalize(teacher.float(), dim=-1)
    if kind == "cosine":
        return (1 - (s * t).sum(dim=-1)).mean()
    if kind == "mse":
        return (s - t).square().sum(dim=-1).mean()
    raise ValueError(f"feature loss must be one of {FEATURE_LOSSES}, got {kind!r}")


def logit_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                            temperature: float = 4.0) -> torch.Tensor:
    """``KL(softmax(t / T) || softmax(s / T)) * T^2``, averaged over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits.float() / t, dim=-1), F.log_softmax(teacher_logits.float() / t, dim=-1),
                    reduction="batchmean", log_target=True) * t * t


def build_projector(kind: str, in_features: int, out_features: int) -> nn.Module:
    """Student feature -> teacher feature space: ``linear``, or ``mlp`` (Linear-ReLU-Linear)."""
    if kind == "linear":
        return nn.Linear(in_features, out_features)
    if kind == "mlp":
        hidden = max(in_features, out_features)
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_features))
    raise ValueError(f"projector must be one of {PROJECTORS}, got {kind!r}")


class DistillationStudent(nn.Module):
    """The trained part: the student (``VSSLModel`` or ``VSSLForVideoClassification``) + one projector per teacher.

    ``forward(pixel_values, teacher_features, teacher_logits)`` returns ``(loss, metrics)``;
    ``teacher_logits[k]`` is ``None`` for teachers without a head (the student must have a head
    if any is not None).
    """

    def __init__(self, student: VSSLModel | VSSLForVideoClassification, teacher_dims: list[int],
                 projector: str = "mlp", feature_loss: str = "cosine", temperature: float = 4.0,
                 feature_weight: float = 1.0, logit_weight: float = 1.0):
        super().__init__()
        if feature_loss not in FEATURE_LOSSES:
            raise ValueError(f"feature_loss must be one of {FEATURE_LOSSES}, got {feature_loss!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.student = student
        backbone = student.vssl if isinstance(student, VSSLForVideoClassification) else student
        self.projectors = nn.ModuleList(build_projector(projector, backbone.num_features, d) for d in teacher_dims)
        self.feature_loss, self.temperature = feature_loss, temperature
        self.feature_weight, self.logit_weight = feature_weight, logit_weight

    def forward(self, pixel_values: torch.Tensor, teacher_features: list[torch.Tensor],
                teacher_logits: list[torch.Tensor | None]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        student = self.student
        classifier = isinstance(student, VSSLForVideoClassification)
        pooled = (student.vssl if classifier else student)(pixel_values, return_dict=True).pooler_output
        metrics: dict[str, torch.Tensor] = {}
        feature_terms = []
        for k, (projector, target) in enumerate(zip(self.projectors, teacher_features)):
            term = feature_distillation_loss(projector(pooled), target, self.feature_loss)
            feature_terms.append(term)
            metrics[f"feature_loss_t{k}"] = term.detach()
        loss = self.feature_weight * torch.stack(feature_terms).mean()
        metrics["feature_loss"] = loss.detach() / max(self.feature_weight, 1e-12)
        logit_targets = [(k, t) for k, t in enumerate(teacher_logits) if t is not None]
        if logit_targets:
            if not classifier:
                raise ValueError("teacher logits were given but the student has no classification head")
            logits = student.classifier(student.dropout(pooled))
            logit_terms = []
            for k, target in logit_targets:
                term = logit_distillation_loss(logits, target, self.temperature)
                logit_terms.append(term)
                metrics[f"logit_loss_t{k}"] = term.detach()
            logit_loss = torch.stack(logit_terms).mean()
            metrics["logit_loss"] = logit_loss.detach()
            loss = loss + self.logit_weight * logit_loss
        return loss, metrics


def _shared_labels(teachers: list[Teacher]) -> dict[int, str] | None:
    """The label set of the teachers with a head (all must agree), or None if none has one."""
    labelled = [t for t in teachers if t.classifier is not None]
    if not labelled:
        return None
    first = labelled[0]
    for other in labelled[1:]:
        if other.id2label != first.id2label:
            raise ValueError(
                f"teachers {first.name!r} and {other.name!r} classify different label sets "
                f"({len(first.id2label)} vs {len(other.id2label)} labels); logit distillation needs one label set "
                "(pass --distill_logits false to distil features only)"
            )
    return first.id2label


def build_student(args: DistillationArguments, id2label: dict[int, str] | None):
    """The student: fresh ``--backbone`` or ``--student_name_or_path``, with a head when ``id2label`` is set."""
    if args.student_name_or_path:
        base = load_vssl_model(args.student_name_or_path)
        config = VSSLConfig.from_dict(base.config.to_dict())
    else:
        base = None
        config = VSSLConfig(backbone=args.backbone, num_frames=args.num_frames, image_size=args.image_size,
                            width_multiplier=args.width_multiplier)
    if config.backbone_spec.fixed_input_shape and (config.num_frames, config.image_size) != (
            args.num_frames, args.image_size):
        raise ValueError(
            f"student {args.student_name_or_path}: backbone {config.backbone!r} was built for {config.num_frames} "
            f"frames at {config.image_size}x{config.image_size}; pass --num_frames {config.num_frames} "
            f"--image_size {config.image_size}"
        )
    config.num_frames, config.image_size = args.num_frames, args.image_size
    config.pretext_task, config.pretext_config = None, None
    if id2label is None:
        config.architectures = [VSSLModel.__name__]
        student = VSSLModel(config)
    else:
        config.id2label = dict(id2label)
        config.label2id = {name: index for index, name in id2label.items()}
        config.architectures = [VSSLForVideoClassification.__name__]
        student = VSSLForVideoClassification(config)
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
        raise ValueError(f"--transform_preset must be one of {sorted(TRANSFORM_PRESETS)}, got {args.transform_preset!r}")
    if args.clip_sampling not in ("random", "center"):
        raise ValueError(f"--clip_sampling must be 'random' or 'center', got {args.clip_sampling!r}")


# ----------------------------------------------------------------------------------------------
# The loop


def run_distillation(args: DistillationArguments) -> Path:
    """Distil ``args.teachers`` into one student; return the output folder (the student checkpoint)."""
    _validate(args)
    name = output_name("distill", args.backbone if not args.student_name_or_path else None, args.dataset,
                       args.subset_size if args.dataset != "synthetic" else None)
    output_dir = resolve_output_dir(args.output_dir, name)
    accelerator = Accelerator(
        mixed_precision=mixed_precision_for(args),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        step_scheduler_with_optimizer=False,
    )
    set_seed(args.seed)

    # -- teachers and student (refuse impossible settings before anything runs) -----------------
    teachers = [load_teacher(path) for path in args.teachers]
    id2label = _shared_labels(teachers) if args.distill_logits else None
    student = build_student(args, id2label)
    model = DistillationStudent(student, [t.num_features for t in teachers], args.projector, args.feature_loss,
                                args.temperature, args.feature_weight, args.logit_weight)
    use_logits = id2label is not None
    teacher_autocast = torch.bfloat16 if accelerator.mixed_precision == "bf16" else None
    for teacher in teachers:
        teacher.to(accelerator.device)
        if args.channels_last:
            teacher.model.to(memory_format=torch.channels_last_3d)
    accelerator.print("teachers: " + ", ".join(
        f"{t.name} ({t.model.config.backbone}, {t.model.config.num_frames}x{t.model.config.image_size}, "
        f"D={t.num_features}{', logits' if use_logits and t.classifier is not None else ''})" for t in teachers))

    # -- data: the transfer set (labels ignored) ---------------------------------------------------
    records = load_records(args.dataset, args.dataset_root, args.dataset_split, args.fold,
                           subset_size=args.subset_size, subset_seed=args.subset_seed, label_set=args.label_set)
    transform, device_augment = train_transforms(
        args.transform_preset, args.image_size, args.augment_on, accelerator.device,
        train=args.transform_preset != "eval", seed=args.seed, process_index=accelerator.process_index)
    dataset = VideoClipDataset(
        records, UniformClipSampler(args.num_frames, args.frame_stride, mode=args.clip_sampling),
        transform=transform,
        seed=args.seed, max_bad_fraction=args.max_bad_fraction,
    )
    if len(dataset) < args.per_device_train_batch_size * accelerator.num_processes:
        raise ValueError(f"{len(dataset)} videos cannot fill one batch of "
                         f"{args.per_device_train_batch_size} x {accelerator.num_processes} processes")
    dataloader = torch.utils.data.DataLoader(
        dataset, batch_size=args.per_device_train_batch_size, shuffle=True, drop_last=True,
        collate_fn=collate_clips, num_workers=args.dataloader_num_workers,
        persistent_workers=args.dataloader_num_workers > 0, pin_memory=torch.cuda.is_available(),
    )

    # -- optimiser and schedule ----------------------------------------------------------------
    optimizer = build_optimizer(model, resolve_optimizer_settings(
        DISTILLATION_OPTIMIZER, optimizer=args.optimizer, learning_rate=args.learning_rate,
        weight_decay=args.weight_decay))
    model, optimizer, dataloader, scheduler, steps_per_epoch, total_steps = prepare_training(
        accelerator, args, model, optimizer, dataloader
    )

    # -- outputs and resume ------------------------------------------------------------------
    global_step, start_epoch, skip_batches = start_or_resume(accelerator, args, output_dir, records, name)

    # -- loop ----------------------------------------------------------------------------------
    progress = tqdm(total=total_steps, initial=global_step, desc=f"distill {name}",
                    disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    nonfinite = torch.zeros((), device=accelerator.device)
    sums: dict[str, torch.Tensor] = {}
    window_start, window_clips = time.perf_counter(), 0
    epoch = start_epoch
    model.train()
    while global_step < total_steps:
        dataset.set_epoch(epoch)
        dataloader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(dataloader, skip_batches) if skip_batches else dataloader
        step_in_epoch = skip_batches // args.gradient_accumulation_steps
        first_batch, skip_batches = skip_batches, 0
        for batch_index, batch in enumerate(batches, start=first_batch):
            pixel_values = batch["pixel_values"]
            if device_augment is not None:  # --augment_on device: uint8 batch -> augmented float
                pixel_values = device_augment(pixel_values, epoch, batch_index)
            targets = [teacher(pixel_values, teacher_autocast) for teacher in teachers]
            with accelerator.accumulate(model):
                loss, metrics = model(pixel_values, [features for features, _ in targets],
                                      [logits if use_logits else None for _, logits in targets])
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            # Book-keeping stays on the device: no host sync until a logging/saving boundary.
            detached = loss.detach()
            nonfinite = nonfinite + (~torch.isfinite(detached)).float()
            for key, value in {"loss": detached, **metrics}.items():
                sums[key] = sums.get(key, 0) + value.float()
            window_clips += pixel_values.shape[0] * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            global_step += 1
            step_in_epoch += 1
            progress.update(1)
            at_log = global_step % args.logging_steps == 0 or global_step == total_steps
            at_save = global_step % args.save_steps == 0 or global_step == total_steps
            if at_log or at_save:
                raise_if_nonfinite(accelerator, nonfinite, global_step, output_dir)
            if at_log:
                # The last window can be shorter than logging_steps: divide by what was summed.
                count = (global_step - 1) % args.logging_steps + 1
                count *= args.gradient_accumulation_steps
                logs = {k: (accelerator.reduce(v, "mean") / count).item() for k, v in sums.items()}
                elapsed = time.perf_counter() - window_start
                logs.update(lr=scheduler.get_last_lr()[0], clips_per_second=window_clips / max(elapsed, 1e-9),
                            epoch=epoch + step_in_epoch / steps_per_epoch)
                accelerator.log(logs, step=global_step)
                progress.set_postfix(loss=f"{logs['loss']:.4f}", clips_s=f"{logs['clips_per_second']:.1f}")
                append_log(accelerator, output_dir, {"step": global_step, **logs})
                sums, window_start, window_clips = {}, time.perf_counter(), 0
            if at_save:
                save_checkpoint(accelerator, output_dir, global_step=global_step, epoch=epoch, step_in_epoch=step_in_epoch,
                                steps_per_epoch=steps_per_epoch, keep=args.save_total_limit)
            if global_step >= total_steps:
                break
        else:
            epoch += 1
            continue
        break
    progress.close()

    # -- export: the student alone, loadable by AutoModel and the finetune recipe -------------------
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        student = accelerator.unwrap_model(model).student
        student.save_pretrained(output_dir)
        VSSLVideoProcessor.for_clip(args.num_frames, args.image_size, args.frame_stride).save_pretrained(output_dir)
        accelerator.print(f"saved the distilled student to {output_dir}")
    for tracker in accelerator.trackers:  # not end_training(): the caller owns the process group
        tracker.finish()
    if args.push_to_hub and accelerator.is_main_process:
        from hf_vssl.hub import publish

        publish(output_dir, args.hub_model_id or name)
    return output_dir
