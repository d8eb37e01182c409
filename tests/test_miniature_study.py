"""The miniature-study script's own logic: variant parsing and the pretext summary it reports."""

import argparse
import importlib.util
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "miniature_study.py"
_spec = importlib.util.spec_from_file_location("miniature_study", _SCRIPT)
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)


def test_variant_names_a_task_with_changed_settings_or_steps():
    assert study.parse_variant('prp-1-8=prp:{"rates": [1, 8]}') == (
        "prp-1-8",
        ("prp", None, {"rates": [1, 8]}),
    )
    assert study.parse_variant("prp-3k=prp@3000:{}") == ("prp-3k", ("prp", 3000, {}))


@pytest.mark.parametrize("text", ["prp-1-8", "x=nosuchtask:{}", "x=prp@many:{}", "=prp:{}"])
def test_malformed_variant_is_refused_with_the_expected_form(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"NAME=TASK\[@STEPS\]:JSON"):
        study.parse_variant(text)


def test_pretext_summary_averages_the_last_logs_of_each_metric_present():
    rows = [
        {"step": 20 * (i + 1), "loss": 10.0 - i, "accuracy": 0.1 * i, "batch_accuracy": 0.125}
        for i in range(8)
    ]
    summary = study.pretext_summary(rows, last=5)
    assert summary["steps"] == 160
    assert summary["loss"] == {"first": 10.0, "last": pytest.approx(5.0)}  # mean of 7, 6, 5, 4, 3
    assert summary["accuracy"]["last"] == pytest.approx(0.5)  # mean of 0.3 .. 0.7
    assert summary["batch_accuracy"] == {"first": 0.125, "last": pytest.approx(0.125)}
    assert "speed_accuracy" not in summary
