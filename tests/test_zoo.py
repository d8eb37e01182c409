"""The model-zoo table (`python -m hf_vssl.zoo`) computes sizes live and sets them beside the study's."""

from __future__ import annotations

import json

from hf_vssl.zoo import STUDY_SIZES, format_table, main, measure_backbone


def test_zoo_rows_match_the_study_within_tolerance():
    for name in ("r3d", "r21d"):
        row = measure_backbone(name)
        study = STUDY_SIZES[name]
        assert abs(row.params_m - study["params_m"]) / study["params_m"] < 0.03, row
        assert abs(row.gflops - study["gflops"]) / study["gflops"] < 0.03, row
        assert row.feature_dim == 512 and row.clip == "16x112x112"


def test_zoo_cli_prints_json_and_markdown(capsys):
    assert main(["--backbones", "squeezenet", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["squeezenet"]
    assert abs(rows[0]["gflops"] - 1.8) / 1.8 < 0.10
    table = format_table([measure_backbone("squeezenet")])
    assert table.splitlines()[0].startswith("| backbone |") and "| squeezenet | small |" in table
