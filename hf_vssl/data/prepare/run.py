"""One preparation from start (or from where an interrupted one stopped) to the dataset card."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

from hf_vssl._version import __version__
from hf_vssl.data.shards import MANIFEST_NAME, noisy
from hf_vssl.data.shards.variants import noisy_split_name, published_noisy_split
from hf_vssl.data.shards.write import default_workers, write_manifest
from hf_vssl.data.streaming import load_manifest

from .arguments import PrepareArguments, render_command, shard_settings
from .card import render_card
from .plan import make_plan
from .writing import assemble_manifest, save_json, write_shards

#: Hidden folder of a preparation's state (settings, probe results, plan, done-markers). The
#: publishing code leaves hidden files out, so it stays on the machine.
STATE_DIR = ".prepare"
MODULE_PROGRAM = "python -m hf_vssl.data.prepare"


@dataclass
class PrepareReport:
    """What :func:`prepare_corpus` did. ``shards_written`` counts this run's shards, ``shards_reused``
    those an interrupted run had finished; ``skipped`` lists ``{"path", "reason", "stage"}``."""

    output_dir: str
    manifest: str = ""
    card: str = ""
    shards_written: int = 0
    shards_reused: int = 0
    per_split: dict[str, int] = field(default_factory=dict)
    subsets: dict[str, dict[int, int]] = field(default_factory=dict)
    noisy_written: list[str] = field(default_factory=list)
    noisy_reused: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self, shown: int = 20) -> str:
        """A few lines for the console: counts, subsets, noisy variants, skipped inputs with reasons."""
        lines = [
            f"prepared {self.output_dir} in {self.seconds:.0f}s: {self.shards_written} shards written, "
            f"{self.shards_reused} reused from an interrupted run",
            "videos per split: " + ", ".join(f"{split} {count}" for split, count in self.per_split.items()),
        ]
        for split, sizes in self.subsets.items():
            lines.append(
                f"nested subsets of {split}: "
                + ", ".join(f"{size} ({n} videos)" for size, n in sizes.items())
            )
        if self.noisy_written or self.noisy_reused:
            lines.append(f"noisy splits: {', '.join(self.noisy_written + self.noisy_reused)}")
        lines.append(
            f"skipped inputs: {len(self.skipped)}" + (" (all in manifest.json):" if self.skipped else "")
        )
        lines += [f"  [{item['stage']}] {item['path']}: {item['reason']}" for item in self.skipped[:shown]]
        if len(self.skipped) > shown:
            lines.append(f"  ... {len(self.skipped) - shown} more")
        return "\n".join(lines)


def _state(out: Path, settings: dict[str, Any]) -> Path:
    """The state folder of ``out``: created for a new preparation; for an interrupted one, its
    settings must match. A folder holding anything else is refused."""
    state = out / STATE_DIR
    settings_path = state / "settings.json"
    if settings_path.is_file():
        previous = json.loads(settings_path.read_text(encoding="utf-8"))
        changed = sorted(
            key for key in set(previous) | set(settings) if previous.get(key) != settings.get(key)
        )
        if changed:
            detail = "; ".join(
                f"{key}: {previous.get(key)!r} then, {settings.get(key)!r} now" for key in changed
            )
            raise ValueError(
                f"--output_dir {out} holds a preparation with other settings ({detail}); resume it with the same "
                "flags or write to a new --output_dir"
            )
        return state
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(
            f"--output_dir {out} is not empty and holds no preparation to resume; use an empty folder"
        )
    (state / "done").mkdir(parents=True)
    save_json(settings_path, settings)
    return state


def _load_plan(args: PrepareArguments, state: Path, num_workers: int) -> dict[str, Any]:
    path = state / "plan.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    plan = make_plan(args, state, num_workers)
    save_json(path, plan)
    return plan


def _add_noisy_splits(
    out: Path, args: PrepareArguments, num_workers: int, report: PrepareReport
) -> dict[str, Any]:
    """Write each requested noisy variant of ``--noise_split`` the manifest does not publish yet."""
    manifest = load_manifest(str(out))
    for kind in args.noise:
        for severity in args.severities:
            if published_noisy_split(
                manifest, args.noisy_split, kind, severity, args.noise_preset, args.noise_seed
            ):
                report.noisy_reused.append(noisy_split_name(args.noisy_split, kind, severity))
                continue
            noisy.write_noisy_split(
                out, args.noisy_split, kind, severity, args.noise_preset, args.noise_seed, num_workers
            )
            report.noisy_written.append(noisy_split_name(args.noisy_split, kind, severity))
            manifest = load_manifest(str(out))
    return manifest


def prepare_corpus(
    args: PrepareArguments, program: str = MODULE_PROGRAM, hub_dataset_id: str | None = None
) -> PrepareReport:
    """Turn a built-in source in its official layout into a shard dataset in ``args.output_dir``.

    Checks every video, writes the shards of every split in worker processes (re-encoded for random
    clip access; the ``--subset_split`` ordered so each nested subset is a prefix of its shards),
    the manifest, the noisy variants and the dataset card (``README.md``). Run again on the same
    folder with the same flags, it resumes: finished shards are kept, the rest written. ``program``
    and ``hub_dataset_id`` only change what the card shows (the command, the id in examples).
    """
    started = time.perf_counter()
    out = Path(args.output_dir)
    num_workers = default_workers(args.num_workers)
    state = _state(out, shard_settings(args))
    plan = _load_plan(args, state, num_workers)
    markers, reused = write_shards(plan, out, state / "done", args.reencode, args.dataset_root, num_workers)

    previous = load_manifest(str(out)) if (out / MANIFEST_NAME).is_file() else None
    extra = {
        "prepare": {
            "source": args.source,
            "fold": args.fold,
            "splits": args.all_splits,
            "subset_split": args.subset_split if args.subset_sizes else None,
            "subset_seed": args.subset_seed,
            "command": render_command(program, args),
            "hf_vssl_version": __version__,
        }
    }
    manifest = assemble_manifest(plan, markers, args.reencode, args.shard_prefix, extra, previous)
    write_manifest(out, manifest)
    report = PrepareReport(output_dir=str(out), shards_written=len(markers) - reused, shards_reused=reused)
    manifest = _add_noisy_splits(out, args, num_workers, report)

    card = out / "README.md"
    partial = card.with_name(".README.md.partial")  # written whole, then renamed
    partial.write_text(
        render_card(manifest, args.source, hub_dataset_id or f"<org>/{out.name}"), encoding="utf-8"
    )
    os.replace(partial, card)

    report.manifest, report.card = str(out / MANIFEST_NAME), str(card)
    report.per_split = {name: entry["num_videos"] for name, entry in manifest["splits"].items()}
    report.subsets = {
        name: {int(size): subset["num_videos"] for size, subset in entry["subsets"].items()}
        for name, entry in manifest["splits"].items()
        if entry.get("subsets")
    }
    report.skipped = manifest["skipped"]
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None, program: str = MODULE_PROGRAM) -> PrepareReport:
    """``python -m hf_vssl.data.prepare``: parse the flags, prepare, print the summary.

    From the command line a bad flag or input prints one line ``error: ...`` and exits with status 1.
    """
    from_command_line = argv is None
    parser = HfArgumentParser(PrepareArguments, prog=program)
    if "--push_to_hub" in (sys.argv[1:] if argv is None else argv):
        parser.error(
            "--push_to_hub: push with `python recipes/prepare_corpus.py` (the same flags) or "
            "hf_vssl.hub.publish_dataset(output_dir, repo_id); this module only prepares the folder"
        )
    try:
        (args,) = parser.parse_args_into_dataclasses(args=argv)
        report = prepare_corpus(args, program)
    except (ValueError, OSError) as error:
        if not from_command_line:
            raise
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        raise SystemExit(1) from None
    print(report.summary())
    return report
