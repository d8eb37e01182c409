"""The shipped evaluate metrics: load offline by path, compute known values, refuse bad input."""

from __future__ import annotations

import ast
import re
import shutil
import sys
from pathlib import Path

import evaluate
import numpy as np
import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomllib is 3.11+
    import tomli as tomllib

from hf_vssl.metrics import METRIC_NAMES, load_metric, metric_path


@pytest.fixture(scope="module")
def topk():
    return load_metric("topk_accuracy")


def test_every_metric_loads_by_path_with_evaluate_load():
    for name in METRIC_NAMES:
        metric = evaluate.load(str(metric_path(name)))  # plain evaluate.load, no Hub (tests run offline)
        assert isinstance(metric, evaluate.Metric)
    with pytest.raises(ValueError, match="unknown hf_vssl metric"):
        metric_path("accuracy")


def test_topk_accuracy_known_values(topk):
    scores = [
        [0.1, 0.7, 0.2, 0.0],  # label 1: rank 0
        [0.5, 0.1, 0.4, 0.0],  # label 2: rank 1
        [0.4, 0.3, 0.2, 0.1],  # label 3: rank 3
        [0.9, 0.05, 0.03, 0.02],  # label 0: rank 0
    ]
    result = topk.compute(predictions=scores, references=[1, 2, 3, 0], k=[1, 2, 3, 4, 5])
    assert result == {"top1": 0.5, "top2": 0.75, "top3": 0.75, "top4": 1.0, "top5": 1.0}
    # Logits work as well as probabilities (only the order matters).
    logits = np.log(np.asarray(scores) + 1e-6)
    assert topk.compute(predictions=logits, references=[1, 2, 3, 0], k=1) == {"top1": 0.5}


def test_topk_accuracy_ties_are_not_counted_as_hits(topk):
    # All classes tie: the true class ranks by its index, so a constant model gets no free top-1.
    result = topk.compute(predictions=[[0.0, 0.0, 0.0]] * 3, references=[0, 1, 2], k=[1, 2])
    assert result == {"top1": pytest.approx(1 / 3), "top2": pytest.approx(2 / 3)}


def test_topk_accuracy_rejects_bad_input(topk):
    with pytest.raises(ValueError, match="class indices"):
        topk.compute(predictions=[[0.2, 0.8]], references=[2], k=1)
    with pytest.raises(ValueError, match="k must be"):
        topk.compute(predictions=[[0.2, 0.8]], references=[1], k=[0])


def test_relative_robustness_known_values():
    metric = load_metric("relative_robustness")
    assert metric.compute(clean_accuracy=[0.8], noisy_accuracy=[0.6]) == {
        "relative_decrease": pytest.approx(0.25),
        "relative_robustness": pytest.approx(0.75),
    }
    # docs/study_settings.md#noise: R21D RSPNet clean 78.0, Gaussian severity 1 16.7.
    result = metric.compute(clean_accuracy=[0.780, 0.780], noisy_accuracy=[0.167, 0.780])
    assert result["relative_decrease"] == pytest.approx((0.613 / 0.780 + 0.0) / 2)
    assert result["relative_robustness"] == pytest.approx(1 - result["relative_decrease"])
    with pytest.raises(ValueError, match="non-zero clean"):
        metric.compute(clean_accuracy=[0.0], noisy_accuracy=[0.0])


# -- the module folders ----------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
# A module's imports -> the requirement that provides them (the distribution names of evaluate's modules).
_DISTRIBUTIONS = {"evaluate": "evaluate", "datasets": "datasets", "numpy": "numpy"}


def _front_matter(readme: Path) -> dict:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n"), f"{readme} has no metadata header"
    return yaml.safe_load(text.split("---\n", 2)[1])


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_every_metric_is_a_complete_evaluate_module_folder(name, tmp_path):
    folder = metric_path(name)
    meta = _front_matter(folder / "README.md")
    for key in ("title", "emoji", "sdk", "sdk_version", "app_file", "description", "tags"):
        assert meta.get(key), f"{name}/README.md: no {key!r} in the metadata header"
    assert meta["sdk"] == "gradio" and (folder / meta["app_file"]).is_file()
    assert {"evaluate", "metric"} <= set(meta["tags"])
    assert "## How to Use" in (folder / "README.md").read_text(encoding="utf-8")

    # requirements.txt names every third-party module the metric script imports.
    requirements = {
        re.split(r"[<>=!~ ;\[]", line, maxsplit=1)[0].strip().lower()
        for line in (folder / "requirements.txt").read_text().splitlines()
        if line.strip()
    }
    imported = set()
    for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert {_DISTRIBUTIONS[module] for module in third_party} <= requirements, (third_party, requirements)

    # The folder stands on its own: a copy outside the package loads by path (offline) and computes.
    copy = shutil.copytree(folder, tmp_path / name)
    metric = evaluate.load(str(copy), keep_in_memory=True)
    assert isinstance(metric, evaluate.Metric)


def test_package_data_ships_every_file_of_the_metric_folders():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "hf_vssl"
    ]
    package = REPO / "hf_vssl"
    shipped = {path for pattern in patterns for path in package.glob(pattern)}
    for name in METRIC_NAMES:
        files = [p for p in metric_path(name).iterdir() if p.is_file() and p.suffix != ".pyc"]
        assert {f"{name}.py", "README.md", "requirements.txt"} <= {p.name for p in files}
        missing = [p.name for p in files if p not in shipped]
        assert not missing, f"pyproject.toml's package-data leaves out {name}/{missing}"
