"""The transformers-facing model classes: config validation, Auto classes, save/load, remote code, pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForVideoClassification,
    AutoVideoProcessor,
    pipeline,
)

import hf_vssl
from hf_vssl import VSSLConfig, VSSLForVideoClassification, VSSLModel, VSSLVideoProcessor

TINY = {"backbone": "r3d", "width_multiplier": 0.125, "num_frames": 8, "image_size": 32}
LABELS = {0: "left", 1: "right", 2: "up"}


def tiny_classifier() -> VSSLForVideoClassification:
    config = VSSLConfig(**TINY, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    return VSSLForVideoClassification(config).eval()


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError) as error:
        VSSLConfig(backbone="resnet-9000")
    message = str(error.value)
    assert "resnet-9000" in message
    for name in hf_vssl.list_backbones():
        assert name in message


def test_clip_too_small_for_backbone_is_refused():
    with pytest.raises(ValueError, match="too small for backbone 'c3d'"):
        VSSLConfig(backbone="c3d", num_frames=4, image_size=112)
    with pytest.raises(ValueError, match="too small"):
        VSSLConfig(backbone="shufflenet", num_frames=16, image_size=16)


def test_list_backbones_has_the_study_networks():
    expected = {"c3d", "r3d", "r21d", "r3d-18", "r21d-18", "shufflenet", "squeezenet", "mobilenet", "swin-t"}
    assert expected <= set(hf_vssl.list_backbones())


def test_model_forward_shapes_and_hidden_states():
    model = VSSLModel(VSSLConfig(**TINY)).eval()
    pixel_values = torch.randn(2, 8, 3, 32, 32)
    out = model(pixel_values, output_hidden_states=True)
    assert out.pooler_output.shape == (2, model.num_features)
    # The stem output first, then one per stage, as transformers models report the embedding output.
    assert model.hidden_state_names == ("stem", *model.backbone.stage_names)
    assert len(out.hidden_states) == len(model.backbone.stage_names) + 1 == 5
    assert out.last_hidden_state is out.hidden_states[-1]
    assert model(pixel_values).hidden_states is None


def test_wrong_layout_gets_a_clear_error():
    model = VSSLModel(VSSLConfig(**TINY)).eval()
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(2, 3, 8, 32, 32))  # (B, C, T, H, W) by mistake
    with pytest.raises(ValueError, match="batch, frames, channels"):
        model(torch.randn(8, 3, 32, 32))


def test_classification_loss_and_labels():
    model = tiny_classifier().train()
    pixel_values = torch.randn(4, 8, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 1])
    out = model(pixel_values, labels=labels)
    assert out.logits.shape == (4, 3)
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    out.loss.backward()
    assert model.classifier.weight.grad is not None
    assert model.config.id2label[1] == "right" and model.config.label2id["up"] == 2


def test_save_load_round_trip_is_bit_equal(tmp_path):
    model = tiny_classifier()
    pixel_values = torch.randn(2, 8, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin")), "checkpoints must be safetensors only"
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "vssl"
    assert saved["auto_map"]["AutoModelForVideoClassification"].endswith("VSSLForVideoClassification")
    for code_file in ("modeling_vssl.py", "configuration_vssl.py", "backbones.py", "backbone_resnet3d.py"):
        assert (tmp_path / code_file).exists(), code_file

    reloaded = AutoModelForVideoClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is VSSLForVideoClassification
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values).logits, expected)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), VSSLConfig)
    backbone_only = AutoModel.from_pretrained(tmp_path)
    assert type(backbone_only) is VSSLModel
    expected_state = model.vssl.state_dict()
    for key, value in backbone_only.state_dict().items():
        assert torch.equal(value, expected_state[key]), key


def test_remote_code_loads_without_hf_vssl(tmp_path):
    model = tiny_classifier()
    pixel_values = torch.randn(2, 8, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values).logits
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    torch.save({"pixel_values": pixel_values, "logits": expected}, tmp_path / "io.pt")

    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["hf_vssl"] = None  # any `import hf_vssl` now raises ImportError
        import torch
        from transformers import AutoModelForVideoClassification
        try:
            import hf_vssl  # noqa: F401
            raise SystemExit("hf_vssl should not be importable here")
        except ImportError:
            pass
        model = AutoModelForVideoClassification.from_pretrained({str(checkpoint)!r}, trust_remote_code=True).eval()
        assert "hf_vssl" not in type(model).__module__, type(model).__module__
        data = torch.load({str(tmp_path / "io.pt")!r})
        with torch.no_grad():
            logits = model(data["pixel_values"]).logits
        assert torch.equal(logits, data["logits"]), (logits - data["logits"]).abs().max()
        print("REMOTE_OK", type(model).__module__)
        """
    )
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "REMOTE_OK transformers_modules" in result.stdout


def test_video_processor_shapes_and_auto_class(tmp_path, make_video):
    processor = VSSLVideoProcessor.for_clip(num_frames=8, image_size=32)
    video = make_video("clip.mp4", num_frames=20, height=40, width=56)
    batch = processor(str(video), return_tensors="pt")
    assert batch["pixel_values"].shape == (1, 8, 3, 32, 32)
    assert "pixel_values_videos" not in batch
    processor.save_pretrained(tmp_path)
    model = tiny_classifier()
    model.save_pretrained(tmp_path)
    reloaded = AutoVideoProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is VSSLVideoProcessor
    assert reloaded.num_frames == 8 and reloaded.crop_size["height"] == 32


@pytest.mark.parametrize("name", ["clip.mp4", "clip.avi"])
def test_pipeline_classifies_a_real_video(tmp_path, make_video, name):
    model = tiny_classifier()
    model.save_pretrained(tmp_path / "ckpt")
    VSSLVideoProcessor.for_clip(num_frames=8, image_size=32).save_pretrained(tmp_path / "ckpt")
    video = make_video(name, num_frames=30, height=48, width=64)
    classifier = pipeline("video-classification", model=str(tmp_path / "ckpt"))
    predictions = classifier(str(video), top_k=2)
    assert len(predictions) == 2
    assert {p["label"] for p in predictions} <= set(LABELS.values())
    assert predictions[0]["score"] >= predictions[1]["score"]
