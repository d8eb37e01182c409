"""VSSLVideoProcessor: sample a clip, resize the shortest side, center crop, normalise.

This file is part of the remote code that checkpoints carry: it imports only installed
libraries.
"""

from __future__ import annotations

import numpy as np
from transformers.image_utils import PILImageResampling
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import default_sample_indices_fn

#: Per-channel mean and std of Kinetics-400 frames in [0, 1] (the pytorchvideo convention).
#: The training transforms (``hf_vssl.data.transforms``) normalise with the same constants.
VIDEO_MEAN = (0.45, 0.45, 0.45)
VIDEO_STD = (0.225, 0.225, 0.225)


def central_clip_indices(total_frames: int, num_frames: int, frame_stride: int = 1) -> np.ndarray:
    """Indices of the central clip of ``num_frames`` frames taken every ``frame_stride`` frames.

    The models are trained on contiguous clips at a fixed stride, so inference reads one such
    clip from the middle of the video; a video shorter than the clip loops from its start.
    """
    if total_frames < 1:
        raise ValueError("The video has no frames.")
    span = num_frames * frame_stride
    start = max(0, (total_frames - span) // 2)
    return (start + np.arange(num_frames) * frame_stride) % total_frames


class VSSLVideoProcessor(BaseVideoProcessor):
    r"""Turns videos into the ``pixel_values`` of hf_vssl models, shape ``(B, T, C, H, W)``.

    Frame sampling follows transformers' ``BaseVideoProcessor.sample_frames`` contract:
    ``num_frames`` and ``fps`` are mutually exclusive. By default (or with ``num_frames``) it takes
    the central clip of ``num_frames`` frames at ``frame_stride`` (the evaluation protocol of the
    study; short videos loop); with ``fps`` (per call or set on the processor, which then needs
    the video's own frame rate in its metadata) it takes ``fps`` frames per second of video,
    spread uniformly over the whole video, as transformers' default sampler does. Then the
    shortest side is resized to ``size`` and the frames are center-cropped to ``crop_size`` and
    normalised with :data:`VIDEO_MEAN` / :data:`VIDEO_STD`.

    Example:

    ```python
    >>> from hf_vssl import VSSLVideoProcessor
    >>> processor = VSSLVideoProcessor(num_frames=16, size={"shortest_edge": 128},
    ...                                crop_size={"height": 112, "width": 112})
    >>> batch = processor("video.mp4", return_tensors="pt")   # doctest: +SKIP
    >>> batch["pixel_values"].shape                          # doctest: +SKIP
    torch.Size([1, 16, 3, 112, 112])
    ```
    """

    resample = PILImageResampling.BILINEAR
    image_mean = list(VIDEO_MEAN)
    image_std = list(VIDEO_STD)
    size = {"shortest_edge": 128}
    default_to_square = False
    crop_size = {"height": 112, "width": 112}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    do_sample_frames = True
    num_frames = 16
    frame_stride = 1
    model_input_names = ["pixel_values"]

    def __init__(self, frame_stride: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if frame_stride is not None:
            self.frame_stride = int(frame_stride)
        if kwargs.get("fps") is not None and "num_frames" not in kwargs:
            self.num_frames = None  # a processor sampling by rate has no default clip length to clash with

    def sample_frames(
        self, metadata, num_frames: int | None = None, fps: float | None = None, **kwargs
    ) -> np.ndarray:
        """Indices of the frames to read: ``fps`` frames per second over the whole video, else the central clip.

        Raises ``ValueError`` when both ``num_frames`` and ``fps`` are given, or ``fps`` without the
        video's frame rate in ``metadata``.
        """
        if fps is not None and num_frames is not None:
            raise ValueError("`num_frames` and `fps` are mutually exclusive arguments, please use only one!")
        fps = fps if fps is not None or num_frames is not None else getattr(self, "fps", None)
        if fps is not None:
            return default_sample_indices_fn(metadata, fps=fps)
        num_frames = num_frames if num_frames is not None else self.num_frames
        return central_clip_indices(int(metadata.total_num_frames), int(num_frames), self.frame_stride)

    def preprocess(self, videos, **kwargs):
        if kwargs.get("fps") is not None:
            # transformers fills unset arguments from the processor's attributes; a per-call fps
            # replaces the default clip length rather than clashing with it.
            kwargs.setdefault("num_frames", None)
        batch = super().preprocess(videos, **kwargs)
        # transformers names the output `pixel_values_videos`; our models (and the
        # video-classification pipeline, which calls `model(**inputs)`) expect `pixel_values`.
        batch["pixel_values"] = batch.pop("pixel_values_videos")
        return batch

    @classmethod
    def for_clip(cls, num_frames: int, image_size: int, frame_stride: int = 1) -> VSSLVideoProcessor:
        """The processor matching a model trained on ``num_frames`` x ``image_size`` clips."""
        return cls(
            num_frames=num_frames,
            frame_stride=frame_stride,
            size={"shortest_edge": int(round(image_size * 8 / 7))},
            crop_size={"height": image_size, "width": image_size},
        )
