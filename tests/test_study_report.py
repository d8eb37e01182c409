"""The study report (hf_vssl.study.report) on a fixed results dataset, and the published numbers.

``tests/data/study_results.jsonl`` holds a small fixed grid in the results-row schema (one metric
per row): pretrainings, finetunes over two seeds with Hub links, a linear probe, robustness at
two severities, three CKA cells and a distillation. The rendered Markdown must equal the
committed pages under ``tests/data/study_report/`` (regenerate them after an intended change
with ``HFVSSL_REGENERATE_EXPECTED=1``, then review the diff).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hf_vssl.study.published import (
    ORIGINAL_REPORTS,
    PUBLISHED_COLUMNS,
    load_original_reports,
    load_published,
    published_files,
    read_published,
)
from hf_vssl.study.report import render_report
from hf_vssl.study.results import RESULT_COLUMNS
from hf_vssl.study.tables import TABLES_BY_NAME, render_table

DATA = Path(__file__).resolve().parent / "data"
EXPECTED = DATA / "study_report"
PAPER = 'Kumar et al., "A Large-Scale Analysis on Self-Supervised Video Representation Learning"'

# The results-row schema (long format, one metric per row).
FEATURES = RESULT_COLUMNS  # the schema the study runner writes


def _rows() -> list[dict]:
    return [json.loads(line) for line in (DATA / "study_results.jsonl").read_text().splitlines() if line]


def _dataset(rows: list[dict]) -> datasets.Dataset:
    if not rows:  # from_list cannot type an empty list
        return datasets.Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES)
    return datasets.Dataset.from_list(rows, features=FEATURES)


def _cka_json(layers: int, offset: float) -> dict:
    matrix = np.clip(1.0 - offset * np.abs(np.subtract.outer(np.arange(layers), np.arange(layers))), 0, 1)
    names = [f"stage{i}" for i in range(layers)]
    return {"model_a": "a", "model_b": "a", "layers_a": names, "layers_b": names, "matrix": matrix.tolist()}


@pytest.fixture(scope="module")
def fixed_rows(tmp_path_factory) -> list[dict]:
    """The fixed grid, with the first two CKA cells' cka.json written (the third one has none)."""
    cells = tmp_path_factory.mktemp("cells")
    rows = _rows()
    cka_cells = sorted({r["cell_id"] for r in rows if r["kind"] == "cka"})
    assert len(cka_cells) == 3
    for row in rows:
        if row["kind"] == "cka":
            row["output_dir"] = str(cells / row["cell_id"])
    for index, cell_id in enumerate(cka_cells[:2]):
        (cells / cell_id).mkdir()
        (cells / cell_id / "cka.json").write_text(json.dumps(_cka_json(4, 0.2 + 0.1 * index)))
    return rows


@pytest.fixture(scope="module")
def report(fixed_rows, tmp_path_factory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("report")
    return out, render_report(_dataset(fixed_rows), out)


def test_every_published_number_has_a_source_and_a_unit():
    published = load_published()
    assert len(published_files()) >= 7 and len(published) > 100
    assert published["source"].str.startswith(PAPER).all()
    assert set(published["unit"]) == {"%"} and published["value"].between(0, 100).all()
    assert {"1", "2", "3", "4", "5", "6", "distillation"} == set(published["table"])


def _published(table: str, **axes) -> list[float]:
    frame = load_published(table)
    for axis, value in axes.items():
        frame = frame[frame[axis] == value]
    return frame["value"].tolist()


def test_published_values_are_the_studys():
    assert _published("3", task="rspnet", backbone="r21d") == [78.0]
    assert _published("3", task="tdl", backbone="shufflenet") == [12.4]
    assert _published("4", task="tdl", downstream="hmdb51", subset_size=50000) == [9.5]
    assert _published("4", task="prp", downstream="ucf101", subset_size=10000) == [17.5]
    assert _published("5", backbone="swin-t", epochs=200, subset_size=10000) == [36.8]
    assert _published("5", backbone="swin-t", epochs=50, subset_size=10000) == []  # not reported
    assert _published("6", task="prp", noise="impulse", severity=1) == [5.4]
    assert _published("6", task="rspnet", severity=0) == [78.0]  # the clean column
    assert _published("2", task="vcop", backbone="r21d", mode="linear_probe") == [12.2]
    assert _published("distillation", kind="distill", downstream="ucf101") == [94.6]


def test_original_reports_carry_a_source_and_url_for_every_number(tmp_path):
    reports = load_original_reports()
    assert set(reports["task"]) == {"rotnet", "cvrl", "vcop", "tdl", "prp", "rspnet"}
    assert reports["url"].str.startswith("https://").all() and reports["value"].between(0, 100).all()
    rspnet = reports[(reports["task"] == "rspnet") & (reports["backbone"] == "r21d")]
    assert dict(zip(rspnet["downstream"], rspnet["value"])) == {"ucf101": 81.1, "hmdb51": 44.6}
    frame = pd.read_csv(ORIGINAL_REPORTS, dtype=str, keep_default_na=False)
    frame.loc[0, "url"] = ""
    frame.to_csv(tmp_path / "reports.csv", index=False)
    with pytest.raises(ValueError, match=r"reports\.csv: row\(s\) \[2\] have no url"):
        load_original_reports(tmp_path / "reports.csv")


def test_a_published_file_without_source_or_wrong_columns_is_refused(tmp_path):
    good = published_files()[0]
    frame = pd.read_csv(good, dtype=str, keep_default_na=False)
    frame.loc[1, "source"] = ""
    frame.to_csv(tmp_path / "no_source.csv", index=False)
    with pytest.raises(ValueError, match=r"no_source\.csv: row\(s\) \[3\] have no source"):
        read_published(tmp_path / "no_source.csv")
    frame.drop(columns=["note"]).to_csv(tmp_path / "columns.csv", index=False)
    with pytest.raises(ValueError, match=r"columns\.csv: columns .* differ"):
        read_published(tmp_path / "columns.csv")
    assert tuple(read_published(good).columns) == PUBLISHED_COLUMNS


def test_markdown_matches_the_expected_pages(report):
    out, written = report
    pages = sorted(p.name for p in out.glob("*.md"))
    if os.environ.get("HFVSSL_REGENERATE_EXPECTED") == "1":
        EXPECTED.mkdir(parents=True, exist_ok=True)
        for name in pages:
            (EXPECTED / name).write_text((out / name).read_text())
    assert pages == sorted(p.name for p in EXPECTED.glob("*.md"))
    for name in pages:
        assert (out / name).read_text() == (EXPECTED / name).read_text(), (
            f"{name} differs from {EXPECTED / name}"
        )
    assert sorted(written) == sorted([*out.glob("*.md"), *out.glob("*.png")])


def test_every_page_has_a_drawn_png(report):
    out, written = report
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) == len([p for p in written if p.suffix == ".md"]) - 1  # README.md has none
    for png in pngs:
        pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
        assert pixels.std() > 5, f"{png.name} is blank"
        assert f"({png.name})" in (out / png.with_suffix(".md").name).read_text()


def _table_line(markdown: str, section: str, label: str) -> dict[str, str]:
    """The cells of row ``label`` in section ``section`` of a rendered table, by column header."""
    text = markdown.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in text.splitlines() if line.startswith("| "))
    row = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | ")))


def test_published_numbers_sit_beside_ours(report):
    out, _ = report
    table3 = (out / "table3_equal_constraints.md").read_text()
    rspnet = _table_line(table3, "pretraining kinetics400, subset 50k, downstream ucf101", "rspnet")
    assert (
        rspnet["r21d"] == "[75.0](https://huggingface.co/org/rspnet-r21d-ucf101)"
    )  # linked to its checkpoint
    assert rspnet["r21d (paper)"] == "78.0" and rspnet["shufflenet (paper)"] == "68.8"
    assert rspnet["shufflenet"] == "n/a"
    original = table3.split("## As originally reported\n", 1)[1]
    assert "| rspnet | r21d | kinetics400, 200 epochs | ucf101 | 81.1 |" in original  # RSPNet's own README
    rotnet = _table_line(table3, "pretraining kinetics400, subset 50k, downstream ucf101", "rotnet")
    assert rotnet["r21d"].startswith("41.0 ± 1.4 ([1](https://huggingface.co/org/rotnet-r21d-ucf101-s0)")

    table6 = (out / "table6_noise.md").read_text()
    noisy = _table_line(table6, "backbone r21d, downstream ucf101, severity 1", "rspnet")
    assert (noisy["clean"], noisy["clean (paper)"], noisy["gaussian"], noisy["gaussian (paper)"]) == (
        "75.0",
        "78.0",
        "15.0",
        "16.7",
    )
    assert noisy["impulse"] == "n/a" and noisy["impulse (paper)"] == "8.5"

    table5 = (out / "table5_rspnet_subset_epochs.md").read_text()
    r21d = _table_line(table5, "downstream ucf101", "r21d 50")
    assert r21d["10k"] == "65.0" and r21d["10k (paper)"] == "66.8"
    swin = _table_line(table5, "downstream ucf101", "swin-t 50")
    assert swin["10k (paper)"] == "-"  # the study reports no number there


def test_missing_cells_are_na_and_listed(fixed_rows, tmp_path):
    without_noise = [r for r in fixed_rows if not (r["kind"] == "robustness" and r["task"] == "rspnet")]
    rendered = render_table(
        TABLES_BY_NAME["table6_noise"], _dataset(without_noise).to_pandas(), load_published()
    )
    rspnet = _table_line(rendered.markdown, "backbone r21d, downstream ucf101, severity 1", "rspnet")
    assert rspnet["clean"] == rspnet["gaussian"] == "n/a" and rspnet["clean (paper)"] == "78.0"
    assert "rspnet x clean" in rendered.markdown and "rspnet x gaussian" in rendered.markdown

    # No rows at all: every page still renders, all n/a, and the index counts what is missing.
    paths = render_report(_dataset([]), tmp_path / "empty")
    assert len(paths) == 29
    index = (tmp_path / "empty" / "README.md").read_text()
    assert "0 results rows of 0 cells" in index and "complete" not in index
    table3 = (tmp_path / "empty" / "table3_equal_constraints.md").read_text()
    assert "No results for this setting: all 12 cells are n/a." in table3
    assert "n/a: no cka rows with a task value." in (tmp_path / "empty" / "cka_task.md").read_text()


def test_study_folder_and_bad_sources(fixed_rows, tmp_path):
    study = tmp_path / "study"
    (study / "results").mkdir(parents=True)
    _dataset(fixed_rows[:20]).to_parquet(str(study / "results" / "part-a.parquet"))
    _dataset(fixed_rows[20:]).to_parquet(str(study / "results" / "part-b.parquet"))
    paths = render_report(study)
    assert all(p.parent == study / "report" for p in paths)
    assert "55 results rows of 28 cells" in (study / "report" / "README.md").read_text()

    with pytest.raises(ValueError, match=r"no results/\*\.parquet"):
        render_report(tmp_path)
    with pytest.raises(ValueError, match="out_dir is required"):
        render_report(_dataset(fixed_rows))
    with pytest.raises(ValueError, match="not a study folder"):
        render_report(str(tmp_path / "missing" / "folder"), tmp_path / "out")
    with pytest.raises(ValueError, match=r"lack the column\(s\) hub_repo_id"):
        render_report(_dataset(fixed_rows).remove_columns("hub_repo_id"), tmp_path / "out")


def test_a_hub_dataset_id_is_read_from_the_hub(fixed_rows, tmp_path, monkeypatch):
    """``render_report("org/name", out)`` loads the results with ``datasets`` from the (local) Hub."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _local_hub import LocalHub
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the session is offline (conftest)

    parquet = tmp_path / "train.parquet"
    _dataset(fixed_rows).to_parquet(str(parquet))
    script = (
        "import sys; from hf_vssl.study.report import render_report; "
        "print(len(render_report('alice/study-results', sys.argv[1])))"
    )
    with LocalHub(tokens={"hf_alice": "alice"}) as hub:
        api = HfApi(endpoint=hub.url, token="hf_alice")
        api.create_repo("alice/study-results", repo_type="dataset")
        api.upload_file(
            path_or_fileobj=str(parquet),
            path_in_repo="train.parquet",
            repo_id="alice/study-results",
            repo_type="dataset",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="0")
        result = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "out")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "29"
    index = (tmp_path / "out" / "README.md").read_text()
    assert "Rendered from the Hub dataset `alice/study-results`: 55 results rows of 28 cells" in index


def test_docs_miniature_study_is_the_miniature_presets_report(tmp_path):
    """`docs/miniature_study/` is `recipes/study.py --spec miniature --report_dir docs/miniature_study`:
    its results cover every cell of the preset, and its pages are the report of those results."""
    from hf_vssl.study.spec import expand, load_spec

    docs = Path(__file__).resolve().parents[1] / "docs" / "miniature_study"
    spec = load_spec("miniature")
    shipped = pd.read_parquet(docs / "results.parquet")
    assert set(shipped["cell_id"]) == {cell.cell_id for cell in expand(spec)}
    written = render_report(
        docs / "results.parquet", tmp_path, title=f"Study report: {spec.name}", notes=spec.notes
    )
    for page in (p for p in written if p.suffix == ".md"):
        assert page.read_text() == (docs / page.name).read_text(), (
            f"docs/miniature_study/{page.name} is stale"
        )
        assert (docs / page.with_suffix(".png").name).is_file() or page.name == "README.md"


def test_overview_chart_names_each_bar_by_its_own_setting(fixed_rows):
    """Without a random init there are no gain columns; the chart's bars keep their settings' names."""
    from hf_vssl.study.overview import accuracy_table

    header, _, bars = accuracy_table(_dataset(fixed_rows).to_pandas())
    assert not any("gain" in h for h in header)
    assert {name for _, name in bars} == {h.removesuffix(" top-1 (n)") for h in header[1:]}
    assert bars[("rotnet, backbone r21d, subset size 50k", "ucf101 finetune")][0] == pytest.approx(0.41)
