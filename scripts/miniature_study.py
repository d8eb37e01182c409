"""The study in miniature on the built-in synthetic corpus.

1. Pretrain every pretext task once (same backbone, data, clip shape and step budget).
2. Finetune each pretrained backbone, and a randomly initialised one, on the motion (temporal)
   and the appearance label sets, with several seeds, at one shared budget.
3. Evaluate the motion-label models of seed 0 under the four pixel noises (robustness).
4. Write ``<out>/study.json`` and a Markdown report ``<out>/README.md`` (mean +- std over seeds).

Every step is an ordinary recipe run (``recipes/pretrain.py``, ``recipes/finetune.py``,
``recipes/robustness.py``) in a subprocess, ``--jobs`` at a time with one thread each; a run
whose ``metrics.json`` already exists is reused, so an interrupted study resumes.

    python scripts/miniature_study.py --out docs/miniature_study --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASKS = ("rotnet", "cvrl", "vcop", "tdl", "prp", "rspnet")
LABEL_SETS = ("motion", "appearance")


def run(cmd: list[str], log: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        result = subprocess.run(
            [sys.executable, *cmd], cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed (exit {result.returncode}); see {log}")


def parallel(jobs: int, calls: list) -> None:
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(fn, *args) for fn, *args in calls]:
            future.result()


def pretrain(out: Path, name: str, args) -> None:
    """Pretrain ``name``: a task of TASKS, or a variant from ``--variant`` (a task with settings changed)."""
    target = out / "pretrain" / name
    if (target / "model.safetensors").exists():
        return
    task, steps, overrides = args.variant.get(name, (name, None, {}))
    steps = steps or args.pretrain_steps
    flags = [
        "--pretext_task",
        task,
        "--output_dir",
        str(target),
        "--max_steps",
        str(steps),
        "--report_to",
        "none",
        "--dataloader_num_workers",
        "1",
        "--logging_steps",
        "20",
        "--save_steps",
        str(steps),
    ]
    settings = dict(overrides)
    if task in ("rspnet", "tdl"):  # a queue larger than the corpus would hold copies of the positives
        settings.setdefault("queue_size", args.queue_size)
    if settings:
        flags += ["--pretext_config", json.dumps(settings)]
    learning_rate = args.pretrain_lr.get(task) if args.pretrain_lr else None
    if learning_rate:
        flags += ["--learning_rate", str(learning_rate)]
    if args.pretrain_optimizer:
        flags += ["--optimizer", args.pretrain_optimizer]
    run(["recipes/pretrain.py", *flags], out / "logs" / f"pretrain-{name}.log")


def parse_variant(text: str) -> tuple[str, tuple[str, int | None, dict]]:
    """``NAME=TASK[@STEPS]:JSON`` -> ``(NAME, (TASK, STEPS or None, settings))``.

    E.g. ``prp-1-8=prp:{"rates": [1, 8]}`` (other settings) or ``prp-3000=prp@3000:{}`` (a longer run).
    """
    name, sep, rest = text.partition("=")
    spec, sep2, settings = rest.partition(":")
    task, _, steps = spec.partition("@")
    if not (sep and sep2 and name and task in TASKS and (not steps or steps.isdigit())):
        raise argparse.ArgumentTypeError(
            f"--variant {text!r}: expected NAME=TASK[@STEPS]:JSON with TASK one of {TASKS}"
        )
    return name, (task, int(steps) if steps else None, json.loads(settings))


def finetune(out: Path, init: str, label_set: str, seed: int, args) -> None:
    target = out / "finetune" / f"{init}-{label_set}-seed{seed}"
    if (target / "metrics.json").exists():
        return
    source = (
        [
            "--init",
            "random",
            "--backbone",
            "r21d",
            "--width_multiplier",
            "0.25",
            "--num_frames",
            "8",
            "--image_size",
            "56",
        ]
        if init == "random"
        else ["--model_name_or_path", str(out / "pretrain" / init)]
    )
    flags = [
        *source,
        "--dataset",
        "synthetic",
        "--label_set",
        label_set,
        "--seed",
        str(seed),
        "--output_dir",
        str(target),
        "--max_steps",
        str(args.finetune_steps),
        "--report_to",
        "none",
        "--dataloader_num_workers",
        "1",
        "--eval_clips",
        str(args.eval_clips),
        "--logging_steps",
        "20",
        "--save_steps",
        str(args.finetune_steps),
    ]
    if args.finetune_lr:
        flags += ["--learning_rate", str(args.finetune_lr)]
    run(["recipes/finetune.py", *flags], out / "logs" / f"finetune-{init}-{label_set}-seed{seed}.log")


def distill(out: Path, args) -> None:
    """The study's distillation set-up in miniature: two pretrained teachers -> one student."""
    target = out / "pretrain" / "distilled"
    if (target / "model.safetensors").exists():
        return
    teachers = [str(out / "pretrain" / t) for t in args.distill]
    flags = [
        "--teachers",
        *teachers,
        "--output_dir",
        str(target),
        "--max_steps",
        str(args.pretrain_steps),
        "--report_to",
        "none",
        "--dataloader_num_workers",
        "1",
        "--logging_steps",
        "20",
        "--save_steps",
        str(args.pretrain_steps),
        "--learning_rate",
        "0.05",
    ]
    run(["recipes/distill.py", *flags], out / "logs" / "distill.log")


def cka_maps(out: Path, args) -> None:
    """Layer maps: within RSPNet's backbone, and RSPNet against RotNet (written into docs)."""
    rspnet, rotnet = out / "pretrain" / "rspnet", out / "pretrain" / "rotnet"
    if not (out / "cka" / "rspnet" / "cka.json").exists() and rspnet.exists():
        run(
            [
                "recipes/cka.py",
                "--model_name_or_path",
                str(rspnet),
                "--output_dir",
                str(out / "cka" / "rspnet"),
                "--num_videos",
                "64",
            ],
            out / "logs" / "cka-rspnet.log",
        )
    if not (out / "cka" / "rspnet-vs-rotnet" / "cka.json").exists() and rotnet.exists():
        run(
            [
                "recipes/cka.py",
                "--model_name_or_path",
                str(rspnet),
                "--compare_to",
                str(rotnet),
                "--output_dir",
                str(out / "cka" / "rspnet-vs-rotnet"),
                "--num_videos",
                "64",
            ],
            out / "logs" / "cka-rspnet-rotnet.log",
        )


def robustness(out: Path, init: str, args) -> None:
    target = out / "finetune" / f"{init}-motion-seed0"
    if (target / "robustness.json").exists():
        return
    run(
        [
            "recipes/robustness.py",
            "--model_name_or_path",
            str(target),
            "--severities",
            *map(str, args.severities),
            "--eval_clips",
            str(args.eval_clips),
        ],
        out / "logs" / f"robustness-{init}.log",
    )


#: the metrics that show a pretext objective learning (the MoCo tasks' queue accuracy falls while
#: the queue fills, so their batch accuracy is the one to read; RSPNet's speed head is its own target).
PRETEXT_METRICS = ("accuracy", "batch_accuracy", "speed_accuracy")


def pretext_summary(rows: list[dict], last: int = 5) -> dict:
    """First logged value and mean of the ``last`` logs of each learning metric, and the step count."""
    summary: dict = {"steps": rows[-1]["step"]}
    for metric in ("loss", *PRETEXT_METRICS):
        if metric in rows[0]:
            summary[metric] = {
                "first": rows[0][metric],
                "last": statistics.mean(row[metric] for row in rows[-last:]),
            }
    return summary


def summarise(out: Path, inits: list[str], args) -> dict:
    table: dict = {}
    for init in inits:
        for label_set in LABEL_SETS:
            values = []
            for seed in args.seeds:
                metrics = json.loads(
                    (out / "finetune" / f"{init}-{label_set}-seed{seed}" / "metrics.json").read_text()
                )
                values.append(100 * metrics["results"]["video_top1"])
            table.setdefault(init, {})[label_set] = {
                "values": values,
                "mean": statistics.mean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
    pretext = {}
    for name in [init for init in inits if init not in ("random", "distilled")]:
        log = out / "pretrain" / name / "log_history.jsonl"
        if log.exists():
            pretext[name] = pretext_summary([json.loads(line) for line in log.read_text().splitlines()])
    robust = {}
    for init in inits:
        path = out / "finetune" / f"{init}-motion-seed0" / "robustness.json"
        if path.exists() and init != "distilled":
            report = json.loads(path.read_text())
            robust[init] = {
                "clean_top1": report["clean_top1"],
                **{k: v["relative_robustness"] for k, v in report["average"].items()},
            }
    return {
        "settings": vars(args) | {"out": str(args.out), "argv": sys.argv[1:]},
        "finetune": table,
        "pretext": pretext,
        "robustness": robust,
    }


def _optimiser_text(settings: dict) -> str:
    optimiser = settings.get("pretrain_optimizer") or "each task's own optimiser"
    rates = settings.get("pretrain_lr")
    return f"{optimiser}" + (f", learning rates {rates}" if rates else "")


def _gain(cell: dict, baseline: dict | None, init: str) -> str:
    """Mean gain over random init, and whether it exceeds the seed spread (the larger std)."""
    if baseline is None or init == "random":
        return "-"
    gain = cell["mean"] - baseline["mean"]
    spread = max(cell["std"], baseline["std"])
    verdict = "beyond seed spread" if gain > spread else ("within seed spread" if gain > -spread else "worse")
    return f"{gain:+.1f} ({verdict})"


def write_markdown(out: Path, study: dict) -> None:
    s = study["settings"]
    lines = [
        "# The study in miniature (synthetic corpus)",
        "",
        (
            f"Backbone r21d at 1/4 width, 8x56x56 clips, built-in synthetic corpus (UCF101 layout, fold 1). "
            f"Pretraining: {s['pretrain_steps']} steps per task, batch 8, {_optimiser_text(s)}, each task's own "
            f"augmentation. Finetuning (the recipe's defaults: AdamW 1e-3, resize + center crop): {s['finetune_steps']} "
            f"steps, batch 8, seeds {s['seeds']}; video-level top-1 (%) on the test split ({s['eval_clips']} clips per video), "
            "mean +- std over seeds. Raw numbers in `study.json`. Generated by:"
        ),
        "",
        "    " + " ".join(["python", "scripts/miniature_study.py", *map(shlex.quote, s["argv"])]),
        "",
        "| init | motion (temporal) labels | appearance labels | motion: gain over random init |",
        "|---|---|---|---|",
    ]
    random_motion = study["finetune"].get("random", {}).get("motion")
    for init, row in study["finetune"].items():
        cells = [f"{row[k]['mean']:.1f} +- {row[k]['std']:.1f}" for k in LABEL_SETS]
        lines.append(f"| {init} | {cells[0]} | {cells[1]} | {_gain(row['motion'], random_motion, init)} |")
    if "distilled" in study["finetune"]:
        lines += [
            "",
            (
                f"`distilled`: a student of the same architecture distilled from the {' and '.join(s['distill'])} "
                f"pretrainings ({s['pretrain_steps']} steps, learning rate 0.05, otherwise `recipes/distill.py` "
                "defaults), then finetuned like the others."
            ),
        ]
    for name, (task, steps, settings) in s.get("variant", {}).items():
        changes = ([f"{steps} steps"] if steps else []) + ([f"`{json.dumps(settings)}`"] if settings else [])
        description = " and ".join(changes) or "no change"
        lines += ["", f"`{name}`: {task} pretrained with {description}, otherwise like the {task} row."]
    if study["pretext"]:
        lines += [
            "",
            (
                "Pretext objectives during pretraining: first logged value -> mean of the last 5 logs (20 steps "
                "each). `accuracy` is the task's own target (for RSPNet and TDL against the queue), "
                "`batch_accuracy` the MoCo tasks' instance top-1 against the batch's keys (chance 1/8), "
                "`speed_accuracy` RSPNet's relative-speed ranking (chance 1/2):"
            ),
            "",
            "| task | steps | loss | " + " | ".join(PRETEXT_METRICS) + " |",
            "|---|---|---|" + "---|" * len(PRETEXT_METRICS),
        ]
        for task, row in study["pretext"].items():
            cells = [
                f"{row[m]['first']:.2f} -> {row[m]['last']:.2f}" if m in row else "-"
                for m in ("loss", *PRETEXT_METRICS)
            ]
            lines.append(f"| {task} | {row['steps']} | " + " | ".join(cells) + " |")
    if study["robustness"]:
        kinds = sorted({k for row in study["robustness"].values() for k in row if k != "clean_top1"})
        lines += [
            "",
            (
                f"Robustness of the motion-label models (seed 0), severities {s['severities']}, preset video-p: "
                "clean top-1 and relative robustness (1 - relative decrease) averaged over severities:"
            ),
            "",
            "| init | clean top-1 | " + " | ".join(kinds) + " |",
            "|---|---|" + "---|" * len(kinds),
        ]
        for init, row in study["robustness"].items():
            lines.append(
                f"| {init} | {100 * row['clean_top1']:.1f} | "
                + " | ".join(f"{row[k]:.2f}" for k in kinds)
                + " |"
            )
    for name, title in (
        ("rspnet", "CKA map within the RSPNet backbone"),
        ("rspnet-vs-rotnet", "CKA map, RSPNet (y) against RotNet (x)"),
    ):
        png = out / "cka" / name / "cka.png"
        if png.exists():
            shutil.copyfile(png, out / f"cka_{name}.png")
            lines += ["", f"{title} (64 test videos):", "", f"![{title}](cka_{name}.png)"]
    lines += [
        "",
        "## Reading the numbers",
        "",
        "Chance is 10% on both label sets (10 classes). The test split holds scenes (groups) never seen in",
        "training; group g of every class shows the same scene (corpus v2), so neither label set can be",
        "passed by remembering backgrounds. A gain counts only when it exceeds the seed spread (the larger",
        "of the two standard deviations). Relative robustness computed from accuracies near chance is noise",
        "(values above 1 included). `FINDINGS.md` discusses what these numbers show, with longer pilot runs.",
    ]
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "miniature_study")
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--pretrain_steps", type=int, default=500)
    parser.add_argument(
        "--pretrain_lr",
        type=json.loads,
        default=None,
        help="JSON {task: learning rate}; default: each task's own (docs/study_settings.md#optimisers)",
    )
    parser.add_argument(
        "--pretrain_optimizer",
        choices=("sgd", "adamw"),
        default=None,
        help="one optimiser for every task (default: each task's own)",
    )
    parser.add_argument("--queue_size", type=int, default=128)
    parser.add_argument("--finetune_steps", type=int, default=300)
    parser.add_argument("--finetune_lr", type=float, default=None)
    parser.add_argument("--eval_clips", type=int, default=3)
    parser.add_argument("--severities", nargs="*", type=int, default=[1, 3, 5])
    parser.add_argument("--no_robustness", action="store_true")
    parser.add_argument("--no_cka", action="store_true")
    parser.add_argument("--distill", nargs="*", default=[], help="teacher tasks to distill into one student")
    parser.add_argument(
        "--variant",
        nargs="*",
        type=parse_variant,
        default=[],
        metavar="NAME=TASK[@STEPS]:JSON",
        help="extra pretrainings: a task with its settings changed, reported as its own row",
    )
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    args.variant = dict(args.variant)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    pretrained = [*args.tasks, *args.variant]
    parallel(args.jobs, [(pretrain, out, name, args) for name in pretrained])
    inits = ["random", *pretrained]
    if args.distill:
        distill(out, args)
        inits.append("distilled")
    if not args.no_cka:
        cka_maps(out, args)
    parallel(
        args.jobs,
        [
            (finetune, out, init, label_set, seed, args)
            for seed in args.seeds
            for label_set in LABEL_SETS
            for init in inits
        ],
    )
    if not args.no_robustness:
        parallel(args.jobs, [(robustness, out, init, args) for init in inits if init != "distilled"])
    study = summarise(out, inits, args)
    (out / "study.json").write_text(json.dumps(study, indent=2))
    write_markdown(out, study)
    print((out / "README.md").read_text())


if __name__ == "__main__":
    main()
