"""The built-in synthetic corpus: real encoded videos in the official layout of any source.

Every video shows a textured background panned slowly in a random direction, lit from above
(brighter sky, darker ground below a soft horizon, so the frame has a consistent "up"), shaken
by a small smooth camera jitter, and two foreground objects: a large *primary* object and a
small *secondary* one. Each video carries two independent labels, drawn so that each is
balanced and carries no information about the other:

* ``motion`` (:data:`MOTION_CLASSES`): what the objects *do* -- the direction of a slow linear
  motion, fast bouncing vs slow motion, clockwise vs counter-clockwise orbit, periodic swing vs
  linear motion, and the order of two events (a repeating pair of flashes: the left object
  flashes just before the right one, or the other way round). Shape, texture and colour are
  random, start positions are uniform (linear motions wrap around the frame), so no single
  frame tells these classes apart.
* ``appearance`` (:data:`APPEARANCE_CLASSES`): what the primary object *is* -- its shape and
  texture; its colour and its motion are random, so one frame suffices.

:func:`make_synthetic_dataset` writes the videos with :func:`~hf_vssl.data.video_io.encode_video`
in the layout of UCF101, HMDB51, Kinetics-400, Something-Something V2, Diving48 or a plain
video folder, with every annotation file, plus ``synthetic_metadata.json`` (every video's
attributes and both labels), which the ``synthetic`` source reads to serve either label set.
:func:`get_default_corpus` generates the default corpus once into a cache and reuses it.

Clips of one *group* (UCF101's ``gXX``) share a background scene, and the official split files
never put one group in both train and test, as in UCF101. Group ``g`` of every class shows the
same scene, so the background says nothing about the label: a model cannot pass the training
set by remembering scenes (with class-specific scenes it did, and failed on the held-out ones).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import string
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from hf_vssl.data.video_io import encode_video

#: bump when the rendering or the layouts change: cached corpora of another version are redone.
CORPUS_VERSION = 2
METADATA_FILE = "synthetic_metadata.json"
#: written last by :func:`make_synthetic_dataset`; a corpus without it is incomplete.
COMPLETE_MARKER = ".hf_vssl_complete"

MOTION_CLASSES: tuple[str, ...] = (
    "move_left",  # slow linear motion (wrapping around the frame) ...
    "move_right",
    "move_up",
    "move_down",
    "move_fast",  # ... vs fast motion in any direction, bouncing off the borders
    "orbit_cw",  # circular path, clockwise on screen (and spinning the same way)
    "orbit_ccw",
    "swing",  # periodic back-and-forth along a random axis
    "flash_left_first",  # both objects still; the left one flashes, then the right one
    "flash_right_first",
)
SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "cross", "ring")
TEXTURES: tuple[str, ...] = ("solid", "striped")
APPEARANCE_CLASSES: tuple[str, ...] = tuple(f"{texture}_{shape}" for shape in SHAPES for texture in TEXTURES)
LABEL_SETS: dict[str, tuple[str, ...]] = {"motion": MOTION_CLASSES, "appearance": APPEARANCE_CLASSES}
LAYOUTS: tuple[str, ...] = ("ucf101", "hmdb51", "kinetics400", "ssv2", "diving48", "videofolder")
#: container written for each layout (the codec follows from it in ``encode_video``).
LAYOUT_EXTENSIONS: dict[str, str] = {
    "ucf101": "avi", "hmdb51": "avi", "kinetics400": "mp4", "ssv2": "webm", "diving48": "mp4", "videofolder": "mp4",
}
NUM_FOLDS = 3  # UCF101 / HMDB51 style folds; the other layouts use fold 1's partition

# Something-Something-style templates, one per class (the class is the template without brackets).
_SSV2_TEMPLATES: dict[str, str] = {
    "move_left": "Moving [something] from right to left",
    "move_right": "Moving [something] from left to right",
    "move_up": "Moving [something] up",
    "move_down": "Moving [something] down",
    "move_fast": "Throwing [something] around quickly",
    "orbit_cw": "Moving [something] in a circle clockwise",
    "orbit_ccw": "Moving [something] in a circle counterclockwise",
    "swing": "Swinging [something] back and forth",
    "flash_left_first": "Flashing [something] on the left, then [something] on the right",
    "flash_right_first": "Flashing [something] on the right, then [something] on the left",
}


def class_names(label_set: str = "motion", num_classes: int | None = None) -> tuple[str, ...]:
    """The canonical class names of ``label_set`` ("motion" or "appearance"), optionally the first N."""
    if label_set not in LABEL_SETS:
        raise ValueError(f"label_set must be one of {sorted(LABEL_SETS)}, got {label_set!r}")
    names = LABEL_SETS[label_set]
    if num_classes is not None:
        if not 2 <= num_classes <= len(names):
            raise ValueError(f"num_classes for label_set {label_set!r} must be in [2, {len(names)}], got {num_classes}")
        names = names[:num_classes]
    return names


def layout_class_name(name: str, layout: str) -> str:
    """How a canonical class name is spelled in ``layout``'s annotations (UCF101 CamelCase, ...)."""
    words = name.split("_")
    if layout == "ucf101":
        return "".join(word.capitalize() for word in words)
    if layout == "kinetics400":
        return " ".join(words)
    if layout == "ssv2":
        template = _SSV2_TEMPLATES.get(name, "Showing [something] that is a " + " ".join(words))
        return template.replace("[something]", "something")
    return name  # hmdb51 / diving48 / videofolder keep snake_case


# --------------------------------------------------------------------------------------------
# Sampling: every continuous parameter of a video, as a JSON-serialisable dict.
# --------------------------------------------------------------------------------------------


def _random_colour(rng: np.random.Generator) -> list[float]:
    """A saturated, bright RGB colour (HSV sampled), so objects stand out from the muted scene."""
    hue, sat, val = rng.random(), rng.uniform(0.65, 1.0), rng.uniform(0.8, 1.0)
    # HSV -> RGB in closed form: channel = v * (1 - s * clip(min(k, 4 - k), 0, 1)), k = (n + 6h) mod 6.
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
    rgb = val * (1 - sat * np.clip(np.minimum(k, 4 - k), 0, 1))
    return [round(float(c), 4) for c in rgb]


def _scene(rng: np.random.Generator) -> dict[str, Any]:
    """Background parameters shared by one group's clips: palette, texture waves, horizon."""
    base = rng.uniform(0.35, 0.6) + rng.normal(0, 0.05, 3)
    return {
        "base": [round(float(c), 4) for c in base],
        "tints": rng.normal(0, 0.12, (2, 3)).round(4).tolist(),  # colour of each texture field
        "ground": rng.normal(0, 0.08, 3).round(4).tolist(),  # colour shift below the horizon
        "horizon": round(float(rng.uniform(0.55, 0.72)), 4),  # fraction of the height
        # two texture fields, each a sum of 5 plane waves (wavelengths 10..48 px at 64 px)
        "waves": [
            [[round(float(rng.uniform(2 * math.pi / 48, 2 * math.pi / 10)), 4),
              round(float(rng.uniform(0, 2 * math.pi)), 4),
              round(float(rng.uniform(0, 2 * math.pi)), 4)] for _ in range(5)]
            for _ in range(2)
        ],
    }


def _object(rng: np.random.Generator, shape: str, texture: str, radius: float) -> dict[str, Any]:
    return {
        "shape": shape,
        "texture": texture,
        "colour": _random_colour(rng),
        "radius": round(radius, 3),
        "angle": round(float(rng.uniform(0, 2 * math.pi)), 4),
        "stripe_period": round(float(rng.uniform(4.0, 6.0)), 3),
        "stripe_angle": round(float(rng.uniform(0, math.pi)), 4),
    }


def _trajectory(rng: np.random.Generator, motion: str, scale: float) -> dict[str, Any]:
    """The primary object's motion: a kind plus its parameters (pixels at 64x64, scaled)."""
    if motion in ("move_left", "move_right", "move_up", "move_down"):
        direction = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}[motion]
        speed = rng.uniform(0.6, 1.0) * scale
        return {"kind": "wrap", "velocity": [direction[0] * speed, direction[1] * speed]}
    if motion == "move_fast":
        theta = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(2.2, 3.0) * scale
        return {"kind": "bounce", "velocity": [speed * math.cos(theta), speed * math.sin(theta)]}
    if motion in ("orbit_cw", "orbit_ccw"):
        # y points down on screen, so an increasing angle turns clockwise.
        sense = 1.0 if motion == "orbit_cw" else -1.0
        return {"kind": "orbit", "orbit_radius": rng.uniform(8, 12) * scale,
                "angular_speed": sense * rng.uniform(0.12, 0.2), "phase": rng.uniform(0, 2 * math.pi)}
    if motion == "swing":
        return {"kind": "swing", "amplitude": rng.uniform(8, 13) * scale, "axis": rng.uniform(0, math.pi),
                "period": rng.uniform(16, 26), "phase": rng.uniform(0, 2 * math.pi)}
    if motion in ("flash_left_first", "flash_right_first"):
        # A repeating pair of 2-frame flashes, the second 3 frames after the first, then a longer
        # pause (period 8-9): every 8-frame window shows both objects flash, 3 frames apart in
        # the class's order, so short clips can tell the order (a symmetric alternation could
        # not: L-R-L-R is R-L-R-L shifted).
        return {"kind": "still", "flash_first": "left" if motion == "flash_left_first" else "right",
                "flash_period": int(rng.integers(8, 10)), "flash_gap": 3, "flash_duration": 2,
                "flash_phase": int(rng.integers(0, 9)),
                "drift": rng.uniform(-0.06, 0.06, 2).round(4).tolist()}
    raise ValueError(f"unknown motion class {motion!r}; expected one of {MOTION_CLASSES}")


def sample_video_spec(seed: int, index: int, motion: str, appearance: str, scene: dict[str, Any],
                      size: tuple[int, int]) -> dict[str, Any]:
    """All parameters of one video, drawn from ``(seed, index)`` only (so any video can be redrawn)."""
    rng = np.random.default_rng([seed, index, 7])
    height, width = size
    scale = min(height, width) / 64
    texture, shape = appearance.split("_", 1)
    primary = _object(rng, shape, texture, rng.uniform(11.0, 13.0) * scale)
    secondary = _object(rng, str(rng.choice(SHAPES)), str(rng.choice(TEXTURES)), rng.uniform(4.5, 5.5) * scale)
    trajectory = _trajectory(rng, motion, scale)
    # Start positions are drawn the same way for every class (no first-frame shortcut); the two
    # objects keep a horizontal gap so "left" and "right" are well defined for the flash classes.
    while True:
        p0 = rng.uniform([16 * scale, 16 * scale], [width - 16 * scale, height - 16 * scale])
        s0 = rng.uniform([8 * scale, 8 * scale], [width - 8 * scale, height - 8 * scale])
        if abs(p0[0] - s0[0]) > 20 * scale:
            break
    pan_theta = rng.uniform(0, 2 * math.pi)
    pan_speed = rng.uniform(0.1, 0.3) * scale
    spec = {
        "motion": motion,
        "appearance": appearance,
        "primary": primary | {"start": p0.round(3).tolist()},
        "secondary": secondary | {"start": s0.round(3).tolist(),
                                  "drift": rng.uniform(-0.06, 0.06, 2).round(4).tolist()},
        "trajectory": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in trajectory.items()},
        "scene": scene,
        "pan": {"offset": rng.uniform(0, 500, 2).round(3).tolist(),
                "velocity": [round(pan_speed * math.cos(pan_theta), 4), round(pan_speed * math.sin(pan_theta), 4)]},
        "jitter": {"amplitude": round(float(rng.uniform(0.3, 0.8) * scale), 4),
                   "frequencies": rng.uniform(0.03, 0.1, 4).round(4).tolist(),
                   "phases": rng.uniform(0, 2 * math.pi, 4).round(4).tolist()},
    }
    return spec


# --------------------------------------------------------------------------------------------
# Rendering: whole videos at once with broadcasting over (T, H, W).
# --------------------------------------------------------------------------------------------


def _primary_path(spec: dict[str, Any], t: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        normals = [(math.cos(a), math.sin(a)) for a in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3)]
        return np.max(np.stack([nx * u + ny * v for nx, ny in normals]), axis=0) - 0.55 * radius
    if shape == "cross":
        arm = 0.32 * radius
        return np.minimum(np.maximum(np.abs(u) - radius, np.abs(v) - arm), np.maximum(np.abs(u) - arm, np.abs(v) - radius))
    if shape == "ring":
        return np.abs(np.hypot(u, v) - 0.72 * radius) - 0.28 * radius
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _draw(canvas: np.ndarray, pad: int, obj: dict[str, Any], x: np.ndarray, y: np.ndarray, angle: np.ndarray,
          flash: np.ndarray | None = None) -> None:
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
        paint = np.broadcast_to(colour, alpha.shape[:-1] + (3,))
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


def _texture_field(waves: list[list[float]], gx: np.ndarray, gy: np.ndarray, shift_x: np.ndarray,
                   shift_y: np.ndarray, scale: float) -> np.ndarray:
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
    field = np.einsum("tk,kp->tp", np.stack(temporal, 1).astype(np.float32), np.stack(spatial).astype(np.float32))
    return field.reshape(len(shift_x), *gx.shape) / math.sqrt(len(waves))


def _camera_shake(spec: dict[str, Any], t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smooth camera shake: two sinusoids per axis, shifting background and objects alike."""
    jit = spec["jitter"]
    f, p = jit["frequencies"], jit["phases"]
    jx = jit["amplitude"] * (np.sin(2 * math.pi * f[0] * t + p[0]) + 0.5 * np.sin(2 * math.pi * f[1] * t + p[1]))
    jy = jit["amplitude"] * (np.sin(2 * math.pi * f[2] * t + p[2]) + 0.5 * np.sin(2 * math.pi * f[3] * t + p[3]))
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
    view = canvas[:, pad:pad + height, pad:pad + width]
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


# --------------------------------------------------------------------------------------------
# Corpus assembly: who is in which class, group and split; the layouts' files.
# --------------------------------------------------------------------------------------------


def _fold_test_groups(num_groups: int, fold: int) -> set[int]:
    """Groups held out in ``fold`` (1-based): consecutive blocks of ~30 %, like UCF101's lists."""
    block = max(1, round(num_groups * 0.3))
    return {((fold - 1) * block + m) % num_groups + 1 for m in range(block)}


def _short_id(seed: int, index: int, length: int = 11) -> str:
    """A YouTube-like id, stable for (seed, index)."""
    alphabet = string.ascii_letters + string.digits + "-_"
    digest = hashlib.sha256(f"hf_vssl-{seed}-{index}".encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def _video_path(layout: str, cls: str, split: str, group: int, clip: int, index: int, seed: int) -> tuple[str, str]:
    """(relative path, video id) of a video in ``layout``."""
    name = layout_class_name(cls, layout)
    ext = LAYOUT_EXTENSIONS[layout]
    if layout == "ucf101":
        vid = f"v_{name}_g{group:02d}_c{clip:02d}"
        return f"UCF-101/{name}/{vid}.{ext}", vid
    if layout == "hmdb51":
        vid = f"synthetic_{name}_g{group:02d}_c{clip:02d}"
        return f"{name}/{vid}.{ext}", vid
    if layout == "kinetics400":
        start = int(hashlib.sha256(f"t{seed}-{index}".encode()).digest()[0])
        vid = f"{_short_id(seed, index)}_{start:06d}_{start + 10:06d}"
        return f"{'train' if split == 'train' else 'val'}/{name}/{vid}.{ext}", vid
    if layout == "ssv2":
        vid = str(index + 1)
        return f"20bn-something-something-v2/{vid}.{ext}", vid
    if layout == "diving48":
        vid = f"{_short_id(seed, index)}_{index:05d}"
        return f"rgb/{vid}.{ext}", vid
    if layout == "videofolder":
        vid = f"{name}_g{group:02d}_c{clip:02d}"
        return f"{split}/{name}/{vid}.{ext}", vid
    raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")


def _encode_one(job: tuple[str, dict[str, Any], int, tuple[int, int], float, dict[str, Any]]) -> None:
    path, spec, num_frames, size, fps, encode_kwargs = job
    frames = render_video(spec, num_frames, size)
    encode_video(frames, path, fps=fps, layout="THWC", **encode_kwargs)


#: per-container quality: small files that still keep the 1-2 pixel detail of the objects.
_ENCODE_KWARGS: dict[str, dict[str, Any]] = {
    "avi": {"bit_rate": 600_000, "gop_size": 16},
    "mp4": {"crf": 20, "gop_size": 16},
    "webm": {"bit_rate": 600_000, "gop_size": 16},
}


def make_synthetic_dataset(
    root: str | os.PathLike,
    layout: str = "ucf101",
    seed: int = 0,
    *,
    label_set: str = "motion",
    num_classes: int | None = None,
    videos_per_class: int = 30,
    clips_per_group: int = 3,
    num_frames: int = 64,
    size: tuple[int, int] = (64, 64),
    fps: float = 25,
    num_workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic corpus into ``root`` in the official layout of ``layout``; return ``root``.

    Args:
        root: output folder; must be empty or absent (or an earlier synthetic corpus with
            ``overwrite=True``).
        layout: one of :data:`LAYOUTS`. Videos are ``.avi`` (MPEG-4) for UCF101/HMDB51,
            ``.webm`` (VP8) for SSv2 and ``.mp4`` (H.264) otherwise; every annotation file of the
            layout is written (UCF101 ``classInd.txt`` and three train/test lists, HMDB51
            ``testTrainMulti_7030_splits/``, Kinetics CSVs, SSv2 and Diving48 JSONs).
        seed: everything (classes, scenes, motions, ids) follows from it: the same seed gives
            byte-identical frames.
        label_set: which label set names the layout's classes ("motion" or "appearance"); the
            other one is still recorded in ``synthetic_metadata.json``.
        num_classes: the first N classes of ``label_set`` (default: all).
        videos_per_class: videos of each class of ``label_set``; the other label set is spread
            evenly over them.
        clips_per_group: clips sharing a background scene (UCF101's ``gXX``); each fold holds out
            ~30 % of the groups, so a scene never sits in both train and test.
        num_frames, size, fps: the clips' length, ``(height, width)`` (even numbers) and rate.
        num_workers: processes rendering and encoding (default 1: the default corpus takes ~10-15 s
            on one core, and forking from a process that already runs torch is best avoided).
        overwrite: replace an earlier synthetic corpus at ``root``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    classes = class_names(label_set, num_classes)
    other_set = "appearance" if label_set == "motion" else "motion"
    other_classes = LABEL_SETS[other_set]
    height, width = int(size[0]), int(size[1])
    if height % 2 or width % 2 or min(height, width) < 32:
        raise ValueError(f"size must be even and at least 32x32, got {size}")
    num_groups = math.ceil(videos_per_class / clips_per_group)
    if num_groups < 2:
        raise ValueError(f"need at least 2 groups per class: videos_per_class={videos_per_class} "
                         f"with clips_per_group={clips_per_group} gives {num_groups}")
    root = Path(root)
    _prepare_root(root, overwrite)

    folds = list(range(1, NUM_FOLDS + 1)) if layout in ("ucf101", "hmdb51") else [1]
    videos: list[dict[str, Any]] = []
    jobs = []
    encode_kwargs = _ENCODE_KWARGS[LAYOUT_EXTENSIONS[layout]]
    for ci, cls in enumerate(classes):
        # The other label set: a balanced, shuffled sequence inside every class (independent labels).
        assign_rng = np.random.default_rng([seed, ci, 11])
        others = np.resize(assign_rng.permutation(len(other_classes)), videos_per_class)
        others = others[assign_rng.permutation(videos_per_class)]
        for j in range(videos_per_class):
            index = ci * videos_per_class + j
            group, clip = j // clips_per_group + 1, j % clips_per_group + 1
            splits = {str(f): ("test" if group in _fold_test_groups(num_groups, f) else "train") for f in folds}
            labels = {label_set: cls, other_set: other_classes[int(others[j])]}
            scene = _scene(np.random.default_rng([seed, group, 3]))  # group g of every class: one scene
            spec = sample_video_spec(seed, index, labels["motion"], labels["appearance"], scene, (height, width))
            rel, vid = _video_path(layout, cls, splits["1"], group, clip, index, seed)
            videos.append({"path": rel, "video_id": vid, "index": index, "group": group, "clip": clip,
                           "num_frames": num_frames,
                           "motion": labels["motion"], "appearance": labels["appearance"],
                           "layout_label": layout_class_name(cls, layout), "splits": splits, "spec": spec})
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            jobs.append((str(root / rel), spec, num_frames, (height, width), fps, encode_kwargs))

    workers = num_workers or 1
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_encode_one, jobs, chunksize=8))
    else:
        for job in jobs:
            _encode_one(job)

    config = {"version": CORPUS_VERSION, "layout": layout, "seed": seed, "label_set": label_set,
              "num_classes": len(classes), "videos_per_class": videos_per_class, "clips_per_group": clips_per_group,
              "num_frames": num_frames, "size": [height, width], "fps": fps}
    _WRITERS[layout](root, videos, classes, label_set)
    metadata = {**config, "folds": folds,
                "classes": {label_set: list(classes), other_set: list(other_classes)},
                "videos": videos}
    (root / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
    (root / COMPLETE_MARKER).write_text(json.dumps(config, sort_keys=True))  # last: marks completion
    return root


def _prepare_root(root: Path, overwrite: bool) -> None:
    if root.exists() and any(root.iterdir()):
        ours = (root / METADATA_FILE).exists() or (root / COMPLETE_MARKER).exists()
        if not overwrite:
            raise FileExistsError(f"{root} is not empty; pass overwrite=True to replace a synthetic corpus there")
        if not ours:
            raise FileExistsError(f"{root} is not empty and holds no {METADATA_FILE}; refusing to delete it")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)


def read_metadata(root: str | os.PathLike) -> dict[str, Any]:
    """Load ``synthetic_metadata.json`` of a corpus written by :func:`make_synthetic_dataset`."""
    path = Path(root) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no synthetic corpus metadata at {path}; generate one with make_synthetic_dataset()")
    return json.loads(path.read_text())


# ---- one writer per layout: the official annotation files ------------------------------------


def _write_ucf101(root: Path, videos: list[dict], classes: tuple[str, ...], label_set: str) -> None:
    lists = root / "ucfTrainTestlist"
    lists.mkdir(exist_ok=True)
    names = [layout_class_name(c, "ucf101") for c in classes]
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    for fold in range(1, NUM_FOLDS + 1):
        train = [v for v in videos if v["splits"][str(fold)] == "train"]
        test = [v for v in videos if v["splits"][str(fold)] == "test"]
        # "Class/v_..avi <1-based index>" and path-only test lines, with the official CRLF endings.
        (lists / f"trainlist0{fold}.txt").write_bytes("".join(
            f"{_strip_top(v['path'])} {names.index(v['layout_label']) + 1}\r\n" for v in train).encode())
        (lists / f"testlist0{fold}.txt").write_bytes("".join(f"{_strip_top(v['path'])}\r\n" for v in test).encode())


def _strip_top(path: str) -> str:
    return path.split("/", 1)[1]


def _write_hmdb51(root: Path, videos: list[dict], classes: tuple[str, ...], label_set: str) -> None:
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(exist_ok=True)
    code = {"train": 1, "test": 2}
    for cls in classes:
        mine = [v for v in videos if v["layout_label"] == layout_class_name(cls, "hmdb51")]
        for fold in range(1, NUM_FOLDS + 1):
            lines = "".join(f"{Path(v['path']).name} {code[v['splits'][str(fold)]]} \n" for v in mine)
            (splits / f"{layout_class_name(cls, 'hmdb51')}_test_split{fold}.txt").write_text(lines)


def _write_kinetics400(root: Path, videos: list[dict], classes: tuple[str, ...], label_set: str) -> None:
    def rows(split: str) -> list[list[str]]:
        out = []
        for v in videos:
            if v["splits"]["1"] == ("train" if split == "train" else "test"):
                youtube_id, start, end = v["video_id"].rsplit("_", 2)
                out.append([v["layout_label"], youtube_id, str(int(start)), str(int(end)), split])
        return out

    header = ["label", "youtube_id", "time_start", "time_end", "split"]
    for name, split in (("train.csv", "train"), ("validate.csv", "val")):
        with open(root / name, "w", newline="") as handle:
            csv.writer(handle).writerows([header, *rows(split)])
    # Like the original release, the test CSV carries no labels (its videos are the held-out ones).
    with open(root / "test.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([header[1:], *[r[1:4] + ["test"] for r in rows("val")]])


def _write_ssv2(root: Path, videos: list[dict], classes: tuple[str, ...], label_set: str) -> None:
    labels_dir = root / "labels"
    labels_dir.mkdir(exist_ok=True)
    templates = [_SSV2_TEMPLATES.get(c, "Showing [something] that is a " + " ".join(c.split("_"))) for c in classes]
    (labels_dir / "labels.json").write_text(json.dumps(
        {t.replace("[something]", "something"): str(i) for i, t in enumerate(templates)}, indent=1))
    by_class = dict(zip(classes, templates))
    train, val, test = [], [], []
    for v in videos:
        template = by_class[v[label_set]]
        things = [_describe(v["spec"]["primary"]), _describe(v["spec"]["secondary"])][: template.count("[something]")]
        filled = template
        for thing in things:
            filled = filled.replace("[something]", thing, 1)
        entry = {"id": v["video_id"], "label": filled, "template": template, "placeholders": things}
        (train if v["splits"]["1"] == "train" else val).append(entry)
        if v["splits"]["1"] == "test":
            test.append({"id": v["video_id"]})  # the official test list carries ids only
    for name, entries in (("train.json", train), ("validation.json", val), ("test.json", test)):
        (labels_dir / name).write_text(json.dumps(entries, indent=1))


def _describe(obj: dict[str, Any]) -> str:
    return f"{obj['texture']} {obj['shape']}"


def _write_diving48(root: Path, videos: list[dict], classes: tuple[str, ...], label_set: str) -> None:
    # The vocabulary lists each class as its parts (the official one: take-off, somersaults, ...).
    (root / "Diving48_vocab.json").write_text(json.dumps([c.split("_") for c in classes]))
    for name, split in (("Diving48_V2_train.json", "train"), ("Diving48_V2_test.json", "test")):
        entries = [{"vid_name": v["video_id"], "label": classes.index(v[label_set]),
                    "start_frame": 0, "end_frame": v["num_frames"] - 1}
                   for v in videos if v["splits"]["1"] == split]
        (root / name).write_text(json.dumps(entries, indent=1))


def _write_videofolder(root: Path, videos: list[dict], classes: tuple[str, ...], label_set: str) -> None:
    """The folders are the annotation: nothing else to write."""


_WRITERS = {"ucf101": _write_ucf101, "hmdb51": _write_hmdb51, "kinetics400": _write_kinetics400,
            "ssv2": _write_ssv2, "diving48": _write_diving48, "videofolder": _write_videofolder}


# --------------------------------------------------------------------------------------------
# The default corpus, generated once per cache.
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$HF_VSSL_CACHE/synthetic`` or ``~/.cache/hf_vssl/synthetic``."""
    base = os.environ.get("HF_VSSL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hf_vssl")
    return Path(base) / "synthetic"


def is_complete(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds a corpus whose generation finished (its marker is written last)."""
    return (Path(root) / COMPLETE_MARKER).is_file()


def get_default_corpus(layout: str = "ucf101", cache_dir: str | os.PathLike | None = None, seed: int = 0,
                       **kwargs: Any) -> Path:
    """Path of a synthetic corpus in the cache, generated on first use and reused afterwards.

    The folder name carries the layout, seed, :data:`CORPUS_VERSION` and a hash of ``kwargs``
    (any :func:`make_synthetic_dataset` argument), so a different configuration or a newer
    renderer gets its own folder. Generation goes to a temporary sibling folder that is renamed
    into place once complete, so an interrupted run is redone and concurrent processes never
    see a half-written corpus.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha256(json.dumps(kwargs, sort_keys=True, default=str).encode()).hexdigest()[:8]
    target = cache / f"{layout}-seed{seed}-v{CORPUS_VERSION}-{key}"
    if is_complete(target):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    if target.exists():  # left over by an interrupted run that was not ours to rename
        shutil.rmtree(target, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=cache))
    try:
        make_synthetic_dataset(scratch, layout, seed, **kwargs)
        try:
            os.rename(scratch, target)
        except OSError:  # another process finished first: keep its copy
            if not is_complete(target):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
