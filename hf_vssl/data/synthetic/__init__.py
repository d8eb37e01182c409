"""The built-in synthetic corpus: real encoded videos in the official layout of any source.

Every video shows a textured background panned in a random direction, lit from above
(brighter sky, darker ground below a soft horizon, so the frame has a consistent "up"), shaken
by a small smooth camera jitter, and two foreground objects: a large *primary* object and a
small *secondary* one, both with a faint shading fixed to them (so motion shows inside them).

Corpus v3 (:data:`CORPUS_VERSION`) makes motion resolvable in the default 8x56x56 clip: the
primary object moves 1.2-4.4 pixels per frame and the background slides 0.5-0.65, and every
speed range (:data:`SPEED_RANGES`, orbit and swing tempos, the shake's frequencies) spans less
than a factor of 2, so a clip read at twice the frame rate is faster than any clip of its class
at the normal rate; ``docs/miniature_study/cue_probe.md`` measures what a supervised probe of
each pretext task's cue learns on v2 and on v3.

Each video carries two independent labels, drawn so that each is balanced and carries no
information about the other:

* ``motion`` (:data:`MOTION_CLASSES`): what the objects *do* -- the direction of a linear
  motion, fast bouncing vs slower linear motion, clockwise vs counter-clockwise orbit, periodic
  swing vs linear motion, and the order of two events (a repeating pair of flashes: the left object
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

One job per module: :mod:`.classes` (label sets, class spellings), :mod:`.spec` (a video's
random parameters), :mod:`.render` (frames from parameters), :mod:`.corpus` (classes, groups,
splits, files), :mod:`.cache` (the default corpus).
"""

from hf_vssl.data.sources.synthetic import METADATA_FILE, read_metadata

from .cache import default_cache_dir, get_default_corpus, is_complete
from .classes import APPEARANCE_CLASSES, LABEL_SETS, MOTION_CLASSES, SHAPES, TEXTURES, class_names
from .corpus import COMPLETE_MARKER, CORPUS_VERSION, LAYOUT_EXTENSIONS, LAYOUTS, make_synthetic_dataset
from .render import object_track, render_video
from .spec import SPEED_RANGES, sample_scene, sample_video_spec

__all__ = [
    "APPEARANCE_CLASSES",
    "COMPLETE_MARKER",
    "CORPUS_VERSION",
    "LABEL_SETS",
    "LAYOUTS",
    "LAYOUT_EXTENSIONS",
    "METADATA_FILE",
    "MOTION_CLASSES",
    "SHAPES",
    "SPEED_RANGES",
    "TEXTURES",
    "class_names",
    "default_cache_dir",
    "get_default_corpus",
    "is_complete",
    "make_synthetic_dataset",
    "object_track",
    "read_metadata",
    "render_video",
    "sample_scene",
    "sample_video_spec",
]
