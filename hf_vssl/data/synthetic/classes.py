"""The corpus's two label sets and how a class name is spelled in each dataset layout."""

from __future__ import annotations

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
            raise ValueError(
                f"num_classes for label_set {label_set!r} must be in [2, {len(names)}], got {num_classes}"
            )
        names = names[:num_classes]
    return names


def ssv2_template(name: str) -> str:
    """The Something-Something template (with ``[something]`` slots) that names class ``name``."""
    return _SSV2_TEMPLATES.get(name, "Showing [something] that is a " + " ".join(name.split("_")))


def layout_class_name(name: str, layout: str) -> str:
    """How a canonical class name is spelled in ``layout``'s annotations (UCF101 CamelCase, ...)."""
    words = name.split("_")
    if layout == "ucf101":
        return "".join(word.capitalize() for word in words)
    if layout == "kinetics400":
        return " ".join(words)
    if layout == "ssv2":
        return ssv2_template(name).replace("[something]", "something")
    return name  # hmdb51 / diving48 / videofolder keep snake_case
