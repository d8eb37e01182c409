"""The model zoo table: every registered backbone's size, computed live, beside the study's numbers.

Run ``python -m hf_vssl.zoo`` (or ``hf-vssl-zoo``); ``--backbones r3d r21d`` limits the rows,
``--json`` prints machine-readable rows. Opt-in variants of a study network (``r21d-aligned``)
are followed by their parameter and FLOP change against that network.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

import torch

from .models import VSSLConfig, VSSLModel, list_backbones
from .utils.profiling import count_gflops, count_parameters

#: Published backbone sizes (docs/study_settings.md#backbones) at 1x3x16x112x112, backbone only.
#: ``None`` where the study gives no number (params of the small nets are quoted with their
#: classifier in the papers; the backbone-only estimate is given instead).
STUDY_SIZES: dict[str, dict[str, float | None]] = {
    "shufflenet": {"params_m": 3.6, "gflops": 1.1},
    "mobilenet": {"params_m": 2.35, "gflops": 1.1},
    "squeezenet": {"params_m": 1.9, "gflops": 1.8},
    "c3d": {"params_m": 27.7, "gflops": 77.2},
    "r3d": {"params_m": 14.4, "gflops": 39.8},
    "r21d": {"params_m": 14.4, "gflops": 42.9},
    "r3d-18": {"params_m": 33.0, "gflops": 81.0},
    "r21d-18": {"params_m": 31.5, "gflops": 81.0},
    "swin-t": {"params_m": 28.0, "gflops": None},  # ~88 GFLOPs at 16x224, not 112
}

#: Opt-in variants -> the study network they modify (docs/performance.md#the-aligned-r21d).
VARIANTS: dict[str, str] = {"r21d-aligned": "r21d"}

#: Clip shape of each row. MViT's learned relative positions fix its input at 16x224.
ZOO_CLIP = {"default": (16, 112), "mvit": (16, 224)}


@dataclass
class ZooRow:
    name: str
    family: str
    clip: str
    params_m: float
    gflops: float
    feature_dim: int
    study_params_m: float | None
    study_gflops: float | None


def measure_backbone(name: str) -> ZooRow:
    """Build ``name`` at the study's size and count its parameters and forward GFLOPs."""
    frames, size = ZOO_CLIP.get(name, ZOO_CLIP["default"])
    model = VSSLModel(VSSLConfig(backbone=name, num_frames=frames, image_size=size))
    backbone = model.backbone
    study = STUDY_SIZES.get(name, {})
    return ZooRow(
        name=name,
        family=model.config.backbone_spec.family,
        clip=f"{frames}x{size}x{size}",
        params_m=count_parameters(backbone) / 1e6,
        gflops=count_gflops(backbone, (1, 3, frames, size, size)),
        feature_dim=backbone.num_features,
        study_params_m=study.get("params_m"),
        study_gflops=study.get("gflops"),
    )


def format_table(rows: list[ZooRow]) -> str:
    """A Markdown table of ``rows`` (measured beside published numbers)."""

    def num(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        "| backbone | family | clip | params (M) | study params (M) | GFLOPs | study GFLOPs | feature dim |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.family} | {r.clip} | {num(r.params_m)} | {num(r.study_params_m)} | "
            f"{num(r.gflops, 1)} | {num(r.study_gflops, 1)} | {r.feature_dim} |"
        )
    return "\n".join(lines)


def variant_changes(rows: list[ZooRow]) -> list[str]:
    """One line per :data:`VARIANTS` row: its parameter and GFLOP change against its study network
    (measured here when that network has no row of its own)."""
    by_name = {r.name: r for r in rows}
    lines = []
    for row in rows:
        base_name = VARIANTS.get(row.name)
        if base_name is None:
            continue
        base = by_name.get(base_name) or measure_backbone(base_name)
        lines.append(
            f"{row.name} vs {base_name}: params {row.params_m:.3f}M vs {base.params_m:.3f}M "
            f"({100 * (row.params_m / base.params_m - 1):+.2f}%), GFLOPs {row.gflops:.2f} vs {base.gflops:.2f} "
            f"({100 * (row.gflops / base.gflops - 1):+.2f}%)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="*", default=None, help="rows to compute (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = parser.parse_args(argv)
    names = args.backbones or list_backbones()
    torch.manual_seed(0)
    rows = []
    for name in names:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        rows.append(measure_backbone(name))
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print("\n".join([format_table(rows), *variant_changes(rows)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
