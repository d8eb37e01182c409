"""Run a study: a grid of recipe runs from a YAML spec, on this machine or a Slurm cluster.

    python recipes/study.py --spec smoke                                   # minutes on a laptop CPU
    python recipes/study.py --spec paper --dry_run                         # the study's grid and its GPU-hours
    python recipes/study.py --spec paper --executor slurm --jobs 64 --study_dir /shared/study \
        --only task=rspnet,vcop --exclude backbone=swin-t
    python recipes/study.py --spec my_study.yaml --push_to_hub --hub_dataset_id org/my-study-results
    python recipes/study.py --spec miniature --jobs 2 --report_dir docs/miniature_study  # the docs' study

Rerunning the same command skips the finished cells, retries the failed ones and resumes an
interrupted one. Results: ``<study_dir>/results/*.parquet`` (``hf_vssl.study.load_results``);
tables and figures from ``hf_vssl.study.report.render_report`` into ``<study_dir>/report``, or into
``--report_dir`` with the results as one ``results.parquet`` beside them. Guide: ``docs/study.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hf_vssl.study import format_plan, load_spec, parse_filters, push_results, run_study, select
from hf_vssl.study.executors import RunOptions
from hf_vssl.study.report import render_report
from hf_vssl.study.results import export_results, refresh_results
from hf_vssl.study.runner import make_executor, write_plan
from hf_vssl.study.spec import PRESETS, StudySpecError, expand


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help=f"a preset ({', '.join(PRESETS)}) or a YAML file")
    parser.add_argument("--executor", choices=("local", "slurm"), default="local")
    parser.add_argument(
        "--jobs", type=int, default=1, help="cells at once (local) or array tasks at once (slurm)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="local: CPU threads per cell (default: cores / jobs)"
    )
    parser.add_argument("--study_dir", type=Path, default=None, help="default: outputs/study-<spec name>")
    parser.add_argument(
        "--only", nargs="*", default=[], metavar="AXIS=V1,V2", help="keep these cells (and what they need)"
    )
    parser.add_argument(
        "--exclude",
        nargs="*",
        default=[],
        metavar="AXIS=V1,V2",
        help="drop these cells (and what needs them)",
    )
    parser.add_argument(
        "--dry_run", action="store_true", help="print the plan and its estimated cost; run nothing"
    )
    parser.add_argument(
        "--report_to",
        default="none",
        help="Accelerate tracker of every training cell (e.g. tensorboard, trackio)",
    )
    parser.add_argument("--no_report", action="store_true", help="do not render the tables and figures")
    parser.add_argument(
        "--report_dir",
        type=Path,
        default=None,
        help="render the report here, beside the results as one results.parquet (default: <study_dir>/report)",
    )
    parser.add_argument(
        "--refresh_results",
        action="store_true",
        help="run nothing: rebuild the finished cells' results rows from their outputs (after an upgrade)",
    )
    parser.add_argument("--push_to_hub", action="store_true", help="upload the results dataset when done")
    parser.add_argument("--hub_dataset_id", default=None, help="dataset repo of --push_to_hub")
    parser.add_argument("--hub_token", default=None, help="default: the saved login or HF_TOKEN")
    parser.add_argument(
        "--slurm_cluster", choices=("slurm", "local"), default="slurm", help=argparse.SUPPRESS
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = load_spec(args.spec)
        cells = select(
            expand(spec), parse_filters(args.only, "--only"), parse_filters(args.exclude, "--exclude")
        )
        if args.push_to_hub and not args.hub_dataset_id:
            raise ValueError("--push_to_hub needs --hub_dataset_id (the dataset repo to create or update)")
        if args.dry_run:
            print(f"study {spec.name} ({spec.source})")
            print(format_plan(cells))
            return 0
        study_dir = args.study_dir or Path("outputs") / f"study-{spec.name}"
        executor = make_executor(args.executor, args.jobs, threads=args.threads, cluster=args.slurm_cluster)
    except (StudySpecError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.refresh_results:
        write_plan(cells, study_dir)
        refreshed = refresh_results(cells, study_dir)
        print(f"study: rebuilt the results rows of {len(refreshed)} finished cells; ran nothing")
        ok = True
    else:
        options = RunOptions(recipes_dir=spec.recipes_dir, report_to=args.report_to)
        outcome = run_study(cells, study_dir, executor, options)
        print(outcome.summary())
        ok = outcome.ok
    if not args.no_report and (study_dir / "results").is_dir():
        source, out = study_dir, None
        if args.report_dir:
            out = args.report_dir
            source = export_results(study_dir, args.report_dir / "results.parquet")
            print(f"wrote {source}")
        for path in render_report(source, out, title=f"Study report: {spec.name}", notes=spec.notes):
            print(f"wrote {path}")
    if args.push_to_hub:
        print(f"results pushed to {push_results(study_dir, args.hub_dataset_id, token=args.hub_token)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
