"""Foundation models (X-CLIP, CLIP, SigLIP) under the study's protocol: zero-shot, robustness, CKA, probe.

Everything runs offline on tiny random models saved by the tests, each with a word-level
tokenizer built here whose vocabulary holds the prompt templates' words and the class names of
the synthetic corpus (and of colour videos the tests encode).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    PreTrainedTokenizerFast,
    SiglipConfig,
    SiglipModel,
    XCLIPConfig,
    XCLIPModel,
)
from transformers.modeling_outputs import BaseModelOutputWithPooling

import hf_vssl  # noqa: F401  (registers the Auto classes)
from hf_vssl.analysis.cka_recipe import CKAArguments
from hf_vssl.analysis.robustness import RobustnessArguments
from hf_vssl.data.loading import load_records
from hf_vssl.data.video_io import encode_video
from hf_vssl.evaluation.classification import build_eval_dataset, evaluate_classifier
from hf_vssl.foundation import (
    ENSEMBLE_TEMPLATES,
    ZeroShotVideoClassifier,
    clean_class_name,
    foundation_family,
    load_foundation_model,
    load_vision_backbone,
    resolve_templates,
)
from hf_vssl.foundation.class_names import class_names_from_labels, read_class_names_file
from hf_vssl.foundation.prompts import build_prompts
from hf_vssl.foundation.run import ZeroShotArguments
from hf_vssl.foundation.table import main as zero_shot_table
from hf_vssl.models import VSSLConfig, VSSLModel
from hf_vssl.models.processing_vssl import VIDEO_MEAN, VIDEO_STD
from hf_vssl.training.arguments import parse_args
from hf_vssl.training.finetuning import FinetuningArguments, run_finetuning

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_WORDS = sorted(
    {word for t in ENSEMBLE_TEMPLATES for word in t.replace("{}", " ").replace(".", " ").split()}
)
CLASS_WORDS = ["left", "right", "up", "down", "red", "green", "blue"]
WORDS = [
    "<pad>",
    "<unk>",
    "<s>",
    ".",
    "move",
    *TEMPLATE_WORDS,
    *CLASS_WORDS,
    "</s>",
]  # EOS last: X-CLIP pools at argmax
PIXEL_MEAN, PIXEL_STD = [0.4, 0.5, 0.6], [0.2, 0.3, 0.25]
TEXT = {
    "vocab_size": len(WORDS),
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 16,
    "pad_token_id": 0,
    "bos_token_id": 2,
    "eos_token_id": len(WORDS) - 1,
}
VISION = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}


def _recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_recipe", REPO / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", WORDS.index("<s>")), ("</s>", WORDS.index("</s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=16,
    )


def save_tiny(family: str, folder: Path, image_mean=PIXEL_MEAN, image_std=PIXEL_STD) -> Path:
    """A tiny random ``family`` model with its tokenizer and image processor, saved to ``folder``."""
    torch.manual_seed(0)
    if family == "xclip":
        vision = {
            **VISION,
            "num_frames": 4,
            "mit_hidden_size": 8,
            "mit_intermediate_size": 16,
            "mit_num_hidden_layers": 1,
            "mit_num_attention_heads": 2,
        }
        model = XCLIPModel(
            XCLIPConfig(
                text_config=TEXT,
                vision_config=vision,
                projection_dim=8,
                prompt_layers=1,
                prompt_num_attention_heads=2,
            )
        )
    elif family == "clip":
        model = CLIPModel(CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=8))
    else:
        model = SiglipModel(SiglipConfig(text_config=TEXT, vision_config=VISION))
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    CLIPImageProcessor(image_mean=image_mean, image_std=image_std).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("foundation")
    return {family: save_tiny(family, root / family) for family in ("xclip", "clip", "siglip")}


def _to_vssl(raw: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] normalised as hf_vssl's data pipeline normalises them."""
    return (raw - torch.tensor(VIDEO_MEAN).view(3, 1, 1)) / torch.tensor(VIDEO_STD).view(3, 1, 1)


def _to_model(raw: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] normalised as the tiny models' image processor normalises them."""
    return (raw - torch.tensor(PIXEL_MEAN).view(3, 1, 1)) / torch.tensor(PIXEL_STD).view(3, 1, 1)


# -- class names and prompts ---------------------------------------------------------------------


def test_class_names_are_cleaned_per_dataset():
    assert clean_class_name("ApplyEyeMakeup", "camel") == "apply eye makeup"
    assert clean_class_name("YoYo", "camel") == "yo yo"
    assert clean_class_name("HandstandPushups", "camel") == "handstand pushups"
    assert clean_class_name("brush_hair", "snake") == "brush hair"
    assert clean_class_name("tying knot (not on a tie)", "as_is") == "tying knot (not on a tie)"
    assert clean_class_name("move_left") == clean_class_name("MoveLeft") == "move left"
    assert clean_class_name("playing guitar") == "playing guitar"
    labels = {0: "ApplyEyeMakeup", 1: "BlowDryHair"}
    assert class_names_from_labels(labels, "ucf101") == ["apply eye makeup", "blow dry hair"]
    assert class_names_from_labels({0: "brush_hair", 1: "cartwheel"}, "hmdb51") == ["brush hair", "cartwheel"]
    assert class_names_from_labels({0: "Abseiling_x"}, "kinetics400") == ["Abseiling_x"]  # as is
    with pytest.raises(ValueError, match=r"class index \[1\]"):
        class_names_from_labels({0: "a", 2: "c"}, "ucf101")
    with pytest.raises(ValueError, match="style"):
        clean_class_name("x", "shouting")


def test_class_names_file(tmp_path):
    (tmp_path / "names.json").write_text(json.dumps({"1": "jump", "0": "run"}))
    assert read_class_names_file(tmp_path / "names.json", 2) == ["run", "jump"]
    (tmp_path / "names.txt").write_text("run fast\n\njump\n")
    assert read_class_names_file(tmp_path / "names.txt", 2) == ["run fast", "jump"]
    with pytest.raises(ValueError, match=r"names.txt: expected 3"):
        read_class_names_file(tmp_path / "names.txt", 3)
    with pytest.raises(FileNotFoundError, match="--class_names_file"):
        read_class_names_file(tmp_path / "missing.txt", 2)


def test_templates():
    assert resolve_templates() == ("a video of a person {}.",)
    assert resolve_templates(ensemble=True) == ENSEMBLE_TEMPLATES and len(ENSEMBLE_TEMPLATES) > 1
    assert resolve_templates(["{}", "a {} video"]) == ("{}", "a {} video")
    assert build_prompts(["run", "jump"], ["a {}.", "{}!"]) == ["a run.", "run!", "a jump.", "jump!"]
    with pytest.raises(ValueError, match="exactly one"):
        resolve_templates(["no slot"])
    with pytest.raises(ValueError, match="not both"):
        resolve_templates(["{}"], ensemble=True)


# -- the classifier against the models' own forward ----------------------------------------------


@pytest.mark.parametrize("family", ["xclip", "clip", "siglip"])
def test_zero_shot_logits_equal_the_models_own_forward(tiny_models, family):
    """Re-normalisation, text path (padding / mask per family) and X-CLIP's prompt generator match."""
    foundation = load_foundation_model(tiny_models[family])
    assert foundation_family(tiny_models[family]) == family and foundation.image_mean == PIXEL_MEAN
    names = ["move left", "move up", "move down"]
    classifier = ZeroShotVideoClassifier(foundation, names, ["a video of a person {}."])
    frames = 4 if family == "xclip" else 1  # the image models' own forward sees one image
    raw = torch.rand(2, frames, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    prompts = [f"a video of a person {n}." for n in names]
    with torch.no_grad():
        ours = classifier(pixel_values=_to_vssl(raw)).logits
        if family == "xclip":
            tokens = foundation.tokenizer(prompts, padding=True, return_tensors="pt")
            reference = foundation.model(
                input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, pixel_values=_to_model(raw)
            ).logits_per_video
        elif family == "clip":
            tokens = foundation.tokenizer(prompts, padding=True, return_tensors="pt")
            reference = foundation.model(
                input_ids=tokens.input_ids,
                attention_mask=tokens.attention_mask,
                pixel_values=_to_model(raw[:, 0]),
            ).logits_per_image
        else:  # SigLIP's own usage: padded to full length, no attention mask
            tokens = foundation.tokenizer(prompts, padding="max_length", return_tensors="pt")
            reference = foundation.model(
                input_ids=tokens.input_ids, pixel_values=_to_model(raw[:, 0])
            ).logits_per_image
    assert ours.shape == (2, 3)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_image_models_pool_normalised_frame_embeddings_over_time(tiny_models):
    foundation = load_foundation_model(tiny_models["clip"], num_frames=3)
    classifier = ZeroShotVideoClassifier(foundation, ["move left", "move right"], ["{}", "a video of {}."])
    raw = torch.rand(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    model = foundation.model
    with torch.no_grad():
        frames = model.get_image_features(pixel_values=_to_model(raw.flatten(0, 1))).pooler_output
        video = torch.nn.functional.normalize(
            torch.nn.functional.normalize(frames, dim=-1).view(2, 3, -1).mean(1), dim=-1
        )
        tokens = foundation.tokenizer(
            ["move left", "a video of move left.", "move right", "a video of move right."],
            padding=True,
            return_tensors="pt",
        )
        text = torch.nn.functional.normalize(model.get_text_features(**tokens).pooler_output, dim=-1).view(
            2, 2, -1
        )
        text = torch.nn.functional.normalize(
            text.mean(1), dim=-1
        )  # the ensemble: mean of normalised embeddings
        expected = model.logit_scale.exp() * video @ text.T
        torch.testing.assert_close(
            classifier(pixel_values=_to_vssl(raw)).logits, expected, rtol=1e-4, atol=1e-5
        )
    with pytest.raises(ValueError, match="X-CLIP model built for clips of 4 frames"):
        load_foundation_model(tiny_models["xclip"], num_frames=8)


# -- exact zero-shot results with towers built to agree ------------------------------------------


def _agreeing_text_tower(classes: list[str]):
    """``get_text_features`` whose embedding of a prompt is the one-hot of the class word it contains."""
    ids = {WORDS.index(word): index for index, word in enumerate(classes)}

    def get_text_features(self, input_ids=None, attention_mask=None, **kwargs):
        embeds = torch.zeros(len(input_ids), len(classes))
        for row, tokens in enumerate(input_ids.tolist()):
            for token in tokens:
                if token in ids:
                    embeds[row, ids[token]] = 1.0
        return BaseModelOutputWithPooling(pooler_output=embeds.to(input_ids.device))

    return get_text_features


def test_zero_shot_recipe_on_the_synthetic_corpus_is_exact(tiny_models, tiny_corpus, tmp_path, monkeypatch):
    """Every clip embeds as "up", every prompt as its class word: every video is predicted "move up"."""
    classes = ["left", "right", "up", "down"]
    monkeypatch.setattr(CLIPModel, "get_text_features", _agreeing_text_tower(classes))
    up = torch.nn.functional.one_hot(torch.tensor(classes.index("up")), len(classes)).float()
    monkeypatch.setattr(
        CLIPModel,
        "get_image_features",
        lambda self, pixel_values, **kwargs: BaseModelOutputWithPooling(
            pooler_output=up.expand(len(pixel_values), -1).to(pixel_values.device)
        ),
    )
    output = tmp_path / "run"
    args = [
        "--model_name_or_path",
        str(tiny_models["clip"]),
        "--dataset_root",
        str(tiny_corpus),
        "--output_dir",
        str(output),
        "--eval_clips",
        "2",
        "--per_device_eval_batch_size",
        "4",
        "--num_frames",
        "4",
    ]
    assert _recipe("zero_shot").main(args) == output

    records = load_records("synthetic", str(tiny_corpus), "test")
    share_up = sum(r.label_name == "move_up" for r in records) / len(records)
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["mode"] == "zero_shot" and metrics["dataset_split"] == "test"
    assert metrics["results"] == {
        "clip_top1": share_up,
        "clip_top5": 1.0,
        "video_top1": share_up,
        "video_top5": 1.0,
    }
    assert metrics["zero_shot"]["class_names"] == ["move left", "move right", "move up", "move down"]
    assert metrics["num_videos"] == len(records) and metrics["num_views"] == 2
    predictions = json.loads((output / "predictions.json").read_text())
    assert [p["video_id"] for p in predictions] == [r.video_id for r in records]
    assert all(p["predicted"][0] == "move up" for p in predictions)
    card = (output / "README.md").read_text()
    assert "model-index" in card and "zero_shot/video_top1" in card and "zero-shot" in card
    with pytest.raises(FileExistsError, match=r"already holds a metrics\.json"):  # a new folder per run
        _recipe("zero_shot").main(args)
    row = f"| `{tiny_models['clip']}` | clip | hf_vssl synthetic corpus | test (1) | 4x1 | 1 | {100 * share_up:.1f} |"
    assert row in zero_shot_table([str(output)])


def _colour_videos(root: Path) -> Path:
    """A video folder of solid-colour videos; one video in ``red/`` is green (the one expected miss)."""
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    videos = {"red": ["red", "red", "green"], "green": ["green", "green"], "blue": ["blue", "blue"]}
    generator = torch.Generator().manual_seed(0)
    for folder, shown in videos.items():
        for index, colour in enumerate(shown):
            frames = torch.tensor(colours[colour], dtype=torch.float32).view(1, 3, 1, 1).expand(12, 3, 40, 40)
            frames = (frames * 0.8 + 40 * torch.rand(12, 3, 40, 40, generator=generator)).to(torch.uint8)
            (root / folder).mkdir(parents=True, exist_ok=True)
            encode_video(frames, root / folder / f"{colour}_{index}.mp4", fps=10)
    return root


def test_zero_shot_predictions_follow_the_video_content(tmp_path, monkeypatch):
    """Towers that agree on colour: every video is classified by its colour, so 6 of 7 are right."""
    folder = save_tiny("clip", tmp_path / "clip", image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0])
    records = load_records("videofolder", str(_colour_videos(tmp_path / "colours")), "test")
    classes = ["blue", "green", "red"]  # the video folder's sorted class folders
    assert sorted({(r.label, r.label_name) for r in records}) == list(enumerate(classes))
    monkeypatch.setattr(CLIPModel, "get_text_features", _agreeing_text_tower(["red", "green", "blue"]))
    # the frame embedding is its mean colour (the tiny model's processor leaves pixels in [0, 1])
    monkeypatch.setattr(
        CLIPModel,
        "get_image_features",
        lambda self, pixel_values, **kwargs: BaseModelOutputWithPooling(
            pooler_output=pixel_values.mean(dim=(2, 3))
        ),
    )
    classifier = ZeroShotVideoClassifier(load_foundation_model(folder, num_frames=4), classes)
    dataset = build_eval_dataset(records, 4, 32, num_clips=3)
    result = evaluate_classifier(classifier, dataset, batch_size=3)
    assert result.results() == {"clip_top1": 6 / 7, "clip_top5": 1.0, "video_top1": 6 / 7, "video_top5": 1.0}
    predicted = result.video_scores.argmax(1).tolist()
    shown = [Path(r.path).name.split("_")[0] for r in records]
    assert predicted == [classes.index(colour) for colour in shown]


# -- the same protocol as the self-supervised backbones ------------------------------------------


def test_robustness_recipe_takes_a_zero_shot_model(tiny_models, tiny_corpus, tmp_path):
    output = tmp_path / "xclip-run"
    common = [
        "--model_name_or_path",
        str(tiny_models["xclip"]),
        "--dataset_root",
        str(tiny_corpus),
        "--output_dir",
        str(output),
        "--eval_clips",
        "1",
        "--per_device_eval_batch_size",
        "4",
        "--prompt_templates",
        "a video of {}.",
        "{}",
        "--frame_stride",
        "2",
    ]
    _recipe("zero_shot").main(common)
    zero_shot = json.loads((output / "metrics.json").read_text())
    assert zero_shot["zero_shot"]["family"] == "xclip" and zero_shot["evaluation"]["num_frames"] == 4
    assert zero_shot["evaluation"]["frame_stride"] == 2
    assert zero_shot["zero_shot"]["templates"] == ["a video of {}.", "{}"]

    assert _recipe("robustness").main([*common, "--noises", "gaussian", "--severities", "1", "5"]) == output
    report = json.loads((output / "robustness.json").read_text())
    # the clean cell is the zero-shot test itself: same clips, same model, same prompts
    assert report["clean_top1"] == zero_shot["results"]["video_top1"]
    assert [(c["noise"], c["severity"]) for c in report["cells"]] == [("gaussian", s) for s in (0, 1, 5)]
    assert all(0.0 <= c["top1"] <= 1.0 for c in report["cells"])
    card = (output / "README.md").read_text()
    assert "gaussian/top1" in card and "Robustness to input noise" in card  # the card gained the results
    assert not (tiny_models["xclip"] / "robustness.json").exists()  # nothing written into the model's folder


def test_cka_of_a_vision_tower_against_a_self_supervised_backbone(tiny_models, tiny_corpus, tmp_path):
    ssl = tmp_path / "r3d"
    VSSLModel(
        VSSLConfig(backbone="r3d", width_multiplier=0.125, num_frames=8, image_size=32)
    ).save_pretrained(ssl)
    flags = [
        "--dataset_root",
        str(tiny_corpus),
        "--per_device_eval_batch_size",
        "4",
        "--dataloader_num_workers",
        "0",
    ]
    cka = _recipe("cka")
    output = cka.main(
        [
            "--model_name_or_path",
            str(ssl),
            "--compare_to",
            str(tiny_models["clip"]),
            "--output_dir",
            str(tmp_path / "vs"),
            *flags,
        ]
    )
    data = json.loads((output / "cka.json").read_text())
    assert data["layers_b"] == ["layer1", "layer2"] and len(data["layers_a"]) >= 4
    matrix = torch.tensor(data["matrix"])
    assert matrix.shape == (len(data["layers_a"]), 2) and torch.isfinite(matrix).all()
    assert (matrix > -0.2).all() and (matrix < 1.0 + 1e-6).all()
    within = cka.main(
        ["--model_name_or_path", str(tiny_models["xclip"]), "--output_dir", str(tmp_path / "xclip"), *flags]
    )
    data = json.loads((within / "cka.json").read_text())
    assert data["layers_a"] == ["layer1", "layer2"]
    torch.testing.assert_close(
        torch.tensor(data["matrix"], dtype=torch.float64).diagonal(), torch.ones(2, dtype=torch.float64)
    )


@pytest.mark.parametrize("family", ["xclip", "siglip"])
def test_vision_backbone_is_the_models_vision_tower(tiny_models, family):
    foundation = load_foundation_model(tiny_models[family])
    backbone = load_vision_backbone(foundation)
    assert backbone.config.backbone == f"{family}-vision"
    raw = torch.rand(2, foundation.num_frames, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = backbone(_to_vssl(raw), output_hidden_states=True)
        tower = foundation.model.vision_model(
            pixel_values=_to_model(raw.flatten(0, 1)), output_hidden_states=True
        )
    torch.testing.assert_close(
        out.pooler_output,
        tower.pooler_output.view(2, foundation.num_frames, -1).mean(1),
        rtol=1e-4,
        atol=1e-5,
    )
    assert len(out.hidden_states) == len(tower.hidden_states) == 3  # the embeddings, then each layer
    for ours, theirs in zip(out.hidden_states, tower.hidden_states):
        torch.testing.assert_close(ours.flatten(0, 1), theirs, rtol=1e-4, atol=1e-5)


def test_exported_vision_tower_goes_through_the_linear_probe(tiny_models, tiny_corpus, tmp_path):
    exported = _recipe("export_vision_tower").main(
        [
            "--model_name_or_path",
            str(tiny_models["clip"]),
            "--output_dir",
            str(tmp_path / "clip-vision"),
            "--num_frames",
            "4",
        ]
    )
    in_memory = load_vision_backbone(tiny_models["clip"], num_frames=4)
    reloaded = VSSLModel.from_pretrained(exported).eval()
    clip = _to_vssl(torch.rand(1, 4, 3, 32, 32))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(clip).pooler_output, in_memory(clip).pooler_output)
    output = run_finetuning(
        parse_args(
            FinetuningArguments,
            [
                "--model_name_or_path",
                str(exported),
                "--mode",
                "linear_probe",
                "--dataset_root",
                str(tiny_corpus),
                "--output_dir",
                str(tmp_path / "probe"),
                "--max_steps",
                "2",
                "--per_device_train_batch_size",
                "4",
                "--per_device_eval_batch_size",
                "4",
                "--dataloader_num_workers",
                "0",
                "--report_to",
                "none",
                "--eval_clips",
                "1",
                "--channels_last",
                "False",
            ],
        )
    )  # channels_last_3d cannot take the 2D patch conv
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["mode"] == "linear_probe" and metrics["results"]["video_top5"] == 1.0


def test_refusals(tiny_models, tmp_path):
    ssl = tmp_path / "r3d"
    VSSLModel(
        VSSLConfig(backbone="r3d", width_multiplier=0.125, num_frames=8, image_size=32)
    ).save_pretrained(ssl)
    assert foundation_family(ssl) is None and foundation_family(tmp_path / "missing") is None
    recipe = _recipe("zero_shot")
    with pytest.raises(ValueError, match=r"no config\.json with a model_type among"):
        recipe.main(["--model_name_or_path", str(ssl)])
    with pytest.raises(ValueError, match="--model_name_or_path is required"):
        recipe.main([])
    with pytest.raises(ValueError, match="exactly one"):
        recipe.main(
            [
                "--model_name_or_path",
                str(tiny_models["clip"]),
                "--prompt_templates",
                "no slot",
                "--output_dir",
                str(tmp_path / "x"),
            ]
        )
    with pytest.raises(ValueError, match="at least 2 classes"):
        ZeroShotVideoClassifier(load_foundation_model(tiny_models["clip"]), ["only one"])


def test_every_flag_in_the_documentation_exists():
    """docs/foundation_models.md's commands use only flags the recipes accept."""
    known = {
        f.name
        for cls in (ZeroShotArguments, RobustnessArguments, CKAArguments, FinetuningArguments)
        for f in dataclasses.fields(cls)
    } | {"json", "num_frames", "output_dir", "model_name_or_path"}
    text = (REPO / "docs" / "foundation_models.md").read_text()
    flags = set(re.findall(r"(?<![\w-])--([a-z][a-z0-9_]+)", text))
    assert {"model_name_or_path", "prompt_ensemble", "frame_stride", "compare_to", "mode"} <= flags
    assert flags <= known, sorted(flags - known)


def test_zero_shot_from_a_shard_folder_equals_the_source(tiny_models, tiny_corpus, tmp_path):
    from hf_vssl.data.shards import build_shards

    build_shards(
        load_records("synthetic", str(tiny_corpus), "test"), tmp_path / "shards", shard_size=3, num_workers=1
    )
    common = ["--model_name_or_path", str(tiny_models["clip"]), "--eval_clips", "1", "--num_frames", "4"]
    common += ["--per_device_eval_batch_size", "4"]
    runs = {}
    for name, data in (
        ("source", ["--dataset_root", str(tiny_corpus)]),
        ("shards", ["--dataset", str(tmp_path / "shards")]),
    ):
        output = _recipe("zero_shot").main([*common, *data, "--output_dir", str(tmp_path / name)])
        runs[name] = (
            json.loads((output / "metrics.json").read_text()),
            json.loads((output / "predictions.json").read_text()),
        )
    (source, source_predictions), (shards, shard_predictions) = runs["source"], runs["shards"]
    assert shards["results"] == source["results"] and shards["num_videos"] == source["num_videos"]
    assert shards["zero_shot"]["class_names"] == source["zero_shot"]["class_names"]  # from the manifest
    by_id = {p["video_id"]: p for p in source_predictions}
    assert {p["video_id"]: p for p in shard_predictions} == by_id
