"""recipes/cka.py end to end: within one model, between two models, across a run's checkpoints."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from _tiny_runs import tiny_pretraining

import hf_vssl  # noqa: F401  (registers the Auto classes)
from hf_vssl.analysis.cka import MinibatchCKA
from hf_vssl.analysis.cka_maps import compare_models
from hf_vssl.analysis.cka_recipe import CKAArguments, _build_loader
from hf_vssl.analysis.stages import StageGrams, resolve_stage_modules
from hf_vssl.models import VSSLConfig, VSSLModel
from hf_vssl.models.loading import load_vssl_model, resize_clip
from hf_vssl.training.arguments import parse_args

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _recipe():
    spec = importlib.util.spec_from_file_location("cka_recipe", REPO / "recipes" / "cka.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data_flags(corpus: Path) -> list[str]:
    return [
        "--dataset_root",
        str(corpus),
        "--per_device_eval_batch_size",
        "4",
        "--dataloader_num_workers",
        "0",
    ]


@pytest.fixture(scope="module")
def run_dir(tiny_corpus, tmp_path_factory) -> Path:
    """A tiny RotNet pretraining run with a checkpoint at every step (checkpoint-2 = the final model)."""
    output = tmp_path_factory.mktemp("cka_run") / "rotnet-r21d"
    return tiny_pretraining(output, tiny_corpus, "--save_steps", "1", "--save_total_limit", "3")


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory) -> Path:
    """A different model: an R3D backbone built for another clip shape (8 frames at 40x40)."""
    path = tmp_path_factory.mktemp("cka_other") / "r3d-40"
    VSSLModel(
        VSSLConfig(backbone="r3d", width_multiplier=0.125, num_frames=8, image_size=40)
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def batches(tiny_corpus) -> list[dict]:
    """The recipe's test-split batches (8 videos, 8x32x32 center clips), decoded once."""
    args = parse_args(CKAArguments, ["--model_name_or_path", "unused", *_data_flags(tiny_corpus)])
    return list(_build_loader(args, 8, 32))


def _read(path: Path) -> dict:
    data = json.loads(path.read_text())
    assert {"model_a", "model_b", "layers_a", "layers_b", "matrix"} <= set(data)
    return data


def _assert_png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 2000


def test_within_one_model_defaults_to_the_model_folder(run_dir, tiny_corpus):
    output = _recipe().main(["--model_name_or_path", str(run_dir), *_data_flags(tiny_corpus)])
    assert output == run_dir, "--output_dir defaults to model A's folder"
    data = _read(run_dir / "cka.json")
    _assert_png(run_dir / "cka.png")
    matrix = torch.tensor(data["matrix"], dtype=torch.float64)
    assert data["layers_a"] == data["layers_b"] == ["layer1", "layer2", "layer3", "layer4"]
    assert data["model_a"] == data["model_b"] == run_dir.name
    assert data["method"] == "hooks" and data["num_samples"] == 8
    assert torch.allclose(torch.diagonal(matrix), torch.ones(4, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(matrix, matrix.T, atol=1e-12)
    off_diagonal = matrix[~torch.eye(4, dtype=torch.bool)]
    assert (off_diagonal < 0.999).all() and (off_diagonal.abs() <= 1).all(), "stages differ from each other"


def test_between_two_models_with_different_clip_shapes(run_dir, other_model_dir, tiny_corpus, batches):
    output = _recipe().main(
        [
            "--model_name_or_path",
            str(run_dir),
            "--compare_to",
            str(other_model_dir),
            *_data_flags(tiny_corpus),
        ]
    )
    assert output == run_dir / f"cka-vs-{other_model_dir.name}", "A's own cka.json stays untouched"
    data = _read(output / "cka.json")
    _assert_png(output / "cka.png")
    assert data["model_a"] == run_dir.name and data["model_b"] == other_model_dir.name
    matrix = torch.tensor(data["matrix"])
    # The unbiased estimator can dip below 0 for unrelated stages on 8 clips; it never leaves [-1, 1].
    assert matrix.shape == (4, 4) and torch.isfinite(matrix).all() and (matrix.abs() <= 1 + 1e-9).all()
    assert (matrix < 1 - 1e-3).all(), "a random R3D is not the pretrained R21D"
    # Swapping the models transposes the map (B gets the 8x32 clips resized to its 40x40 either way).
    swapped = compare_models(
        load_vssl_model(other_model_dir), batches, {"a": load_vssl_model(run_dir)}, progress=False
    )["a"]
    assert torch.allclose(swapped.matrix.float(), matrix.T, atol=1e-6)


def test_across_checkpoints_of_a_run(run_dir, tiny_corpus, tmp_path):
    output = _recipe().main(
        ["--checkpoints", str(run_dir), "--output_dir", str(tmp_path), *_data_flags(tiny_corpus)]
    )
    summary = json.loads((output / "cka_checkpoints.json").read_text())
    assert [entry["name"] for entry in summary["checkpoints"]] == ["checkpoint-1", "checkpoint-2"]
    assert [entry["step"] for entry in summary["checkpoints"]] == [1, 2]
    _assert_png(output / "cka_checkpoints.png")
    for entry in summary["checkpoints"]:
        data = _read(output / entry["file"])
        _assert_png(output / entry["file"].replace(".json", ".png"))
        assert data["model_b"] == entry["name"] and data["layers_a"] == summary["layers"]
        assert torch.allclose(torch.diagonal(torch.tensor(data["matrix"])), torch.tensor(entry["diagonal"]))
    first, last = (torch.tensor(e["diagonal"]) for e in summary["checkpoints"])
    # The last checkpoint holds the final weights; the first is one SGD step earlier.
    assert torch.allclose(last, torch.ones(4, dtype=last.dtype), atol=1e-6)
    assert (first < 1 - 1e-4).any()


def test_checkpoint_folder_loads_the_run_backbone(run_dir):
    final = load_vssl_model(run_dir)
    from_checkpoint = load_vssl_model(run_dir / "checkpoints" / "checkpoint-2")
    assert from_checkpoint.config.pretext_task is None
    for key, value in final.state_dict().items():
        assert torch.equal(value, from_checkpoint.state_dict()[key]), key


def test_hook_path_equals_hidden_states_path(run_dir, batches):
    model = load_vssl_model(run_dir)
    names = resolve_stage_modules(model, batches[0]["pixel_values"])
    assert names == [f"backbone.layer{i}" for i in range(1, 5)]
    hooked = compare_models(model, batches, name_a="m", progress=False)["m"]
    plain = compare_models(model, batches, name_a="m", use_hooks=False, progress=False)["m"]
    assert hooked.method == "hooks" and plain.method == "hidden_states"
    # Reference: features straight from output_hidden_states, through the feature API of MinibatchCKA.
    reference = MinibatchCKA(4)
    with torch.no_grad():
        for batch in batches:
            hidden = model.hidden_states_by_name(
                model(batch["pixel_values"], output_hidden_states=True).hidden_states
            )
            reference.update([hidden[f"layer{i}"] for i in range(1, 5)])
    assert torch.allclose(hooked.matrix, reference.compute(), atol=1e-10)
    assert torch.allclose(plain.matrix, reference.compute(), atol=1e-10)


def test_wrong_stage_modules_fall_back_to_hidden_states(run_dir, batches):
    model = load_vssl_model(run_dir)
    expected = compare_models(model, batches, name_a="m", use_hooks=False, progress=False)["m"].matrix
    # Shifted by one stage: the first batch's check must notice and switch paths.
    model.cka_layer_names = ["backbone.stem", "backbone.layer1", "backbone.layer2", "backbone.layer3"]
    with StageGrams(model) as grams:
        grams.grams(batches[0]["pixel_values"])
        assert grams.method == "hidden_states"
    assert torch.allclose(compare_models(model, batches, name_a="m", progress=False)["m"].matrix, expected)


def test_resize_clip_and_argument_errors(run_dir, tmp_path):
    clip = torch.rand(2, 8, 3, 32, 32)
    assert resize_clip(clip, 8, 32) is clip
    assert resize_clip(clip, 4, 40).shape == (2, 4, 3, 40, 40)
    recipe = _recipe()
    with pytest.raises(ValueError, match="not both"):
        recipe.main(
            ["--model_name_or_path", str(run_dir), "--compare_to", "x", "--checkpoints", str(run_dir)]
        )
    with pytest.raises(ValueError, match="> 3"):
        recipe.main(["--model_name_or_path", str(run_dir), "--per_device_eval_batch_size", "3"])
    with pytest.raises(FileNotFoundError, match="no checkpoint folders"):
        recipe.main(["--model_name_or_path", str(run_dir), "--checkpoints", str(tmp_path)])
