"""Geometry: crops, flip and rotation as one affine map, resampled in one pass.

Crop (+ resize), horizontal flip and rotation compose into one 2x3 affine map from output to
source coordinates (:func:`crop_thetas`). Only the source region that map reads (its bounding
box plus a pixel of margin) is cut from the uint8 frames and converted to float, then one
``F.affine_grid`` + ``F.grid_sample`` (bilinear, ``align_corners=False``) resamples all
``T x 3`` planes of the clip at once with one shared grid (:func:`resample`). A crop more than
1.5x larger than the output is first box-filtered by an integer factor (``round(scale)``, per
axis) so that the bilinear step never shrinks by more than ~1.25x (a cheap antialias).
A rotation samples the frame around the crop: the corners a rotated crop uncovers show the
surrounding frame where it exists and are black (torchvision's ``fill=0``) only outside the
frame (rotating the cropped image instead always gives black corners). Without rotation
(CVRL) the border pixels are replicated instead, as a plain resize does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as NF

from .params import Rows, pick, uniform

#: Training and evaluation resize the shortest side to ``image_size * RESIZE_RATIO`` (128 for 112).
RESIZE_RATIO = 128 / 112


def resize_size(image_size: int) -> int:
    """Shortest-side length that training and evaluation crops of ``image_size`` are taken from."""
    return round(image_size * RESIZE_RATIO)


def crop_thetas(boxes: torch.Tensor, flip: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """``(B, 2, 3)`` maps from output coordinates in [-1, 1] to source pixel-edge coordinates.

    ``boxes`` ``(B, 4)``: ``top, left, height, width`` of each crop; ``flip`` ``(B,)`` bool;
    ``angle`` ``(B,)`` degrees. See :func:`crop_affine`.
    """
    top, left, height, width = boxes.unbind(-1)
    rad = torch.deg2rad(angle.to(boxes.dtype))
    cos, sin = rad.cos(), rad.sin()
    sx, sy = torch.where(flip, -width, width) / 2, height / 2
    # source = scale @ unflip @ unrotate @ output (+ the crop centre); unrotate = R(-angle) with
    # y pointing down, i.e. [[cos, -sin], [sin, cos]].
    return torch.stack(
        [
            torch.stack([sx * cos, -sx * sin, left + width / 2], -1),
            torch.stack([sy * sin, sy * cos, top + height / 2], -1),
        ],
        -2,
    )


def crop_affine(
    top: float, left: float, height: float, width: float, flip: bool = False, angle: float = 0.0
) -> torch.Tensor:
    """2x3 map (float64) from output coordinates in [-1, 1] to source pixel-edge coordinates.

    The output is the ``(top, left, height, width)`` region of the source, resized to the output
    size, flipped horizontally if ``flip``, then rotated by ``angle`` degrees counter-clockwise
    about its centre (torchvision's ``rotate`` convention), in that order.
    """
    boxes = torch.tensor([[top, left, height, width]], dtype=torch.float64)
    return crop_thetas(boxes, torch.tensor([bool(flip)]), torch.tensor([float(angle)], dtype=torch.float64))[
        0
    ]


def box_grid_theta(theta: torch.Tensor, x0: float, y0: float, box_w: float, box_h: float) -> torch.Tensor:
    """``affine_grid`` thetas ``(B, 2, 3)`` (float32) reading the ``box_w x box_h`` box at ``(x0, y0)``.

    Composes ``theta`` (output -> source pixel-edge coordinates) with source -> the box's
    normalised coordinates.
    """
    # Python scalars only: no small host-to-device copies (and syncs) on an accelerator.
    out = torch.cat([theta[:, :1] * (2 / box_w), theta[:, 1:] * (2 / box_h)], dim=1)
    out[:, 0, 2] -= 2 * x0 / box_w + 1
    out[:, 1, 2] -= 2 * y0 / box_h + 1
    return out.to(torch.float32)


def resample(
    video: torch.Tensor, theta: Rows | torch.Tensor, size: int, padding_mode: str = "zeros"
) -> torch.Tensor:
    """Sample a ``size x size`` float clip (values 0-255) from a uint8 ``(T, 3, H, W)`` clip.

    ``theta`` (2x3, see :func:`crop_affine`) maps output coordinates in [-1, 1] to source
    pixel-edge coordinates. One bilinear ``grid_sample`` (``align_corners=False``) for all
    ``T x 3`` planes with one grid, on the float copy of just the source region the map reads,
    box-filtered by an integer factor first when the map shrinks by 1.5x or more. Outside the
    frame: ``padding_mode`` (``"zeros"``: black, ``"border"``: edge pixels).
    """
    t, c, src_h, src_w = video.shape
    (a, b, tx), (d, e, ty) = theta.tolist() if isinstance(theta, torch.Tensor) else theta
    xs = [a * u + b * v + tx for u, v in ((-1, -1), (-1, 1), (1, -1), (1, 1))]
    ys = [d * u + e * v + ty for u, v in ((-1, -1), (-1, 1), (1, -1), (1, 1))]
    # Source pixels per output pixel along each output axis. Under the small rotations used here
    # each output axis stays closest to one source axis: box-filter that axis by its shrink.
    zoom_x, zoom_y = math.hypot(a, d) * 2 / size, math.hypot(b, e) * 2 / size
    if abs(a) < abs(b):  # output x runs along source y
        zoom_x, zoom_y = zoom_y, zoom_x
    kx = round(zoom_x) if zoom_x >= 1.5 else 1
    ky = round(zoom_y) if zoom_y >= 1.5 else 1

    # The source pixels that bilinear sampling (after the box filter) can touch, inside the frame.
    x0 = min(max(0, math.floor(min(xs)) - kx), src_w - 1)
    x1 = max(min(src_w, math.ceil(max(xs)) + kx), x0 + 1)
    y0 = min(max(0, math.floor(min(ys)) - ky), src_h - 1)
    y1 = max(min(src_h, math.ceil(max(ys)) + ky), y0 + 1)
    box = video[:, :, y0:y1, x0:x1].to(torch.float32, memory_format=torch.contiguous_format)
    box = box.view(1, t * c, y1 - y0, x1 - x0)
    if kx > 1 or ky > 1:
        box = NF.avg_pool2d(box, (ky, kx), ceil_mode=True)
    box_w, box_h = box.shape[-1] * kx, box.shape[-2] * ky  # source pixels the (pooled) box spans
    grid_theta = box_grid_theta(
        torch.tensor([[[a, b, tx], [d, e, ty]]], dtype=torch.float64), x0, y0, box_w, box_h
    )
    grid = NF.affine_grid(grid_theta, [1, t * c, size, size], align_corners=False)
    out = NF.grid_sample(box, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out.view(t, c, size, size)


def resample_batch(
    videos: torch.Tensor, theta: torch.Tensor, size: int, padding_mode: str = "zeros"
) -> torch.Tensor:
    """:func:`resample` for a batch: uint8 ``(B, T, 3, H, W)`` clips, ``theta`` ``(B, 2, 3)``.

    One ``affine_grid`` + ``grid_sample`` over the whole batch (each clip's grid shared by its
    ``T x 3`` planes), reading the full frames; no box filter (the loader part of a split preset
    leaves at most a ~1.2x shrink). Returns float32 ``(B, T, 3, size, size)``, values 0-255.
    """
    b, t, c, height, width = videos.shape
    planes = videos.reshape(b, t * c, height, width).to(torch.float32)
    grid = NF.affine_grid(
        box_grid_theta(theta, 0, 0, width, height), [b, t * c, size, size], align_corners=False
    )
    out = NF.grid_sample(planes, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out.view(b, t, c, size, size)


def short_side_crop_box(height: int, width: int, size: int, resize_to: int) -> int:
    """Side of the square that, cut from ``height x width`` frames, is ``size`` after the
    resize of the shortest side to ``resize_to``."""
    return min(round(size * min(height, width) / resize_to), height, width)


def random_resized_crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], uniforms: Sequence[float]
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` as torchvision's ``RandomResizedCrop`` draws it (10 tries, then a
    central crop), from 40 uniforms in [0, 1)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for attempt in range(10):
        u_area, u_ratio, u_top, u_left = uniforms[4 * attempt : 4 * attempt + 4]
        target_area = area * uniform(u_area, *scale)
        aspect_ratio = math.exp(uniform(u_ratio, *log_ratio))
        w = round(math.sqrt(target_area * aspect_ratio))
        h = round(math.sqrt(target_area / aspect_ratio))
        if 0 < w <= width and 0 < h <= height:
            return pick(u_top, height - h + 1), pick(u_left, width - w + 1), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def cut_region(video: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The ``(top, left, height, width)`` region of uint8 frames, zeros (black) outside the frame."""
    src_h, src_w = video.shape[-2:]
    if top >= 0 and left >= 0 and top + height <= src_h and left + width <= src_w:
        return video[..., top : top + height, left : left + width]
    out = video.new_zeros(*video.shape[:-2], height, width)
    y0, y1 = max(top, 0), min(top + height, src_h)
    x0, x1 = max(left, 0), min(left + width, src_w)
    if y1 > y0 and x1 > x0:
        out[..., y0 - top : y1 - top, x0 - left : x1 - left] = video[..., y0:y1, x0:x1]
    return out
