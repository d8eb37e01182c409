"""VSSLForPretraining: a backbone plus one pretext task (heads, momentum encoder, queue, loss)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers.dynamic_module_utils import custom_object_save
from transformers.utils import ModelOutput

from hf_vssl.models.configuration_vssl import VSSLConfig
from hf_vssl.models.modeling_vssl import VSSLModel, VSSLPreTrainedModel

from .registry import build_pretext_task, list_pretext_tasks
from .sampling import ClipSampler


@dataclass
class VSSLPretrainingOutput(ModelOutput):
    """Output of :class:`VSSLForPretraining`.

    Args:
        loss: the pretext task's scalar loss.
        metrics: detached scalar tensors to log; always has ``"accuracy"`` (the pretext accuracy).
    """

    loss: torch.FloatTensor | None = None
    metrics: dict[str, torch.Tensor] | None = None


class VSSLForPretraining(VSSLPreTrainedModel):
    """Backbone (:attr:`vssl`, the query encoder) + the pretext task named by ``config.pretext_task``.

    ``config.pretext_config`` overrides the task's defaults (docs/study_settings.md#pretext-tasks). The batch
    comes from the task's own sampler (:meth:`sampler`) and transform (:attr:`transform_preset`),
    so a recipe needs only the model::

        model = VSSLForPretraining(VSSLConfig(backbone="r21d", pretext_task="vcop"))
        sampler, preset = model.sampler(num_frames=16), model.transform_preset
        out = model(**batch)  # batch = {"pixel_values": ..., **labels from the sampler}
        out.loss.backward(); out.metrics["accuracy"]

    Momentum encoders are copies of the initialised backbone and heads, made after
    ``post_init()``; they and the feature queues are part of the state dict, so
    ``save_pretrained``/``from_pretrained`` resume training exactly. :meth:`export_backbone`
    writes the plain ``VSSLModel`` checkpoint used downstream.
    """

    def __init__(self, config: VSSLConfig):
        super().__init__(config)
        if config.pretext_task is None:
            raise ValueError(
                "VSSLForPretraining needs config.pretext_task; valid pretext tasks: "
                f"{', '.join(list_pretext_tasks())}."
            )
        self.vssl = VSSLModel(config)
        self.pretext = build_pretext_task(config.pretext_task, self.vssl.num_features, config.pretext_config)
        config.pretext_config = (
            self.pretext.settings.to_dict()
        )  # the checkpoint records every resolved setting
        self.post_init()
        # After post_init, so the momentum copies start equal to the initialised online weights.
        self.pretext.attach_backbone(self.vssl)

    @property
    def transform_preset(self) -> str:
        """Name of the data layer's per-clip augmentation preset for this task."""
        return self.pretext.transform_preset

    @property
    def num_clips(self) -> int:
        return self.pretext.num_clips

    def sampler(self, num_frames: int | None = None, stride: int = 1) -> ClipSampler:
        """The task's clip sampler (``num_frames`` defaults to ``config.num_frames``)."""
        return self.pretext.sampler(num_frames or self.config.num_frames, stride)

    def min_video_frames(self, num_frames: int | None = None, stride: int = 1) -> int:
        return self.pretext.min_video_frames(num_frames or self.config.num_frames, stride)

    def validate(self, video_num_frames: int, num_frames: int | None = None, stride: int = 1) -> None:
        """Raise ``ValueError`` (with what would work) if videos of ``video_num_frames`` cannot feed the task."""
        self.pretext.validate(num_frames or self.config.num_frames, video_num_frames, stride)

    def forward(
        self,
        pixel_values: torch.Tensor,
        return_dict: bool | None = None,
        *,
        generator: torch.Generator | None = None,
        **info,
    ) -> VSSLPretrainingOutput | tuple:
        """``pixel_values`` as the task's sampler shapes it, plus the sampler's labels as tensors.

        ``generator`` (on the batch's device) drives every random draw of the task's forward, so a
        training loop that seeds it per micro-batch replays a step exactly; ``None``: torch's global RNG.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        info = {k: v for k, v in info.items() if k not in ("labels", "output_hidden_states")}
        loss, metrics = self.pretext(self.vssl, pixel_values, generator=generator, **info)
        if not return_dict:
            return loss, metrics
        return VSSLPretrainingOutput(loss=loss, metrics=metrics)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """``PreTrainedModel.save_pretrained``, plus the backbone's remote code.

        The pretext heads need hf_vssl installed, but the folder also carries the flat model
        code and an ``AutoModel`` entry in ``auto_map``, so ``AutoModel.from_pretrained(folder,
        trust_remote_code=True)`` gives the query backbone as a ``VSSLModel`` anywhere.
        """
        super().save_pretrained(save_directory, *args, **kwargs)
        if not kwargs.get("is_main_process", True):
            return
        config_path = Path(save_directory) / "config.json"
        config = json.loads(config_path.read_text())
        custom_object_save(self.vssl, save_directory, config=config)
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    def export_backbone(self, save_directory: str | os.PathLike, **save_kwargs) -> VSSLModel:
        """Save the query backbone as a plain ``VSSLModel`` checkpoint (``pretext_task=None``).

        ``AutoModel.from_pretrained(save_directory)`` (after ``import hf_vssl``) loads it with
        identical weights. Returns the exported model.
        """
        backbone = VSSLModel(self.config.backbone_only())
        backbone.load_state_dict(self.vssl.state_dict())
        backbone.save_pretrained(save_directory, **save_kwargs)
        return backbone
