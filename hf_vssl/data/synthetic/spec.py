"""Sampling: every continuous parameter of a video, as a JSON-serialisable dict."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .classes import MOTION_CLASSES, SHAPES, TEXTURES

#: Speed ranges, in pixels per frame at 64x64 (the default 56-pixel crop is taken from frames
#: resized to 64, so these are also the speeds the model sees). Each range spans less than a
#: factor of 2 (corpus v3): a clip read at twice the frame rate is faster than any clip of its
#: class at the normal rate, so playback speed can be told from the clip (v2's ranges spanned
#: factors of 1.7-3 and a supervised 1x-vs-2x probe stayed at chance). ``docs/miniature_study/cue_probe.md``
#: has the measurements.
SPEED_RANGES: dict[str, tuple[float, float]] = {
    "wrap": (1.2, 1.6),  # move_left/right/up/down
    "bounce": (3.4, 4.4),  # move_fast
    "pan": (0.5, 0.65),  # the background's slide, every video: a class-free speed cue
}
#: orbit angular speed (radians per frame) and swing period (frames): factors of 1.3.
ORBIT_ANGULAR_SPEED: tuple[float, float] = (0.13, 0.17)
SWING_PERIOD: tuple[float, float] = (18.0, 24.0)
#: camera-shake frequencies (cycles per frame): a factor of 1.3.
SHAKE_FREQUENCY: tuple[float, float] = (0.05, 0.065)


def _random_colour(rng: np.random.Generator) -> list[float]:
    """A saturated, bright RGB colour (HSV sampled), so objects stand out from the muted scene."""
    hue, sat, val = rng.random(), rng.uniform(0.65, 1.0), rng.uniform(0.8, 1.0)
    # HSV -> RGB in closed form: channel = v * (1 - s * clip(min(k, 4 - k), 0, 1)), k = (n + 6h) mod 6.
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
    rgb = val * (1 - sat * np.clip(np.minimum(k, 4 - k), 0, 1))
    return [round(float(c), 4) for c in rgb]


def sample_scene(rng: np.random.Generator) -> dict[str, Any]:
    """Background parameters shared by one group's clips: palette, texture waves, horizon."""
    base = rng.uniform(0.35, 0.6) + rng.normal(0, 0.05, 3)
    return {
        "base": [round(float(c), 4) for c in base],
        "tints": rng.normal(0, 0.12, (2, 3)).round(4).tolist(),  # colour of each texture field
        "ground": rng.normal(0, 0.08, 3).round(4).tolist(),  # colour shift below the horizon
        "horizon": round(float(rng.uniform(0.55, 0.72)), 4),  # fraction of the height
        # two texture fields, each a sum of 5 plane waves (wavelengths 8..32 px at 64 px: fine
        # enough that the pan is visible everywhere in the frame)
        "waves": [
            [
                [
                    round(float(rng.uniform(2 * math.pi / 32, 2 * math.pi / 8)), 4),
                    round(float(rng.uniform(0, 2 * math.pi)), 4),
                    round(float(rng.uniform(0, 2 * math.pi)), 4),
                ]
                for _ in range(5)
            ]
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
        # a faint fine shading that moves with the object (both textures), so motion shows inside
        # the object and not only at its edges: [wavelength px, angle, phase] of 3 plane waves
        "speckle": [
            [
                round(float(rng.uniform(3.0, 5.0)), 3),
                round(float(rng.uniform(0, math.pi)), 4),
                round(float(rng.uniform(0, 2 * math.pi)), 4),
            ]
            for _ in range(3)
        ],
    }


def _trajectory(rng: np.random.Generator, motion: str, scale: float) -> dict[str, Any]:
    """The primary object's motion: a kind plus its parameters (pixels at 64x64, scaled)."""
    if motion in ("move_left", "move_right", "move_up", "move_down"):
        direction = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}[
            motion
        ]
        speed = rng.uniform(*SPEED_RANGES["wrap"]) * scale
        return {"kind": "wrap", "velocity": [direction[0] * speed, direction[1] * speed]}
    if motion == "move_fast":
        theta = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(*SPEED_RANGES["bounce"]) * scale
        return {"kind": "bounce", "velocity": [speed * math.cos(theta), speed * math.sin(theta)]}
    if motion in ("orbit_cw", "orbit_ccw"):
        # y points down on screen, so an increasing angle turns clockwise.
        sense = 1.0 if motion == "orbit_cw" else -1.0
        return {
            "kind": "orbit",
            "orbit_radius": rng.uniform(9, 11) * scale,  # speed 1.2-1.9 px/frame
            "angular_speed": sense * rng.uniform(*ORBIT_ANGULAR_SPEED),
            "phase": rng.uniform(0, 2 * math.pi),
        }
    if motion == "swing":
        return {
            "kind": "swing",
            "amplitude": rng.uniform(10, 12) * scale,  # peak speed 2.6-4.2 px/frame
            "axis": rng.uniform(0, math.pi),
            "period": rng.uniform(*SWING_PERIOD),
            "phase": rng.uniform(0, 2 * math.pi),
        }
    if motion in ("flash_left_first", "flash_right_first"):
        # A repeating pair of 2-frame flashes, the second 3 frames after the first, then a longer
        # pause (period 8-9): every 8-frame window shows both objects flash, 3 frames apart in
        # the class's order, so short clips can tell the order (a symmetric alternation could
        # not: L-R-L-R is R-L-R-L shifted).
        return {
            "kind": "still",
            "flash_first": "left" if motion == "flash_left_first" else "right",
            "flash_period": int(rng.integers(8, 10)),
            "flash_gap": 3,
            "flash_duration": 2,
            "flash_phase": int(rng.integers(0, 9)),
            "drift": rng.uniform(-0.06, 0.06, 2).round(4).tolist(),
        }
    raise ValueError(f"unknown motion class {motion!r}; expected one of {MOTION_CLASSES}")


def sample_video_spec(
    seed: int, index: int, motion: str, appearance: str, scene: dict[str, Any], size: tuple[int, int]
) -> dict[str, Any]:
    """All parameters of one video, drawn from ``(seed, index)`` only (so any video can be redrawn)."""
    rng = np.random.default_rng([seed, index, 7])
    height, width = size
    scale = min(height, width) / 64
    texture, shape = appearance.split("_", 1)
    primary = _object(rng, shape, texture, rng.uniform(11.0, 13.0) * scale)
    secondary = _object(
        rng, str(rng.choice(SHAPES)), str(rng.choice(TEXTURES)), rng.uniform(4.5, 5.5) * scale
    )
    trajectory = _trajectory(rng, motion, scale)
    # Start positions are drawn the same way for every class (no first-frame shortcut); the two
    # objects keep a horizontal gap so "left" and "right" are well defined for the flash classes.
    while True:
        p0 = rng.uniform([16 * scale, 16 * scale], [width - 16 * scale, height - 16 * scale])
        s0 = rng.uniform([8 * scale, 8 * scale], [width - 8 * scale, height - 8 * scale])
        if abs(p0[0] - s0[0]) > 20 * scale:
            break
    pan_theta = rng.uniform(0, 2 * math.pi)
    pan_speed = rng.uniform(*SPEED_RANGES["pan"]) * scale
    spec = {
        "motion": motion,
        "appearance": appearance,
        "primary": primary | {"start": p0.round(3).tolist()},
        "secondary": secondary
        | {"start": s0.round(3).tolist(), "drift": rng.uniform(-0.06, 0.06, 2).round(4).tolist()},
        "trajectory": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in trajectory.items()},
        "scene": scene,
        "pan": {
            "offset": rng.uniform(0, 500, 2).round(3).tolist(),
            "velocity": [
                round(pan_speed * math.cos(pan_theta), 4),
                round(pan_speed * math.sin(pan_theta), 4),
            ],
        },
        "jitter": {
            "amplitude": round(float(rng.uniform(0.3, 0.8) * scale), 4),
            "frequencies": rng.uniform(*SHAKE_FREQUENCY, 4).round(4).tolist(),
            "phases": rng.uniform(0, 2 * math.pi, 4).round(4).tolist(),
        },
    }
    return spec
