"""scripts/cue_probe.py: the supervised cue probe and its motion-energy baseline."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch

from hf_vssl.data import synthetic as S

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "cue_probe.py"
_spec = importlib.util.spec_from_file_location("cue_probe", _SCRIPT)
cue_probe = importlib.util.module_from_spec(_spec)
sys.modules["cue_probe"] = cue_probe  # its dataclasses look their module up there
_spec.loader.exec_module(cue_probe)


def test_motion_energy_tells_2x_from_1x_on_the_corpus():
    """The baseline's contrast-free frame-difference feature is larger at 2x than at 1x for the
    same video and start, in every moving class."""
    scene = S.sample_scene(np.random.default_rng(0))
    for index, motion in enumerate(("move_left", "move_fast", "orbit_ccw", "swing")):
        spec = S.sample_video_spec(2, index, motion, "striped_disc", scene, (64, 64))
        video = torch.from_numpy(S.render_video(spec, 16, (64, 64))).permute(0, 3, 1, 2)[None].float() / 255
        slow, fast = cue_probe.motion_energy(video[:, :8]), cue_probe.motion_energy(video[:, ::2])
        assert fast[0, 3] > slow[0, 3], motion  # log(lag-1 difference / gradient)


def test_ridge_separates_separable_features():
    rng = np.random.default_rng(0)
    labels = rng.integers(3, size=300)
    features = rng.normal(size=(300, 4)) + 3 * np.eye(3, 4)[labels]
    predicted = cue_probe.ridge_fit_predict(features[:200], labels[:200], features[200:], 3)
    assert (predicted == labels[200:]).mean() > 0.9


def test_probe_writes_its_json_and_table(tmp_path, tiny_corpus, one_thread):
    out = tmp_path / "probe"
    flags = ["--dataset_root", str(tiny_corpus), "--image_size", "32", "--eval_samples_per_video", "1"]
    cue_probe.main(["--out", str(out), "--steps", "2", "--cues", "rotation", "speed", *flags])
    report = json.loads((out / "cue_probe.json").read_text())
    assert [r["cue"] for r in report["results"]] == ["rotation", "speed"]
    speed = report["results"][1]
    assert speed["steps"] == 2 and speed["chance"] == 0.5 and 0 <= speed["heldout_accuracy"] <= 1
    assert (
        0 <= speed["energy_baseline_accuracy"] <= 1 and "energy_baseline_accuracy" not in report["results"][0]
    )
    assert report["settings"]["corpus_version"] == S.CORPUS_VERSION
    table = (out / "cue_probe.md").read_text()
    assert "| speed (rspnet) | 0.500 |" in table and "| rotation (rotnet) | 0.250 |" in table
