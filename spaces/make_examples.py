"""Write the Space's examples: videos from the built-in synthetic corpus and a study's results.

Run once from the repository root; the files are committed, so the Space needs no generation
step at start-up:

    .venv/bin/python spaces/make_examples.py

The Study tab's default results dataset (``examples/study/results/miniature.parquet``) is the
miniature study's results rows (``docs/miniature_study/results.parquet``, written by
``recipes/study.py --spec miniature --report_dir docs/miniature_study``): every cell's metrics
with its settings, CKA maps included.

Each example is one video of a motion class (the label set the default synthetic runs train
on), 64 frames at 112x112 and 25 fps, encoded as H.264 (a few tens of KB each). The output is
deterministic: the same seed gives the same frames.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

SPACE_DIR = Path(__file__).resolve().parent
if importlib.util.find_spec("hf_vssl") is None:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(SPACE_DIR.parent))


from hf_vssl.data.synthetic import make_synthetic_dataset, read_metadata

#: Motion classes shown as examples: one linear, one circular, one event-order class.
EXAMPLE_CLASSES = ("move_left", "orbit_cw", "flash_right_first")
NUM_FRAMES = 64
SIZE = (112, 112)
#: Examples are committed to the Space repo: keep each one small.
MAX_EXAMPLE_BYTES = 300 * 1024


def make_examples(out_dir: Path = SPACE_DIR / "examples", seed: int = 0) -> list[Path]:
    """Render one synthetic video per class of :data:`EXAMPLE_CLASSES` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        # Two videos per class is the smallest corpus the generator accepts (two scene groups).
        root = make_synthetic_dataset(
            Path(tmp) / "corpus",
            layout="videofolder",
            seed=seed,
            label_set="motion",
            videos_per_class=2,
            clips_per_group=1,
            num_frames=NUM_FRAMES,
            size=SIZE,
        )
        videos = read_metadata(root)["videos"]
        for name in EXAMPLE_CLASSES:
            video = next(v for v in videos if v["motion"] == name)
            target = out_dir / f"{name}.mp4"
            shutil.copyfile(root / video["path"], target)
            size = target.stat().st_size
            if size > MAX_EXAMPLE_BYTES:
                raise RuntimeError(f"{target} is {size} bytes, over the {MAX_EXAMPLE_BYTES}-byte budget")
            written.append(target)
    return written


#: The miniature study's results rows, as the `miniature` preset's report ships them.
MINIATURE_RESULTS = SPACE_DIR.parent / "docs" / "miniature_study" / "results.parquet"


def make_study_example(
    out_dir: Path = SPACE_DIR / "examples" / "study", results: Path = MINIATURE_RESULTS
) -> Path:
    """Copy the miniature study's results rows to ``<out_dir>/results/miniature.parquet``."""
    target = Path(out_dir) / "results" / "miniature.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(results, target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out_dir", type=Path, default=SPACE_DIR / "examples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in [*make_examples(args.out_dir, args.seed), make_study_example(args.out_dir / "study")]:
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
