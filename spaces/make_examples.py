"""Write the Space's examples: videos from the built-in synthetic corpus and a study's results.

Run once from the repository root; the files are committed, so the Space needs no generation
step at start-up:

    .venv/bin/python spaces/make_examples.py

The Study tab's default results dataset (``examples/study/results/miniature.parquet``) holds the
measured numbers of the miniature study (``docs/miniature_study/study.json``) as results rows:
finetune top-1 per task, label set and seed, pretraining loss and steps, clean top-1 and relative
robustness per noise.

Each example is one video of a motion class (the label set the default synthetic runs train
on), 64 frames at 112x112 and 25 fps, encoded as H.264 (a few tens of KB each). The output is
deterministic: the same seed gives the same frames.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

SPACE_DIR = Path(__file__).resolve().parent
if importlib.util.find_spec("hf_vssl") is None:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(SPACE_DIR.parent))

import datasets

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


MINIATURE_STUDY = SPACE_DIR.parent / "docs" / "miniature_study" / "study.json"
#: The miniature study's fixed settings (its README: r21d at 1/4 width, 8x56x56 clips, synthetic corpus).
MINIATURE_SETTINGS = {
    "backbone": "r21d",
    "width": 0.25,
    "num_frames": 8,
    "image_size": 56,
    "pretrain_dataset": "synthetic",
}
RESULT_AXES = (
    "task",
    "backbone",
    "width",
    "num_frames",
    "image_size",
    "pretrain_dataset",
    "subset_size",
    "epochs",
)


def _result_row(cell_id: str, kind: str, metric: str, value: float, **settings) -> dict:
    """One results row (the study's long format) with the miniature study's fixed settings."""
    resolved = {**MINIATURE_SETTINGS, **settings}
    row = {axis: resolved.get(axis) for axis in RESULT_AXES}
    row.update(
        cell_id=cell_id,
        kind=kind,
        parent_ids=resolved.get("parent_ids", ""),
        downstream=resolved.get("downstream"),
        mode=resolved.get("mode"),
        noise=resolved.get("noise"),
        severity=resolved.get("severity"),
        seed=resolved.get("seed"),
        teachers=resolved.get("teachers"),
        metric=metric,
        value=float(value),
        settings_json=json.dumps(resolved, sort_keys=True),
        output_dir=f"docs/miniature_study/{cell_id}",
        hub_repo_id=None,
        finished_at="",
    )
    return row


def miniature_results_rows(study: dict) -> list[dict]:
    """The miniature study's ``study.json`` as results rows (accuracies as fractions)."""
    rows, seeds = [], study["settings"]["seeds"]
    teachers = ",".join(study["settings"].get("distill") or [])
    for init, summary in study["pretext"].items():
        cell = f"pretrain/{init}"
        rows.append(_result_row(cell, "pretrain", "final_loss", summary["loss"]["last"], task=init))
        rows.append(_result_row(cell, "pretrain", "steps", summary["steps"], task=init))
    for init, label_sets in study["finetune"].items():
        kind = "distill" if init == "distilled" else "finetune"
        task = None if kind == "distill" else init
        for label_set, numbers in label_sets.items():
            for seed, value in zip(seeds, numbers["values"]):
                cell = f"finetune/{init}-{label_set}-seed{seed}"
                extra = {"teachers": teachers} if kind == "distill" else {}
                for_cell = {"downstream": f"synthetic-{label_set}", "mode": "finetune", "seed": seed, **extra}
                rows.append(_result_row(cell, kind, "top1", value / 100, task=task, **for_cell))
    for init, robust in study["robustness"].items():
        for noise, relative in robust.items():
            if noise == "clean_top1":
                continue
            cell = f"robustness/{init}-{noise}"
            common = {
                "task": init,
                "downstream": "synthetic-motion",
                "mode": "finetune",
                "seed": 0,
                "noise": noise,
            }
            rows.append(_result_row(cell, "robustness", "top1", robust["clean_top1"], severity=0, **common))
            rows.append(_result_row(cell, "robustness", "relative_robustness", relative, **common))
    return rows


def make_study_example(
    out_dir: Path = SPACE_DIR / "examples" / "study", study_json: Path = MINIATURE_STUDY
) -> Path:
    """Write the miniature study's results rows as ``<out_dir>/results/miniature.parquet``."""
    rows = miniature_results_rows(json.loads(Path(study_json).read_text()))
    target = Path(out_dir) / "results" / "miniature.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(target))
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
