"""transformers' model contract, checked on every hf_vssl model class.

Written in the style of transformers' own video-model tests: a tiny *model tester* per
architecture (an r21d CNN at width 1/8, the TimeSformer and ViViT adapters with tiny transformers
configs built offline) and a mixin of common checks that every test case inherits. transformers'
test suite does not ship with the library, so the checks are this project's own equivalents of
its ``ModelTesterMixin``: save/load round trips, ``_init_weights`` covering every parameter and
buffer (also from the meta device, as ``from_pretrained`` builds), hidden states with the
embedding output first, attentions and ``attn_implementation`` through to the wrapped
transformers model, gradient checkpointing (adapters and CNN stages), ``problem_type``,
``_no_split_modules`` and batching equivalence. ``VSSLForPretraining`` (RotNet, VCOP, RSPNet)
gets the round trips of its buffers, queues and key encoders; the model-init hooks
(``init_vssl_buffers``, ``keep_pytorch_init``) are tested on small dummy modules; the video
processor's ``fps`` / ``num_frames`` sampling contract closes the module.

Not carried over, because they cannot apply to a pixel-input model: the token-embedding checks
(get/set/resize embeddings, ``inputs_embeds``), generation, head masking and pruning (gone from
transformers v5), and TorchScript/FX tracing of ``input_ids``. Attention checks run on the
adapters; on the CNN they check that ``output_attentions`` is refused rather than swallowed.
"""

from __future__ import annotations

import copy
import inspect
import tempfile
import unittest

import numpy as np
import pytest
import torch
from accelerate import infer_auto_device_map
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.video_utils import VideoMetadata

import hf_vssl
from hf_vssl.models import (
    VSSLConfig,
    VSSLForVideoClassification,
    VSSLModel,
    VSSLPreTrainedModel,
    VSSLVideoProcessor,
)
from hf_vssl.pretext import VSSLForPretraining

# gradient_checkpointing_enable() is the name the contract asks for (transformers v5 calls it deprecated).
pytestmark = [
    pytest.mark.filterwarnings("ignore:`gradient_checkpointing_.*:FutureWarning"),
    pytest.mark.usefixtures("one_thread"),  # see tests/conftest.py
]

TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def _fill_garbage(model: nn.Module) -> None:
    """What ``torch.empty`` may hold: NaN in every float tensor, a huge value in every integer one."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.fill_(float("nan") if tensor.is_floating_point() else 2**40)


def _meta_built(model_class, config) -> nn.Module:
    """``model_class(config)`` built on the meta device, moved to CPU memory without values, filled with garbage."""
    with torch.device("meta"):
        model = model_class(copy.deepcopy(config))
    model.to_empty(device="cpu")
    _fill_garbage(model)
    return model


def _non_finite(model: nn.Module) -> list[str]:
    named = [*model.named_parameters(), *model.named_buffers()]
    return [
        name
        for name, tensor in named
        if (tensor.is_floating_point() and not torch.isfinite(tensor).all()) or tensor.abs().max() >= 2**40
    ]


class VSSLModelTester:
    """Tiny config and inputs for one backbone, plus what its outputs must look like."""

    def __init__(
        self,
        backbone: str,
        *,
        num_frames: int = 4,
        image_size: int = 32,
        width_multiplier: float = 0.125,
        backbone_kwargs: dict | None = None,
        batch_size: int = 2,
        num_labels: int = 3,
        hidden_state_names: tuple[str, ...],
        hidden_state_shapes: list[tuple[int, ...]],
        attention_shape: tuple[int, ...] | None = None,
    ):
        self.backbone = backbone
        self.num_frames, self.image_size, self.width_multiplier = num_frames, image_size, width_multiplier
        self.backbone_kwargs = backbone_kwargs
        self.batch_size, self.num_labels = batch_size, num_labels
        self.hidden_state_names = hidden_state_names
        self.hidden_state_shapes = hidden_state_shapes  # without the batch axis
        self.attention_shape = attention_shape  # one layer's attention weights, batch axis included

    def get_config(self) -> VSSLConfig:
        return VSSLConfig(
            backbone=self.backbone,
            num_frames=self.num_frames,
            image_size=self.image_size,
            width_multiplier=self.width_multiplier,
            backbone_kwargs=self.backbone_kwargs,
            num_labels=self.num_labels,
            classifier_dropout=0.0,
        )

    def prepare_config_and_inputs_for_common(self) -> tuple[VSSLConfig, dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(0)
        shape = (self.batch_size, self.num_frames, 3, self.image_size, self.image_size)
        return self.get_config(), {"pixel_values": torch.randn(shape, generator=generator)}

    def labels(self) -> torch.Tensor:
        return torch.arange(self.batch_size) % self.num_labels


class VSSLModelTesterMixin:
    """The common checks; a test case sets ``model_tester`` (in ``setUp``) and ``all_model_classes``."""

    model_tester: VSSLModelTester
    all_model_classes: tuple[type[VSSLPreTrainedModel], ...] = (VSSLModel, VSSLForVideoClassification)
    has_attentions = False

    def _model(self, model_class, config: VSSLConfig) -> VSSLPreTrainedModel:
        """``model_class(config)``; with the eager attention where attention weights are asked for."""
        if self.has_attentions:
            return model_class._from_config(copy.deepcopy(config), attn_implementation="eager")
        return model_class(copy.deepcopy(config))

    def _inputs(self, model_class, inputs: dict, labels: bool = False) -> dict:
        inputs = dict(inputs)
        if labels and model_class is VSSLForVideoClassification:
            inputs["labels"] = self.model_tester.labels()
        return inputs

    # -- config and signature ------------------------------------------------------------
    def test_config(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        again = VSSLConfig.from_dict(config.to_dict())
        self.assertEqual(again.to_dict(), config.to_dict())
        with tempfile.TemporaryDirectory() as folder:
            config.save_pretrained(folder)
            self.assertEqual(VSSLConfig.from_pretrained(folder).to_dict(), config.to_dict())
        self.assertEqual(config.num_labels, self.model_tester.num_labels)

    def test_forward_signature(self):
        for model_class in self.all_model_classes:
            parameters = list(inspect.signature(model_class.forward).parameters)
            self.assertEqual(parameters[1], model_class.main_input_name)
            self.assertIn("output_hidden_states", parameters)
            self.assertIn("output_attentions", parameters)

    # -- save / load ---------------------------------------------------------------------
    def test_save_load(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(copy.deepcopy(config)).eval()
            with torch.no_grad():
                first = model(**inputs)[0]
            with tempfile.TemporaryDirectory() as folder:
                model.save_pretrained(folder)
                loaded = model_class.from_pretrained(folder).eval()
            with torch.no_grad():
                second = loaded(**inputs)[0]
            torch.testing.assert_close(first, second, rtol=0, atol=1e-5)
            expected = dict(model.named_buffers())
            for name, buffer in loaded.named_buffers():  # non-persistent buffers included
                torch.testing.assert_close(buffer, expected[name], rtol=0, atol=0, msg=name)

    def test_from_pretrained_no_checkpoint(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(copy.deepcopy(config))
            new = model_class.from_pretrained(
                None, config=copy.deepcopy(config), state_dict=model.state_dict()
            )
            for (name, a), b in zip(model.state_dict().items(), new.state_dict().values()):
                self.assertTrue(torch.equal(a, b), name)

    def test_backbone_loads_from_classifier_checkpoint_without_reports(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        classifier = VSSLForVideoClassification(copy.deepcopy(config))
        with tempfile.TemporaryDirectory() as folder:
            classifier.save_pretrained(folder)
            backbone, info = VSSLModel.from_pretrained(folder, output_loading_info=True)
        self.assertEqual((info["missing_keys"], info["unexpected_keys"]), (set(), set()))
        for name, tensor in backbone.state_dict().items():
            self.assertTrue(torch.equal(tensor, classifier.vssl.state_dict()[name]), name)

    def test_mismatched_classifier_is_reinitialised(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        model = VSSLForVideoClassification(copy.deepcopy(config))
        with torch.no_grad():
            model.classifier.bias.fill_(3.0)
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            other = VSSLForVideoClassification.from_pretrained(
                folder, num_labels=5, ignore_mismatched_sizes=True
            )
        self.assertEqual(other.classifier.out_features, 5)
        self.assertTrue(torch.equal(other.classifier.bias, torch.zeros(5)))
        self.assertLess(float(other.classifier.weight.detach().std()), 5 * config.initializer_range)
        for name, tensor in other.vssl.state_dict().items():
            self.assertTrue(torch.equal(tensor, model.vssl.state_dict()[name]), name)

    # -- initialisation ------------------------------------------------------------------
    def test_init_weights_covers_every_parameter_and_buffer(self):
        # What from_pretrained does with missing tensors: build on meta, allocate, run init_weights.
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = _meta_built(model_class, config)
            model.init_weights()
            self.assertEqual(_non_finite(model), [])
            reference = model_class(copy.deepcopy(config))
            for name, buffer in reference.named_buffers():  # buffers are not random: exactly the same
                self.assertTrue(torch.equal(buffer, model.get_buffer(name)), name)
            with torch.no_grad():
                self.assertTrue(torch.isfinite(model.eval()(**inputs)[0]).all())

    def test_can_init_all_missing_weights(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            fresh = model_class(copy.deepcopy(config))
            loaded = model_class.from_pretrained(None, config=copy.deepcopy(config), state_dict={})
            on_meta = [n for n, t in [*loaded.named_parameters(), *loaded.named_buffers()] if t.is_meta]
            self.assertEqual(on_meta, [])
            self.assertEqual(_non_finite(loaded), [])
            for name, tensor in fresh.state_dict().items():
                other = loaded.state_dict()[name]
                if tensor.numel() >= 64 and tensor.is_floating_point() and float(tensor.std()) > 0:
                    # Random tensors: drawn from the same distribution (not left as allocated memory).
                    ratio = float(other.std()) / float(tensor.std())
                    self.assertTrue(0.5 < ratio < 2.0, f"{name}: std ratio {ratio:.3g}")
                elif not tensor.is_floating_point() or float(tensor.std() if tensor.numel() > 1 else 0) == 0:
                    self.assertTrue(torch.equal(tensor, other), name)  # constants: biases, norms, buffers

    def test_all_tensors_are_parameter_or_buffer(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            with torch.device("meta"):
                model = model_class(copy.deepcopy(config)).eval()
            model.to_empty(device="cpu")
            model.init_weights()
            with torch.no_grad():
                model(**inputs)  # a tensor left on meta would fail here

    # -- outputs -------------------------------------------------------------------------
    def test_determinism(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(copy.deepcopy(config)).eval()
            with torch.no_grad():
                torch.testing.assert_close(model(**inputs)[0], model(**inputs)[0], rtol=0, atol=0)

    def test_batching_equivalence(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        config.output_hidden_states = True
        for model_class in self.all_model_classes:
            model = model_class(copy.deepcopy(config)).eval()
            with torch.no_grad():
                batched = model(**inputs)
                single = model(pixel_values=inputs["pixel_values"][:1])
            for key in single:
                values = single[key] if isinstance(single[key], tuple) else (single[key],)
                for a, b in zip(batched[key] if isinstance(batched[key], tuple) else (batched[key],), values):
                    torch.testing.assert_close(
                        a[:1], b, rtol=1e-4, atol=1e-5, msg=f"{model_class.__name__}.{key}"
                    )

    def test_model_outputs_equivalence(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = self._model(model_class, config).eval()
            extra = {"output_attentions": True} if self.has_attentions else {}
            for kwargs in ({}, {"output_hidden_states": True, **extra}):
                with torch.no_grad():
                    as_dict = model(
                        **self._inputs(model_class, inputs, labels=True), return_dict=True, **kwargs
                    )
                    as_tuple = model(
                        **self._inputs(model_class, inputs, labels=True), return_dict=False, **kwargs
                    )
                flat_dict = list(as_dict.to_tuple())
                self.assertEqual(len(flat_dict), len(as_tuple))
                for a, b in zip(flat_dict, as_tuple):
                    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
                        torch.testing.assert_close(x, y, rtol=0, atol=0)

    def test_hidden_states_output(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        tester = self.model_tester
        for model_class in self.all_model_classes:
            for via_config in (False, True):
                run_config = copy.deepcopy(config)
                run_config.output_hidden_states = via_config
                model = model_class(run_config).eval()
                with torch.no_grad():
                    out = model(**inputs, **({} if via_config else {"output_hidden_states": True}))
                hidden_states = out.hidden_states
                self.assertEqual(len(hidden_states), len(tester.hidden_state_names))
                shapes = [tuple(h.shape) for h in hidden_states]
                self.assertEqual(shapes, [(tester.batch_size, *s) for s in tester.hidden_state_shapes])
                backbone = model if model_class is VSSLModel else model.vssl
                self.assertEqual(backbone.hidden_state_names, tester.hidden_state_names)
                by_name = backbone.hidden_states_by_name(hidden_states)
                self.assertEqual(list(by_name), list(tester.hidden_state_names))
            with torch.no_grad():
                self.assertIsNone(model_class(copy.deepcopy(config)).eval()(**inputs).hidden_states)

    def test_embedding_output_is_what_the_first_stage_reads(self):
        # hidden_states[0] is the embedding (stem) output itself, not a copy of a stage.
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = VSSLModel(copy.deepcopy(config)).eval()
        name = model.backbone.embedding_name
        module = model.backbone.get_submodule({"stem": "stem", "embeddings": "model.embeddings"}[name])
        captured = []
        handle = module.register_forward_hook(lambda _m, _i, output: captured.append(output))
        with torch.no_grad():
            first = model(**inputs, output_hidden_states=True).hidden_states[0]
        handle.remove()
        torch.testing.assert_close(first, captured[0], rtol=0, atol=0)

    def test_retain_grad_hidden_states(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = self._model(VSSLModel, config)
        extra = {"output_attentions": True} if self.has_attentions else {}
        out = model(**inputs, output_hidden_states=True, **extra)
        tensors = [out.hidden_states[0], *(out.attentions[:1] if self.has_attentions else ())]
        for tensor in tensors:
            tensor.retain_grad()
        out.pooler_output.sum().backward()
        for tensor in tensors:
            self.assertIsNotNone(tensor.grad)

    def test_attention_outputs(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        if not self.has_attentions:
            for model_class in self.all_model_classes:
                with self.assertRaisesRegex(ValueError, "has no attention weights"):
                    model_class(copy.deepcopy(config)).eval()(**inputs, output_attentions=True)
            return
        num_layers = config.backbone_kwargs["num_hidden_layers"]
        for model_class in self.all_model_classes:
            model = model_class._from_config(copy.deepcopy(config), attn_implementation="eager").eval()
            with torch.no_grad():
                plain = model(**inputs)
                out = model(**inputs, output_attentions=True)
                both = model(**inputs, output_attentions=True, output_hidden_states=True, return_dict=False)
            self.assertIsNone(plain.attentions)
            self.assertEqual(len(out.attentions), num_layers)
            self.assertEqual(tuple(out.attentions[0].shape), self.model_tester.attention_shape)
            torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(out.attentions[0].shape[:-1]))
            self.assertEqual(len(both[-1]), num_layers)  # attentions come last, after the hidden states
            self.assertEqual(len(both[-2]), len(self.model_tester.hidden_state_names))
            via_config = copy.deepcopy(config)
            via_config.output_attentions = True
            model = model_class._from_config(via_config, attn_implementation="eager").eval()
            with torch.no_grad():
                self.assertEqual(len(model(**inputs).attentions), num_layers)

    # -- training ------------------------------------------------------------------------
    def test_training(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = VSSLForVideoClassification(copy.deepcopy(config)).train()
        loss = model(**self._inputs(VSSLForVideoClassification, inputs, labels=True)).loss
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        self.assertEqual(missing, [])

    def test_gradient_checkpointing_enable_disable(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            self.assertTrue(model_class.supports_gradient_checkpointing)
            model = model_class(copy.deepcopy(config))
            self.assertFalse(model.is_activation_checkpointing)
            model.gradient_checkpointing_enable()
            self.assertTrue(model.is_activation_checkpointing)
            flagged = [n for n, m in model.named_modules() if hasattr(m, "gradient_checkpointing")]
            self.assertTrue(flagged)
            self.assertTrue(all(model.get_submodule(n).gradient_checkpointing for n in flagged))
            model.gradient_checkpointing_disable()
            self.assertFalse(any(model.get_submodule(n).gradient_checkpointing for n in flagged))
            # The pre-4.35 config switch still turns it on.
            old_style = copy.deepcopy(config)
            old_style.gradient_checkpointing = True
            self.assertTrue(model_class(old_style).is_activation_checkpointing)

    def test_training_gradient_checkpointing(self):
        # Same loss, same gradients and (for CNNs) the same BatchNorm statistics with checkpointing.
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        inputs = self._inputs(VSSLForVideoClassification, inputs, labels=True)
        plain = VSSLForVideoClassification(copy.deepcopy(config)).train()
        checkpointed = copy.deepcopy(plain)
        checkpointed.gradient_checkpointing_enable()
        losses, calls = [], []
        for model in (plain, checkpointed):
            count = [0]
            for module in model.vssl.backbone.modules():  # count layer calls: checkpointing must recompute
                if isinstance(module, (nn.Conv3d, nn.Linear)):
                    module.register_forward_hook(lambda *_, count=count: count.__setitem__(0, count[0] + 1))
            loss = model(**inputs).loss
            loss.backward()
            losses.append(loss.detach())
            calls.append(count[0])
        torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
        self.assertGreater(calls[1], calls[0])  # the backward ran the checkpointed stages again
        for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)
        for (name, a), b in zip(plain.named_buffers(), checkpointed.buffers()):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)

    def test_no_split_modules(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(copy.deepcopy(config))
            no_split = set(model._no_split_modules)
            self.assertTrue(no_split)
            classes = {type(m).__name__ for m in model.modules()}
            self.assertLessEqual(no_split, classes)
            # A device map that must split the model (a CPU budget of 90% of its size, accelerate keeps room
            # for the largest block) never cuts one of those blocks.
            size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
            device_map = infer_auto_device_map(
                model,
                max_memory={"cpu": int(0.9 * size), "disk": 10 * size},
                no_split_module_classes=sorted(no_split),
            )
            self.assertGreater(len(set(device_map.values())), 1)
            blocks = [n for n, m in model.named_modules() if type(m).__name__ in no_split]
            for key in device_map:
                self.assertFalse(any(key.startswith(block + ".") for block in blocks), key)


class R21DModelTest(VSSLModelTesterMixin, unittest.TestCase):
    """The study's r21d (R(2+1)D-10) at width 1/8: 8/8/16/32/64 channels."""

    def setUp(self):
        self.model_tester = VSSLModelTester(
            "r21d",
            hidden_state_names=("stem", "layer1", "layer2", "layer3", "layer4"),
            hidden_state_shapes=[(8, 4, 16, 16), (8, 4, 16, 16), (16, 2, 8, 8), (32, 1, 4, 4), (64, 1, 2, 2)],
        )

    def test_problem_types(self):
        # As transformers' classifiers: the loss follows config.problem_type (or the labels' dtype).
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        batch, classes = self.model_tester.batch_size, self.model_tester.num_labels
        cases = [
            (
                "single_label_classification",
                torch.tensor([0, 2]),
                classes,
                lambda logits, y: nn.functional.cross_entropy(logits, y),
            ),
            (
                "multi_label_classification",
                torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]),
                classes,
                lambda logits, y: nn.functional.binary_cross_entropy_with_logits(logits, y),
            ),
            (
                "regression",
                torch.tensor([0.5, -1.5]),
                1,
                lambda logits, y: nn.functional.mse_loss(logits.squeeze(), y),
            ),
            (
                "regression",
                torch.randn(batch, classes),
                classes,
                lambda logits, y: nn.functional.mse_loss(logits, y),
            ),
        ]
        for index, (problem_type, labels, num_labels, reference) in enumerate(cases):
            # Unset, float labels with several outputs read as multi-label: the last case needs the setting.
            for explicit in (True, False) if index < 3 else (True,):
                case_config = copy.deepcopy(config)
                case_config.num_labels = num_labels
                if explicit:
                    case_config.problem_type = problem_type
                model = VSSLForVideoClassification(case_config).eval()
                self.assertEqual(model.problem_type_for(labels), problem_type)
                out = model(**inputs, labels=labels)
                torch.testing.assert_close(out.loss, reference(out.logits, labels))
                self.assertGreater(float(out.loss), 0.0)

    def test_cnn_stages_checkpoint_each_stage(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = VSSLModel(copy.deepcopy(config)).train()
        model.gradient_checkpointing_enable()
        calls = []
        original = model.backbone._gradient_checkpointing_func
        model.backbone._gradient_checkpointing_func = lambda fn, *a, **k: (
            calls.append(fn) or original(fn, *a, **k)
        )
        model(**inputs).pooler_output.sum().backward()
        backbone = model.backbone
        self.assertEqual(
            calls, [backbone.stem, backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4]
        )

    def test_attn_implementation_of_a_cnn(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        self.assertEqual(VSSLModel(copy.deepcopy(config)).config._attn_implementation, "eager")
        with self.assertRaisesRegex(ValueError, "not available for backbone 'r21d'"):
            VSSLModel._from_config(copy.deepcopy(config), attn_implementation="sdpa")


class TimesformerAdapterTest(VSSLModelTesterMixin, unittest.TestCase):
    """transformers' TimesformerModel behind the adapter: 2 layers of 32 dims, 8x8 patches of a 4x16x16 clip."""

    has_attentions = True

    def setUp(self):
        tokens = 1 + 4 * 4  # CLS + 4 frames x (16/8)^2 patches
        self.model_tester = VSSLModelTester(
            "timesformer",
            image_size=16,
            width_multiplier=1.0,
            backbone_kwargs={**TINY_VIT, "patch_size": 8},
            hidden_state_names=("embeddings", "layer1", "layer2"),
            hidden_state_shapes=[(tokens, 32)] * 3,
            attention_shape=(
                2 * 4,
                2,
                5,
                5,
            ),  # divided space attention: (batch x frames, heads, 1 + 4, 1 + 4)
        )

    def test_attn_implementation_reaches_the_wrapped_model(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        model = VSSLModel(copy.deepcopy(config))
        # TimeSformer has only the eager attention: that is the default, and SDPA is refused, not ignored.
        self.assertEqual(model.backbone.model.config._attn_implementation, "eager")
        with self.assertRaisesRegex(ValueError, "not available for backbone 'timesformer'"):
            VSSLModel._from_config(copy.deepcopy(config), attn_implementation="sdpa")

    def test_wrapped_layers_are_checkpointing_layers(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        model = VSSLModel(copy.deepcopy(config))
        model.gradient_checkpointing_enable()
        layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
        self.assertEqual(len(layers), 2)
        self.assertTrue(all(layer.gradient_checkpointing for layer in layers))


class VivitAdapterTest(VSSLModelTesterMixin, unittest.TestCase):
    """transformers' VivitModel behind the adapter: 2 layers of 32 dims, 2x8x8 tubelets of a 4x16x16 clip."""

    has_attentions = True

    def setUp(self):
        tokens = 1 + 2 * 2 * 2  # CLS + (4/2) x (16/8)^2 tubelets
        self.model_tester = VSSLModelTester(
            "vivit",
            image_size=16,
            width_multiplier=1.0,
            backbone_kwargs={**TINY_VIT, "tubelet_size": [2, 8, 8]},
            hidden_state_names=("embeddings", "layer1", "layer2"),
            hidden_state_shapes=[(tokens, 32)] * 3,
            attention_shape=(2, 2, tokens, tokens),
        )

    def test_attn_implementation_reaches_the_wrapped_model(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = VSSLModel(copy.deepcopy(config)).eval()
        self.assertEqual(model.backbone.model.config._attn_implementation, "sdpa")  # ViViT's default
        with self.assertRaisesRegex(ValueError, "needs the eager attention"):
            model(**inputs, output_attentions=True)
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            eager = VSSLModel.from_pretrained(folder, attn_implementation="eager").eval()
        self.assertEqual(eager.backbone.model.config._attn_implementation, "eager")
        with torch.no_grad():
            torch.testing.assert_close(
                model(**inputs).pooler_output, eager(**inputs).pooler_output, rtol=1e-4, atol=1e-6
            )  # eager matches SDPA
        eager.set_attn_implementation("sdpa")
        self.assertEqual(eager.backbone.model.config._attn_implementation, "sdpa")

    def test_wrapped_layers_are_checkpointing_layers(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        model = VSSLForVideoClassification(copy.deepcopy(config))
        model.gradient_checkpointing_enable()
        layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
        self.assertEqual(len(layers), 2)
        self.assertTrue(all(layer.gradient_checkpointing for layer in layers))


# ----------------------------------------------------------------------------------------------
# Every registered backbone: built on the meta device, initialised, checkpointed per stage

TINY_BACKBONES = {
    "c3d": {"width_multiplier": 0.125, "num_frames": 8},
    "r3d": {"width_multiplier": 0.125},
    "r21d": {"width_multiplier": 0.125},
    "r21d-aligned": {"width_multiplier": 0.125},
    "r3d-18": {"width_multiplier": 0.125},
    "r21d-18": {"width_multiplier": 0.125},
    "shufflenet": {"width_multiplier": 0.25},
    "squeezenet": {"width_multiplier": 0.125},
    "mobilenet": {"width_multiplier": 0.125},
    "swin-t": {
        "backbone_kwargs": {
            "embed_dim": 24,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 1, 1, 1],
            "stochastic_depth_prob": 0.0,
        }
    },
    "mvit": {
        "backbone_kwargs": {
            "embed_dim": 16,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 1, 1, 1],
            "stochastic_depth_prob": 0.0,
        }
    },
    "timesformer": {"image_size": 16, "backbone_kwargs": {**TINY_VIT, "patch_size": 8}},
    "vivit": {"image_size": 16, "backbone_kwargs": {**TINY_VIT, "tubelet_size": [2, 8, 8]}},
    "clip-vision": {"image_size": 16, "backbone_kwargs": {**TINY_VIT, "patch_size": 8}},
    "siglip-vision": {"image_size": 16, "backbone_kwargs": {**TINY_VIT, "patch_size": 8}},
    "xclip-vision": {"image_size": 16, "backbone_kwargs": {**TINY_VIT, "patch_size": 8}},
}


def test_tiny_backbones_cover_the_registry():
    assert sorted(TINY_BACKBONES) == sorted(hf_vssl.list_backbones())


@pytest.mark.parametrize("name", sorted(TINY_BACKBONES))
def test_every_backbone_initialises_from_meta_and_checkpoints_per_stage(name, tmp_path):
    settings = {"num_frames": 4, "image_size": 32, **TINY_BACKBONES[name]}
    config = VSSLConfig(backbone=name, **settings)
    # _init_weights reaches every tensor of a model built on the meta device (as from_pretrained builds it).
    model = _meta_built(VSSLModel, config)
    model.init_weights()
    assert _non_finite(model) == []
    reference = VSSLModel(copy.deepcopy(config)).train()
    for buffer_name, buffer in reference.named_buffers():
        assert torch.equal(model.get_buffer(buffer_name), buffer), buffer_name
    # from_pretrained gives the same network back.
    reference.save_pretrained(tmp_path)
    loaded = VSSLModel.from_pretrained(tmp_path).train()
    for key, tensor in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    # Gradient checkpointing: the same gradients and BatchNorm statistics.
    loaded.gradient_checkpointing_enable()
    clip = torch.randn(2, settings["num_frames"], 3, settings["image_size"], settings["image_size"])
    for net in (reference, loaded):
        net(clip).pooler_output.square().sum().backward()
    # Same up to summation order, measured against the largest gradient (a BatchNorm bias feeding another
    # BatchNorm has a gradient of zero up to rounding, which differs between any two summation orders).
    scale = max(float(p.grad.abs().max()) for p in reference.parameters())
    for (key, a), b in zip(reference.named_parameters(), loaded.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5 * scale, msg=key)
    for (key, a), b in zip(reference.named_buffers(), loaded.buffers()):
        # BatchNorm statistics updated once per step, as without checkpointing (a second update would move
        # them by the momentum, 10%; rounding differs because the loaded weights sit elsewhere in memory).
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=key)


# ----------------------------------------------------------------------------------------------
# VSSLForPretraining: buffers, queues and key encoders through from_pretrained

PRETRAINING = {"backbone": "r21d", "width_multiplier": 0.125, "num_frames": 4, "image_size": 32}
PRETEXT_CONFIG = {"rotnet": None, "vcop": None, "rspnet": {"queue_size": 16}}


def _pretraining(task: str) -> VSSLForPretraining:
    return VSSLForPretraining(
        VSSLConfig(**PRETRAINING, pretext_task=task, pretext_config=PRETEXT_CONFIG[task])
    )


def _pretext_batch(model: VSSLForPretraining, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    plans = [model.sampler().plan(64, rng) for _ in range(4)]
    clips, frames = len(plans[0].indices), len(plans[0].indices[0])
    shape = (4, clips, frames, 3, 32, 32) if clips > 1 else (4, frames, 3, 32, 32)
    batch = {"pixel_values": torch.randn(shape, generator=torch.Generator().manual_seed(seed))}
    batch.update({key: torch.tensor([plan.info[key] for plan in plans]) for key in plans[0].info})
    if model.config.pretext_task == "rotnet":
        batch["rotation"] = torch.tensor([0, 1, 2, 3])
    return batch


@pytest.mark.parametrize("task", ["rotnet", "vcop", "rspnet"])
def test_pretraining_round_trip_keeps_every_tensor(task, tmp_path):
    model = _pretraining(task).train()
    model(**_pretext_batch(model, seed=1)).loss.backward()  # moves BN statistics, queue and pointer
    model.eval()
    with torch.no_grad():
        before = model(**_pretext_batch(model)).loss
    model.save_pretrained(tmp_path)
    loaded = VSSLForPretraining.from_pretrained(tmp_path).eval()
    expected = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    got = {**dict(loaded.named_parameters()), **dict(loaded.named_buffers())}  # non-persistent buffers too
    assert sorted(got) == sorted(expected)
    different = [name for name in expected if not torch.equal(got[name], expected[name])]
    assert different == []
    with torch.no_grad():
        assert torch.equal(loaded(**_pretext_batch(loaded)).loss, before)


@pytest.mark.parametrize("task", ["rotnet", "vcop", "rspnet"])
def test_pretraining_init_weights_covers_every_tensor(task):
    # Every buffer equal to the constructor's (the RSPNet queue: unit rows, the pointer 0), nothing left unset.
    config = VSSLConfig(**PRETRAINING, pretext_task=task, pretext_config=PRETEXT_CONFIG[task])
    model = _meta_built(VSSLForPretraining, config)
    model.init_weights()
    assert _non_finite(model) == []
    reference = VSSLForPretraining(copy.deepcopy(config))
    for name, buffer in reference.named_buffers():
        if name.endswith("queue.queue"):
            torch.testing.assert_close(model.get_buffer(name).norm(dim=1), torch.ones(buffer.shape[0]))
        else:
            assert torch.equal(model.get_buffer(name), buffer), name


def test_rspnet_key_encoder_starts_as_the_loaded_backbone(tmp_path):
    model = _pretraining("rspnet")
    with torch.no_grad():
        for parameter in model.vssl.parameters():
            parameter.add_(0.01)
    model.vssl.save_pretrained(tmp_path)  # a backbone only: the momentum encoder is not in the checkpoint
    state = {f"vssl.{k}": v for k, v in model.vssl.state_dict().items()}
    loaded = VSSLForPretraining.from_pretrained(None, config=copy.deepcopy(model.config), state_dict=state)
    copies = loaded.pretext.key_encoder.encoders[0].state_dict()
    for name, tensor in loaded.vssl.state_dict().items():
        assert torch.equal(copies[name], tensor), name


# ----------------------------------------------------------------------------------------------
# The model-init hooks (init_vssl_buffers, keep_pytorch_init) on small dummy modules


class _Tables(nn.Module):
    """A non-persistent constant and a persistent counter, both set by the hook."""

    def __init__(self):
        super().__init__()
        self.register_buffer("table", torch.arange(6), persistent=False)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def init_vssl_buffers(self):
        init.copy_(self.table, torch.arange(6))
        init.zeros_(self.count)


class _Holder(nn.Module):
    """A hook on a module with no tensors of its own, setting its child's buffer."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Module()
        self.inner.register_buffer("ids", torch.arange(4) * 10, persistent=False)

    def init_vssl_buffers(self):
        init.copy_(self.inner.ids, torch.arange(4) * 10)


class _PyTorchInitHead(nn.Sequential):
    keep_pytorch_init = True


class _DummyModel(VSSLPreTrainedModel):
    def __init__(self, config: VSSLConfig):
        super().__init__(config)
        self.tables = _Tables()
        self.holder = _Holder()
        self.head = _PyTorchInitHead(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
        self.plain = nn.Linear(64, 64)
        self.post_init()


def _dummy_config() -> VSSLConfig:
    return VSSLConfig(**PRETRAINING)


def _pytorch_init(linear: nn.Linear) -> bool:
    """PyTorch's default Linear init: U(+-1/sqrt(fan_in)) weight and bias (our scheme: N(0, 0.01), zero bias)."""
    bound = 1 / linear.in_features**0.5
    return (
        bool(linear.weight.abs().max() <= bound)
        and float(linear.weight.std()) > 0.3 * bound
        and bool(linear.bias.abs().max() <= bound)
        and bool((linear.bias != 0).any())
    )


def test_init_hooks_on_construction():
    model = _DummyModel(_dummy_config())
    assert torch.equal(model.tables.table, torch.arange(6))
    assert _pytorch_init(model.head[0]) and _pytorch_init(model.head[2])
    assert not _pytorch_init(model.plain) and torch.equal(model.plain.bias, torch.zeros(64))
    assert float(model.plain.weight.std()) < 2 * model.config.initializer_range


def test_init_hooks_after_from_pretrained(tmp_path):
    model = _DummyModel(_dummy_config())
    with torch.no_grad():
        model.tables.count.fill_(5)
    model.save_pretrained(tmp_path)
    loaded = _DummyModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.tables.table, torch.arange(6))  # not in the checkpoint: set by the hook
    assert torch.equal(loaded.holder.inner.ids, torch.arange(4) * 10)
    assert int(loaded.tables.count) == 5  # in the checkpoint: the hook leaves it as loaded
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name  # reset_parameters spared loaded weights


def test_init_hooks_fill_missing_tensors():
    model = _DummyModel(_dummy_config())
    state = {"head.0.weight": model.head[0].weight.detach().clone()}  # the bias of head.0 is missing
    loaded = _DummyModel.from_pretrained(None, config=_dummy_config(), state_dict=state)
    assert torch.equal(loaded.tables.table, torch.arange(6)) and int(loaded.tables.count) == 0
    assert torch.equal(loaded.holder.inner.ids, torch.arange(4) * 10)
    assert torch.equal(loaded.head[0].weight, state["head.0.weight"])
    assert _pytorch_init(loaded.head[0]) and _pytorch_init(loaded.head[2])
    assert torch.equal(loaded.plain.bias, torch.zeros(64))


def test_init_hooks_from_the_meta_device():
    model = _meta_built(_DummyModel, _dummy_config())
    model.init_weights()
    assert _non_finite(model) == []
    assert torch.equal(model.tables.table, torch.arange(6)) and int(model.tables.count) == 0
    assert torch.equal(model.holder.inner.ids, torch.arange(4) * 10)
    assert _pytorch_init(model.head[2])


# ----------------------------------------------------------------------------------------------
# The video processor's sampling contract (BaseVideoProcessor.sample_frames)


def test_processor_sampling_contract():
    processor = VSSLVideoProcessor.for_clip(num_frames=8, image_size=32)
    metadata = VideoMetadata(total_num_frames=60, fps=30.0)
    # Default and num_frames: the central clip of the study's evaluation protocol.
    np.testing.assert_array_equal(processor.sample_frames(metadata), np.arange(26, 34))
    np.testing.assert_array_equal(processor.sample_frames(metadata, num_frames=4), np.arange(28, 32))
    # fps: that many frames per second of video, uniformly over the whole video (2 s at 2 fps: 4 frames).
    np.testing.assert_array_equal(processor.sample_frames(metadata, fps=2), [0, 15, 30, 45])
    with pytest.raises(ValueError, match="mutually exclusive"):
        processor.sample_frames(metadata, num_frames=4, fps=2)
    with pytest.raises(ValueError, match="no original FPS"):
        processor.sample_frames(VideoMetadata(total_num_frames=60), fps=2)
    # The same through a call, and an fps set on the processor itself.
    video = np.random.default_rng(0).integers(0, 256, (60, 40, 48, 3), dtype=np.uint8)
    assert processor(video, video_metadata=metadata, return_tensors="pt")["pixel_values"].shape == (
        1,
        8,
        3,
        32,
        32,
    )
    assert processor(video, video_metadata=metadata, fps=3, return_tensors="pt")["pixel_values"].shape[1] == 6
    with pytest.raises(ValueError, match="mutually exclusive"):
        processor(video, video_metadata=metadata, fps=3, num_frames=8, return_tensors="pt")
    at_one_fps = VSSLVideoProcessor.for_clip(num_frames=8, image_size=32)
    at_one_fps = VSSLVideoProcessor(fps=1, size=at_one_fps.size, crop_size=at_one_fps.crop_size)
    np.testing.assert_array_equal(at_one_fps.sample_frames(metadata), [0, 30])
    assert at_one_fps(video, video_metadata=metadata, return_tensors="pt")["pixel_values"].shape == (
        1,
        2,
        3,
        32,
        32,
    )
