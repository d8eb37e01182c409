"""Rendering: whole videos at once with broadcasting over (T, H, W)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .classes import SHAPES

#: peak relative brightness change of an object's speckle shading (v3 specs carry one).
_SPECKLE_CONTRAST = 0.2


def _primary_path(
    spec: dict[str, Any], t: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre x, y and orientation of the primary object for every frame index ``t``."""
    height, width = size
    traj = spec["trajectory"]
    obj = spec["primary"]
    x0, y0 = obj["start"]
    angle = np.full(t.shape, obj["angle"])
    kind = traj["kind"]
    if kind == "wrap":
        # Leave the frame fully on one side, re-enter on the other: a uniform position at any time.
        margin = obj["radius"] + 1.5
        vx, vy = traj["velocity"]
        x = (x0 + vx * t + margin) % (width + 2 * margin) - margin
        y = (y0 + vy * t + margin) % (height + 2 * margin) - margin
    elif kind == "bounce":
        vx, vy = traj["velocity"]
        lo = obj["radius"] + 1.0
        x = _reflect(x0 + vx * t, lo, width - lo)
        y = _reflect(y0 + vy * t, lo, height - lo)
    elif kind == "orbit":
        theta = traj["phase"] + traj["angular_speed"] * t
        x = x0 + traj["orbit_radius"] * np.cos(theta)
        y = y0 + traj["orbit_radius"] * np.sin(theta)
        angle = angle + traj["angular_speed"] * t  # spin in the same sense as the orbit
    elif kind == "swing":
        offset = traj["amplitude"] * np.sin(2 * math.pi * t / traj["period"] + traj["phase"])
        x = x0 + offset * math.cos(traj["axis"])
        y = y0 + offset * math.sin(traj["axis"])
    elif kind == "still":
        x, y = x0 + traj["drift"][0] * t, y0 + traj["drift"][1] * t
    else:
        raise ValueError(f"unknown trajectory kind {kind!r}")
    return x, y, angle


def _reflect(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold an unbounded coordinate into [lo, hi] as a ball bouncing between two walls."""
    span = hi - lo
    return lo + span - np.abs((u - lo) % (2 * span) - span)


def _signed_distance(shape: str, u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """Signed distance (pixels, negative inside) to ``shape`` in object-local coordinates."""
    if shape == "disc":
        return np.hypot(u, v) - radius
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.8 * radius
    if shape == "triangle":
        normals = [
            (math.cos(a), math.sin(a))
            for a in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3)
        ]
        return np.max(np.stack([nx * u + ny * v for nx, ny in normals]), axis=0) - 0.55 * radius
    if shape == "cross":
        arm = 0.32 * radius
        return np.minimum(
            np.maximum(np.abs(u) - radius, np.abs(v) - arm), np.maximum(np.abs(u) - arm, np.abs(v) - radius)
        )
    if shape == "ring":
        return np.abs(np.hypot(u, v) - 0.72 * radius) - 0.28 * radius
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _draw(
    canvas: np.ndarray,
    pad: int,
    obj: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    angle: np.ndarray,
    flash: np.ndarray | None = None,
) -> None:
    """Composite one object, in place, over ``canvas`` (T, H + 2P, W + 2P, 3) padded by P pixels.

    Only a square window around the object is computed in every frame (gathered and scattered
    with one fancy index for all frames), with 1-pixel anti-aliased edges so that sub-pixel
    motion stays smooth.
    """
    side = _window(obj)
    num_frames = canvas.shape[0]
    # Top-left corner of each frame's window in padded coordinates, and the local pixel grid.
    ox = np.floor(x).astype(np.int64) - side // 2 + pad
    oy = np.floor(y).astype(np.int64) - side // 2 + pad
    ox = np.clip(ox, 0, canvas.shape[2] - side)
    oy = np.clip(oy, 0, canvas.shape[1] - side)
    local = np.arange(side, dtype=np.float32)
    dx = (ox - pad).astype(np.float32)[:, None, None] + local[None, None, :] - x[:, None, None]
    dy = (oy - pad).astype(np.float32)[:, None, None] + local[None, :, None] - y[:, None, None]
    cos = np.cos(angle).astype(np.float32)[:, None, None]
    sin = np.sin(angle).astype(np.float32)[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # object-local frame (rotates with the object)
    alpha = np.clip(0.5 - _signed_distance(obj["shape"], u, v, obj["radius"]), 0.0, 1.0)[..., None]
    colour = np.asarray(obj["colour"], dtype=np.float32)
    if obj["texture"] == "striped":
        phase = 2 * math.pi / obj["stripe_period"]
        s_cos, s_sin = math.cos(obj["stripe_angle"]), math.sin(obj["stripe_angle"])
        stripes = 0.5 + 0.5 * np.tanh(3.0 * np.sin(phase * (s_cos * u + s_sin * v)))
        paint = colour * (0.3 + 0.7 * stripes[..., None])
    else:
        paint = np.broadcast_to(colour, (*alpha.shape[:-1], 3))
    if obj.get("speckle"):  # v3: faint shading fixed to the object, so motion shows inside it
        shade = sum(
            np.cos((2 * math.pi / wavelength) * (math.cos(theta) * u + math.sin(theta) * v) + phase)
            for wavelength, theta, phase in obj["speckle"]
        )
        paint = paint * (1 + _SPECKLE_CONTRAST / len(obj["speckle"]) * shade[..., None])
    if flash is not None:  # a flash blends the object towards white
        weight = 0.85 * flash[:, None, None, None]
        paint = paint * (1 - weight) + weight
    frames = np.arange(num_frames)[:, None, None]
    rows = oy[:, None, None] + np.arange(side)[None, :, None]
    cols = ox[:, None, None] + np.arange(side)[None, None, :]
    canvas[frames, rows, cols] = canvas[frames, rows, cols] * (1 - alpha) + paint * alpha


def _window(obj: dict[str, Any]) -> int:
    """Side of the square window that holds ``obj`` whatever its sub-pixel position."""
    return 2 * math.ceil(obj["radius"]) + 4


def _texture_field(
    waves: list[list[float]],
    gx: np.ndarray,
    gy: np.ndarray,
    shift_x: np.ndarray,
    shift_y: np.ndarray,
    scale: float,
) -> np.ndarray:
    """Sum of plane waves over the frame grid, translated by (shift_x, shift_y) per frame.

    sin(a + b_t) = sin a cos b_t + cos a sin b_t: the spatial part is computed once and every
    frame is a (2K)-term linear combination of it, i.e. one small matrix product.
    """
    spatial, temporal = [], []
    for k, theta, phase in waves:
        kx, ky = (k / scale) * math.cos(theta), (k / scale) * math.sin(theta)
        a = (kx * gx + ky * gy + phase).ravel()
        b = kx * shift_x + ky * shift_y
        spatial += [np.sin(a), np.cos(a)]
        temporal += [np.cos(b), np.sin(b)]
    # einsum's own loop: BLAS threads only add contention at this size.
    field = np.einsum(
        "tk,kp->tp", np.stack(temporal, 1).astype(np.float32), np.stack(spatial).astype(np.float32)
    )
    return field.reshape(len(shift_x), *gx.shape) / math.sqrt(len(waves))


def _camera_shake(spec: dict[str, Any], t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smooth camera shake: two sinusoids per axis, shifting background and objects alike."""
    jit = spec["jitter"]
    f, p = jit["frequencies"], jit["phases"]
    jx = jit["amplitude"] * (
        np.sin(2 * math.pi * f[0] * t + p[0]) + 0.5 * np.sin(2 * math.pi * f[1] * t + p[1])
    )
    jy = jit["amplitude"] * (
        np.sin(2 * math.pi * f[2] * t + p[2]) + 0.5 * np.sin(2 * math.pi * f[3] * t + p[3])
    )
    return jx.astype(np.float32), jy.astype(np.float32)


def object_track(spec: dict[str, Any], num_frames: int = 64, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """``(T, 3)`` centre x, centre y (pixels, camera shake included) and orientation of the primary object."""
    t = np.arange(num_frames, dtype=np.float32)
    jx, jy = _camera_shake(spec, t)
    x, y, angle = _primary_path(spec, t, size)
    return np.stack([x + jx, y + jy, angle], axis=1)


def render_video(spec: dict[str, Any], num_frames: int = 64, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """Render ``spec`` (from :func:`sample_video_spec`) to ``(T, H, W, 3)`` uint8 RGB frames."""
    height, width = size
    t = np.arange(num_frames, dtype=np.float32)
    gy, gx = np.mgrid[0:height, 0:width].astype(np.float32)
    jx, jy = _camera_shake(spec, t)

    scene = spec["scene"]
    scale = min(height, width) / 64
    pan = spec["pan"]
    # The background texture slides by the pan velocity, plus the shake.
    shift_x = pan["offset"][0] + pan["velocity"][0] * t + jx
    shift_y = pan["offset"][1] + pan["velocity"][1] * t + jy
    # Drawn on a padded canvas so that the window of an object leaving the frame still fits.
    pad = max(_window(spec["primary"]), _window(spec["secondary"])) + 4
    canvas = np.zeros((num_frames, height + 2 * pad, width + 2 * pad, 3), np.float32)
    view = canvas[:, pad : pad + height, pad : pad + width]
    # Per pixel: [1, texture field 1, texture field 2, below-horizon weight] -> RGB in one product.
    row = (np.arange(height, dtype=np.float32)[None, :] - jy[:, None]) / max(height - 1, 1)  # (T, H)
    features = np.empty((num_frames, height, width, 4), np.float32)
    features[..., 0] = 1.0
    for i, waves in enumerate(scene["waves"]):
        features[..., 1 + i] = _texture_field(waves, gx, gy, shift_x, shift_y, scale)
    # Fixed "up": a soft horizon (ground tint below it) and light falling from the top.
    features[..., 3] = (1 / (1 + np.exp(-(row - scene["horizon"]) * 40)))[:, :, None]
    palette = np.asarray([scene["base"], *scene["tints"], scene["ground"]], np.float32)  # (4, 3)
    view[...] = np.einsum("thwk,kc->thwc", features, palette) * (1.2 - 0.65 * row)[:, :, None, None]

    secondary = spec["secondary"]
    sx = secondary["start"][0] + secondary["drift"][0] * t + jx
    sy = secondary["start"][1] + secondary["drift"][1] * t + jy
    px, py, pangle = _primary_path(spec, t, size)
    px, py = px + jx, py + jy
    flash_primary = flash_secondary = None
    traj = spec["trajectory"]
    if traj["kind"] == "still":
        cycle = (t.astype(np.int64) - traj["flash_phase"]) % traj["flash_period"]

        def flashing(offset: int) -> np.ndarray:
            return ((cycle >= offset) & (cycle < offset + traj["flash_duration"])).astype(np.float32)

        primary_is_left = spec["primary"]["start"][0] < secondary["start"][0]
        primary_first = primary_is_left == (traj["flash_first"] == "left")
        gap = traj["flash_gap"]
        flash_primary = flashing(0 if primary_first else gap)
        flash_secondary = flashing(gap if primary_first else 0)
    _draw(canvas, pad, secondary, sx, sy, np.full(t.shape, secondary["angle"], np.float32), flash_secondary)
    _draw(canvas, pad, spec["primary"], px, py, pangle, flash_primary)
    return (np.clip(view, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
