"""Zero-shot video classification with a foundation model, as a classifier hf_vssl's evaluation runs.

:class:`ZeroShotVideoClassifier` embeds every class's prompts once, at construction, and then
behaves like a ``VSSLForVideoClassification`` at test time: ``model(pixel_values=...)`` takes
clips ``(N, T, C, H, W)`` normalised as hf_vssl's data pipeline normalises them and returns
``logits (N, num_classes)``. The same evaluation code path as the self-supervised backbones
(clip- and video-level top-1/top-5 over uniform clips x crops, noise for robustness) therefore
applies unchanged.

How a clip is scored:

* CLIP / SigLIP (image models): every frame goes through the image tower; the L2-normalised
  frame embeddings are averaged over time and normalised again (temporal mean pooling); logits
  are ``logit_scale.exp() * cosine`` (+ ``logit_bias`` for SigLIP), as the models' own forward.
* X-CLIP (video-native): exactly ``XCLIPModel.forward`` with the class text embeddings computed
  beforehand: the frames' class tokens go through the multi-frame integration transformer, and
  the video-specific prompt generator adds the clip's visual context to every class embedding.

Prompt ensembles: for CLIP and SigLIP a class's embedding is the normalised mean of its
normalised template embeddings (CLIP's recipe); X-CLIP's prompt generator works on the raw
projected text embeddings, so there the raw embeddings are averaged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from transformers.modeling_outputs import ImageClassifierOutput

from hf_vssl.models.backbone_foundation import renormalization

from .loading import FoundationModel, load_foundation_model
from .prompts import DEFAULT_TEMPLATES, build_prompts

__all__ = ["ZeroShotVideoClassifier"]


class ZeroShotVideoClassifier(nn.Module):
    """A foundation model plus the text embeddings of one dataset's classes (see the module docstring).

    Args:
        foundation: the loaded model (:func:`~hf_vssl.foundation.loading.load_foundation_model`).
        class_names: the cleaned class names, in label-index order.
        templates: prompt templates (one ``{}`` each); several form an ensemble.
        text_batch_size: prompts per text-tower batch while embedding the classes.
        device: where the model runs (the text embeddings are computed there, once).
    """

    def __init__(
        self,
        foundation: FoundationModel,
        class_names: Sequence[str],
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        *,
        text_batch_size: int = 256,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        if len(class_names) < 2:
            raise ValueError(f"zero-shot classification needs at least 2 classes, got {list(class_names)}")
        self.model = foundation.model.eval()
        if device is not None:
            self.model.to(device)
        device = next(self.model.parameters()).device
        self.tokenizer = foundation.tokenizer
        self.family, self.name_or_path = foundation.family, foundation.name_or_path
        self.video_native = foundation.spec.video_native
        self.num_frames, self.image_size = foundation.num_frames, foundation.image_size
        self.class_names, self.templates = list(class_names), list(templates)
        scale, shift = renormalization(foundation.image_mean, foundation.image_std)
        self.register_buffer("input_scale", scale.to(device), persistent=False)
        self.register_buffer("input_shift", shift.to(device), persistent=False)
        self.register_buffer("text_embeds", self.encode_text(foundation, text_batch_size), persistent=False)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        class_names: Sequence[str],
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        *,
        num_frames: int | None = None,
        **kwargs,
    ) -> ZeroShotVideoClassifier:
        """Load the foundation model at ``path_or_id`` and embed ``class_names`` (see the class)."""
        return cls(load_foundation_model(path_or_id, num_frames=num_frames), class_names, templates, **kwargs)

    @property
    def num_labels(self) -> int:
        """Number of classes (one text embedding each)."""
        return len(self.class_names)

    @torch.inference_mode()
    def encode_text(self, foundation: FoundationModel, batch_size: int = 256) -> torch.Tensor:
        """``(num_classes, dim)`` class embeddings: every (class, template) prompt embedded, then averaged."""
        prompts = build_prompts(self.class_names, self.templates)
        device = next(self.model.parameters()).device
        accepted = foundation.spec.text_inputs
        chunks = []
        for start in range(0, len(prompts), batch_size):
            tokens = self.tokenizer(
                prompts[start : start + batch_size], return_tensors="pt", **foundation.spec.tokenizer_kwargs
            )
            inputs = {k: v.to(device) for k, v in tokens.items() if k in accepted}
            chunks.append(self.model.get_text_features(**inputs).pooler_output.float())
        embeds = torch.cat(chunks).view(len(self.class_names), len(self.templates), -1)
        if self.video_native:
            return embeds.mean(1)
        return F.normalize(F.normalize(embeds, dim=-1).mean(1), dim=-1)

    def _frames(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(N, T, C, H, W)`` in hf_vssl's normalisation -> ``(N*T, C, H, W)`` in the model's."""
        frames = pixel_values.flatten(0, 1)
        return frames * self.input_scale.to(frames.dtype) + self.input_shift.to(frames.dtype)

    def _image_model_logits(self, frames: torch.Tensor, clips: int, time: int) -> torch.Tensor:
        features = self.model.get_image_features(pixel_values=frames).pooler_output.float()
        video = F.normalize(F.normalize(features, dim=-1).view(clips, time, -1).mean(1), dim=-1)
        logits = self.model.logit_scale.exp().float() * video @ self.text_embeds.T
        bias = getattr(self.model, "logit_bias", None)
        return logits + bias.float() if bias is not None else logits

    def _xclip_logits(self, frames: torch.Tensor, clips: int, time: int) -> torch.Tensor:
        model = self.model
        vision = model.vision_model(pixel_values=frames)
        video = model.visual_projection(vision.pooler_output).view(clips, time, -1)
        video = model.mit(video).pooler_output
        visual = (
            model.prompts_visual_layernorm(vision.last_hidden_state[:, 1:, :])
            @ model.prompts_visual_projection
        )
        visual = visual.view(clips, time, -1, video.shape[-1]).mean(1)
        text = self.text_embeds.to(video.dtype).unsqueeze(0).expand(clips, -1, -1)
        text = text + model.prompts_generator(text, visual)
        video, text = F.normalize(video.float(), dim=-1), F.normalize(text.float(), dim=-1)
        return model.logit_scale.exp().float() * torch.einsum("bd,bkd->bk", video, text)

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> ImageClassifierOutput:
        """``pixel_values (N, T, C, H, W)`` -> ``logits (N, num_classes)`` (float32)."""
        if pixel_values.ndim != 5:
            raise ValueError(
                f"pixel_values must be (clips, frames, channels, height, width), got shape "
                f"{tuple(pixel_values.shape)}"
            )
        clips, time = pixel_values.shape[:2]
        if self.video_native and time != self.num_frames:
            raise ValueError(f"{self.name_or_path} takes clips of {self.num_frames} frames, got {time}")
        frames = self._frames(pixel_values)
        if self.video_native:
            return ImageClassifierOutput(logits=self._xclip_logits(frames, clips, time))
        return ImageClassifierOutput(logits=self._image_model_logits(frames, clips, time))
