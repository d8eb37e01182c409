"""CKA maps of hf_vssl models: within one model, between two models, across a run's checkpoints.

The study compares representations stage by stage (Kornblith et al. 2019; Nguyen, Raghu &
Kornblith 2021). This module runs models over a data loader and accumulates one
:class:`~hf_vssl.analysis.cka.MinibatchCKA` per compared pair; the recipe
``recipes/cka.py`` is a thin front end to :func:`run_cka`.

Where the activations come from (:class:`StageGrams`): each backbone stage's Gram matrix is built
inside a forward hook (:class:`~hf_vssl.analysis.capture.LayerGramCapture`), so a stage's
activation is never kept past the point where the network has consumed it. The stage modules are
found once per model: ``model.cka_layer_names`` when the model defines it, otherwise by a probe
forward pass that matches each ``output_hidden_states`` tensor to the backbone module that
returned that very tensor object. The first real batch then checks the hooked Gram matrices
against Gram matrices of the hidden states; a backbone whose stage outputs are not the output of
one module (e.g. Swin's permuted stages) uses the ``hidden_states`` path instead: the Gram
matrices are built right after each forward pass and the activations dropped, batch by batch.

Clip shapes: every model is fed the loader's clip resized (trilinear, :func:`resize_clip`) to the
``num_frames`` x ``image_size`` of its own config when those differ, so models trained on
different clip shapes see the same video content.
"""

from __future__ import annotations

import json
import logging
import re
import weakref
from collections.abc import Iterable, Mapping
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm
from typing_extensions import Self

from hf_vssl.models import VSSLConfig, VSSLModel
from hf_vssl.training.arguments import check_model_reference

from .capture import LayerGramCapture
from .cka import MinibatchCKA, gram_linear, gram_rbf

logger = logging.getLogger(__name__)

__all__ = [
    "CKAArguments",
    "CKAMap",
    "StageGrams",
    "backbone_of",
    "compare_models",
    "find_checkpoints",
    "load_vssl_model",
    "resize_clip",
    "resolve_stage_modules",
    "run_cka",
]


# ----------------------------------------------------------------------------------------------
# Models and their stages


def backbone_of(model: nn.Module) -> VSSLModel:
    """The :class:`VSSLModel` inside ``model`` (itself, or ``.vssl`` of a classifier / pretraining model)."""
    if isinstance(model, VSSLModel):
        return model
    inner = getattr(model, "vssl", None)
    if isinstance(inner, VSSLModel):
        return inner
    raise TypeError(f"expected an hf_vssl model (VSSLModel or a model with .vssl), got {type(model).__name__}")


def resize_clip(pixel_values: torch.Tensor, num_frames: int, image_size: int) -> torch.Tensor:
    """``(B, T, C, H, W)`` clips resampled to ``num_frames`` x ``image_size`` x ``image_size`` (trilinear).

    Returns the input unchanged when it already has that shape.
    """
    if pixel_values.ndim != 5:
        raise ValueError(f"pixel_values must be (B, T, C, H, W), got shape {tuple(pixel_values.shape)}")
    _, frames, _, height, width = pixel_values.shape
    if (frames, height, width) == (num_frames, image_size, image_size):
        return pixel_values
    clip = pixel_values.permute(0, 2, 1, 3, 4).float()  # (B, C, T, H, W) for 3D interpolation
    clip = nn.functional.interpolate(clip, size=(num_frames, image_size, image_size), mode="trilinear",
                                     align_corners=False)
    return clip.permute(0, 2, 1, 3, 4).to(pixel_values.dtype)


def fit_to_config(pixel_values: torch.Tensor, config: VSSLConfig) -> torch.Tensor:
    """``pixel_values`` resized to the clip shape ``config`` was built for (see :func:`resize_clip`)."""
    return resize_clip(pixel_values, config.num_frames, config.image_size)


def resolve_stage_modules(model: VSSLModel, pixel_values: torch.Tensor) -> list[str] | None:
    """Dotted names (relative to ``model``) of the modules whose outputs are the backbone stages.

    ``model.cka_layer_names`` wins when defined. Otherwise one forward pass with
    ``output_hidden_states=True`` records a weak reference to every backbone module's output;
    stage ``i`` maps to the shallowest module whose output *is* ``hidden_states[i]`` (weak
    references never match a freed intermediate, so a reused memory address cannot fool it).
    Returns ``None`` when some stage is not the output of any module.
    """
    names = getattr(model, "cka_layer_names", None)
    if names is not None:
        return list(names() if callable(names) else names)
    refs: dict[str, weakref.ref] = {}

    def record(name):
        def hook(module, inputs, output):
            tensor = output if isinstance(output, torch.Tensor) else next(
                (v for v in (output if isinstance(output, (tuple, list)) else ()) if isinstance(v, torch.Tensor)),
                None)
            if tensor is not None:
                refs[name] = weakref.ref(tensor)

        return hook

    handles = [module.register_forward_hook(record(f"backbone.{name}"))
               for name, module in model.backbone.named_modules() if name]
    try:
        with torch.no_grad():
            stages = model(pixel_values, output_hidden_states=True, return_dict=True).hidden_states
    finally:
        for handle in handles:
            handle.remove()
    resolved = []
    for stage in stages:
        matches = [name for name, ref in refs.items() if ref() is stage]
        if not matches:
            return None
        resolved.append(min(matches, key=lambda name: name.count(".")))  # shallowest: the stage container
    return resolved


class StageGrams:
    """Per-batch Gram matrices of every backbone stage of one model (see the module docstring).

    Use as a context manager; ``grams(pixel_values)`` runs the model (under ``torch.no_grad``)
    on the clip resized to the model's own clip shape and returns one ``n x n`` float64 Gram per
    stage. :attr:`method` says which path is used: ``"hooks"`` or ``"hidden_states"``.
    """

    def __init__(self, model: nn.Module, *, kernel: str = "linear", threshold: float = 0.5,
                 use_hooks: bool = True, autocast_dtype: torch.dtype | None = None):
        self.model = backbone_of(model)
        self.layer_names = list(self.model.backbone.stage_names)
        if kernel not in ("linear", "rbf"):
            raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")
        self.kernel, self.threshold, self.use_hooks = kernel, threshold, use_hooks
        self._to_gram = gram_linear if kernel == "linear" else (lambda x: gram_rbf(x, threshold))
        self.autocast_dtype = autocast_dtype
        self.method: str | None = None
        self._capture: LayerGramCapture | None = None
        self._stack = ExitStack()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()
        self._capture = None

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def _from_hidden_states(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        stages = self.model(pixel_values, output_hidden_states=True, return_dict=True).hidden_states
        return [self._to_gram(stage.reshape(stage.shape[0], -1)) for stage in stages]

    @torch.no_grad()
    def grams(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """The Gram matrices of this batch, one per stage, in :attr:`layer_names` order."""
        pixel_values = fit_to_config(pixel_values, self.model.config)
        with self._autocast(pixel_values.device):
            if self.method is None:
                return self._first_batch(pixel_values)
            if self.method == "hidden_states":
                return self._from_hidden_states(pixel_values)
            self.model(pixel_values, return_dict=True)
            return self._capture.grams()

    def _first_batch(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        names = resolve_stage_modules(self.model, pixel_values) if self.use_hooks else None
        if names is not None and len(names) == len(self.layer_names):
            capture = LayerGramCapture(self.model, names, kernel=self.kernel, threshold=self.threshold)
            self._stack.enter_context(capture)
            reference = self._from_hidden_states(pixel_values)  # the same pass fills the hooks
            hooked = capture.grams()
            if all(torch.allclose(a, b, rtol=1e-7, atol=1e-9 * float(b.abs().max()) + 1e-30)
                   for a, b in zip(hooked, reference)):
                self._capture, self.method = capture, "hooks"
                return hooked
            self._stack.close()
            logger.info("stage hooks of %s disagree with its hidden states; using hidden states",
                        type(self.model.backbone).__name__)
        self.method = "hidden_states"
        return self._from_hidden_states(pixel_values)


# ----------------------------------------------------------------------------------------------
# Maps


@dataclass
class CKAMap:
    """One CKA map: rows = stages of model A, columns = stages of model B."""

    matrix: torch.Tensor
    layers_a: list[str]
    layers_b: list[str]
    model_a: str
    model_b: str
    num_samples: int = 0
    method: str = "hooks"
    kernel: str = "linear"

    def to_dict(self) -> dict:
        """The ``cka.json`` contract: model names, layer names and the matrix (plus how it was made)."""
        return {"model_a": self.model_a, "model_b": self.model_b, "layers_a": list(self.layers_a),
                "layers_b": list(self.layers_b), "matrix": self.matrix.double().cpu().tolist(),
                "kernel": self.kernel, "num_samples": self.num_samples, "method": self.method}

    def save(self, output_dir: str | Path, stem: str = "cka", title: str | None = None) -> tuple[Path, Path]:
        """Write ``<stem>.json`` and the heatmap ``<stem>.png`` into ``output_dir``; return both paths."""
        from .plots import plot_cka_heatmap  # matplotlib only when a figure is drawn

        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        json_path = output_dir / f"{stem}.json"
        json_path.write_text(json.dumps(self.to_dict(), indent=2))
        if title is None:
            title = (f"CKA within {self.model_a}" if self.model_a == self.model_b
                     else f"CKA: {self.model_a} (y) vs {self.model_b} (x)")
        # plot_cka_heatmap puts the rows (model A's stages) on the y axis, depth growing upwards.
        png_path = plot_cka_heatmap(self.matrix, self.layers_b, self.layers_a, title, output_dir / f"{stem}.png")
        return json_path, png_path

    @property
    def diagonal(self) -> list[float]:
        """CKA of stage ``i`` of A with stage ``i`` of B (same architecture only)."""
        return torch.diagonal(self.matrix).tolist()


def compare_models(
    model_a: nn.Module,
    loader: Iterable[Mapping],
    others: Mapping[str, nn.Module] | None = None,
    *,
    name_a: str = "model_a",
    device: torch.device | str | None = None,
    kernel: str = "linear",
    threshold: float = 0.5,
    use_hooks: bool = True,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> dict[str, CKAMap]:
    """CKA maps of ``model_a`` with itself (``others`` empty) or with each of ``others``, in one data pass.

    ``loader`` yields batches with ``pixel_values`` ``(B, T, C, H, W)`` (e.g. ``collate_clips``).
    Every model runs in eval mode under ``torch.no_grad``. Returns ``{name: CKAMap}``; the
    within-model map is keyed ``name_a``. Model A's Gram matrices are built once per batch and
    shared by every comparison, so sweeping many checkpoints costs one pass over the data.
    """
    others = dict(others or {})
    device = torch.device(device) if device is not None else torch.device("cpu")
    models = {name_a: model_a, **others}
    for model in models.values():
        model.eval().to(device)
    captures = {name: StageGrams(model, kernel=kernel, threshold=threshold, use_hooks=use_hooks,
                                 autocast_dtype=autocast_dtype) for name, model in models.items()}
    layers_a = captures[name_a].layer_names
    if others:
        accumulators = {name: MinibatchCKA(len(layers_a), len(captures[name].layer_names), device=device,
                                           kernel=kernel) for name in others}
    else:
        accumulators = {name_a: MinibatchCKA(len(layers_a), device=device, kernel=kernel)}
    with ExitStack() as stack:
        for capture in captures.values():
            stack.enter_context(capture)
        total = len(loader) if hasattr(loader, "__len__") else None
        for batch in tqdm(loader, total=total, desc=f"cka {name_a}", disable=not progress, dynamic_ncols=True):
            pixel_values = batch["pixel_values"].to(device, non_blocking=True)
            if pixel_values.shape[0] <= 3:
                continue  # the unbiased HSIC needs n > 3; a short last batch carries no estimate
            grams_a = captures[name_a].grams(pixel_values)
            if not others:
                accumulators[name_a].update_grams(grams_a)
            for name in others:
                accumulators[name].update_grams(grams_a, captures[name].grams(pixel_values))
    maps = {}
    for name, accumulator in accumulators.items():
        if accumulator.num_batches == 0:
            raise ValueError("no batch of more than 3 clips reached the CKA estimator; use more videos or a larger "
                             "--per_device_eval_batch_size")
        other = captures[name]
        maps[name] = CKAMap(accumulator.compute().cpu(), layers_a, other.layer_names, name_a, name,
                            num_samples=accumulator.num_samples,
                            method=captures[name_a].method if name == name_a else
                            f"{captures[name_a].method}/{other.method}", kernel=kernel)
    return maps


# ----------------------------------------------------------------------------------------------
# Loading models and checkpoints

_STATE_PREFIXES = ("", "vssl.", "student.", "student.vssl.", "module.vssl.")


def _config_for_checkpoint(path: Path) -> VSSLConfig:
    """The config of an Accelerate checkpoint folder: its run's ``config.json``, else ``training_args.yaml``."""
    for folder in (path, path.parent, path.parent.parent):
        if (folder / "config.json").is_file():
            config = VSSLConfig.from_pretrained(folder)
            break
    else:
        for folder in (path.parent, path.parent.parent):
            args_file = folder / "training_args.yaml"
            if args_file.is_file():
                values = yaml.safe_load(args_file.read_text()) or {}
                keys = ("backbone", "width_multiplier", "num_frames", "image_size")
                config = VSSLConfig(**{k: values[k] for k in keys if values.get(k) is not None})
                break
        else:
            raise FileNotFoundError(f"{path}: no config.json here or in the run folder above it, and no "
                                    "training_args.yaml to rebuild the architecture from")
    config.pretext_task, config.pretext_config = None, None
    return config


def load_vssl_model(path_or_id: str | Path) -> VSSLModel:
    """The :class:`VSSLModel` of a saved model folder, a Hub id, or an Accelerate checkpoint folder.

    - a folder (or Hub id) with ``config.json``: ``VSSLModel.from_pretrained`` (pretraining,
      classification and distillation checkpoints all carry the backbone);
    - a ``checkpoints/checkpoint-N`` folder of a training run (``model.safetensors`` without a
      config): the architecture from the run's ``config.json`` (or ``training_args.yaml``), the
      backbone weights from the checkpoint.
    """
    path = Path(path_or_id)
    weights = path / "model.safetensors"
    if path.is_dir() and not (path / "config.json").is_file():
        if not weights.is_file():
            raise FileNotFoundError(f"{path}: neither config.json nor model.safetensors found")
        model = VSSLModel(_config_for_checkpoint(path))
        state = load_file(str(weights))
        wanted = model.state_dict().keys()
        for prefix in _STATE_PREFIXES:
            if all(prefix + key in state for key in wanted):
                model.load_state_dict({key: state[prefix + key] for key in wanted})
                return model.eval()
        raise ValueError(f"{weights}: no backbone weights matching the {model.config.backbone!r} architecture of "
                         f"its run (tried key prefixes {[p or '<none>' for p in _STATE_PREFIXES]})")
    from transformers.utils import logging as hf_logging

    # The pretext head of a pretraining checkpoint is expected to stay unused: no load report.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = VSSLModel.from_pretrained(str(path_or_id))
    finally:
        hf_logging.set_verbosity(verbosity)
    return model.eval()


def _step_key(path: Path) -> tuple[int, str]:
    numbers = re.findall(r"\d+", path.name)
    return (int(numbers[-1]) if numbers else -1, path.name)


def find_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoints of one run, oldest first.

    ``directory`` is a run folder (its ``checkpoints/checkpoint-N``), that ``checkpoints`` folder
    itself, or a folder of exported model folders (each with ``config.json``), ordered by the
    last number in their names.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"--checkpoints {directory}: not a folder")
    root = directory / "checkpoints" if (directory / "checkpoints").is_dir() else directory
    found = [p for p in root.iterdir() if p.is_dir()
             and ((p / "model.safetensors").is_file() or (p / "config.json").is_file())]
    if not found:
        raise FileNotFoundError(f"--checkpoints {directory}: no checkpoint folders (with model.safetensors or "
                                "config.json) found")
    return sorted(found, key=_step_key)


# ----------------------------------------------------------------------------------------------
# The recipe


@dataclass
class CKAArguments:
    """Settings of ``recipes/cka.py``."""

    config: str | None = field(default=None, metadata={"help": "YAML file of these arguments (CLI flags win)"})
    model_name_or_path: str | None = field(default=None, metadata={
        "help": "model A: a local folder or a Hub id (default with --checkpoints: that run's final model)"})
    compare_to: str | None = field(default=None, metadata={"help": "model B: map A's stages against B's"})
    checkpoints: str | None = field(default=None, metadata={
        "help": "a run folder (or a folder of exports): map A against every checkpoint"})
    output_dir: str | None = field(default=None, metadata={
        "help": "default: A's folder (with --compare_to: A's folder/cka-vs-<B>)"})
    dataset: str = field(default="synthetic", metadata={"help": "ucf101, hmdb51, kinetics400, ssv2, diving48, "
                                                                "videofolder or synthetic"})
    dataset_root: str | None = field(default=None, metadata={"help": "dataset folder (synthetic: built in)"})
    dataset_split: str = field(default="test", metadata={"help": "split of --dataset whose videos are compared"})
    fold: int = field(default=1, metadata={"help": "official fold (UCF101 / HMDB51: 1-3)"})
    label_set: str | None = field(default=None, metadata={"help": "synthetic corpus only: motion or appearance"})
    num_videos: int | None = field(default=256, metadata={"help": "class-balanced subset of this many videos"})
    per_device_eval_batch_size: int = field(default=16, metadata={"help": "clips per CKA minibatch (> 3)"})
    num_frames: int | None = field(default=None, metadata={"help": "default: model A's"})
    image_size: int | None = field(default=None, metadata={"help": "default: model A's"})
    frame_stride: int = field(default=1, metadata={"help": "temporal stride of the clips"})
    kernel: str = field(default="linear", metadata={"help": "linear or rbf"})
    rbf_threshold: float = field(default=0.5, metadata={
        "help": "rbf kernel: bandwidth as this fraction of the median pairwise distance"})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast for the forward passes"})
    device: str | None = field(default=None, metadata={"help": "default: cuda if available, else cpu"})
    dataloader_num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes"})
    seed: int = field(default=0, metadata={"help": "seed of the video subset"})
    debug: bool = field(default=False, metadata={"help": "show the full traceback of an error (also HF_VSSL_DEBUG=1)"})

    def __post_init__(self):
        check_model_reference(self.model_name_or_path, "--model_name_or_path")
        check_model_reference(self.compare_to, "--compare_to")


def _display_name(path_or_id: str) -> str:
    path = Path(path_or_id)
    return path.name if path.exists() else str(path_or_id)


def _build_loader(args: CKAArguments, num_frames: int, image_size: int):
    from hf_vssl.data.clips import UniformClipSampler
    from hf_vssl.data.datasets import VideoClipDataset, collate_clips
    from hf_vssl.data.transforms import build_transform
    from hf_vssl.training.data import load_records

    if args.per_device_eval_batch_size <= 3:
        raise ValueError(f"--per_device_eval_batch_size must be > 3 (the unbiased CKA estimator needs n > 3), "
                         f"got {args.per_device_eval_batch_size}")
    records = load_records(args.dataset, args.dataset_root, args.dataset_split, args.fold,
                           subset_size=args.num_videos, subset_seed=args.seed, label_set=args.label_set)
    dataset = VideoClipDataset(
        records, UniformClipSampler(num_frames, args.frame_stride, mode="center"),
        transform=build_transform("eval", image_size, train=False), seed=args.seed,
    )
    # A last batch of <= 3 clips cannot enter the unbiased estimator: drop it rather than warn.
    drop_last = 0 < len(dataset) % args.per_device_eval_batch_size <= 3
    return torch.utils.data.DataLoader(
        dataset, batch_size=args.per_device_eval_batch_size, shuffle=False, drop_last=drop_last,
        collate_fn=collate_clips, num_workers=args.dataloader_num_workers, pin_memory=torch.cuda.is_available(),
    )


def run_cka(args: CKAArguments) -> Path:
    """Compute and save the CKA map(s) described by ``args``; return the output folder.

    - ``--model_name_or_path A``: A's stages against themselves -> ``cka.json`` + ``cka.png``;
    - ``--compare_to B``: A's stages (rows) against B's (columns) -> ``cka.json`` + ``cka.png``;
    - ``--checkpoints DIR``: A against every checkpoint of the run -> ``cka_<checkpoint>.json/png``
      per checkpoint, plus ``cka_checkpoints.json`` (per-stage diagonal CKA by checkpoint) and
      ``cka_checkpoints.png`` (those curves).
    """
    if args.compare_to and args.checkpoints:
        raise ValueError("pass --compare_to or --checkpoints, not both")
    if args.kernel not in ("linear", "rbf"):
        raise ValueError(f"--kernel must be 'linear' or 'rbf', got {args.kernel!r}")
    model_path = args.model_name_or_path or args.checkpoints
    if model_path is None:
        raise ValueError("--model_name_or_path is required (or --checkpoints, whose run folder is then model A)")
    checkpoints = find_checkpoints(args.checkpoints) if args.checkpoints else []
    if not args.model_name_or_path and not (Path(model_path) / "config.json").is_file():
        raise FileNotFoundError(f"--checkpoints {model_path}: the run has no final model (config.json) yet; pass "
                                "--model_name_or_path (e.g. its newest checkpoint folder) as model A")
    model_a = load_vssl_model(model_path)
    name_a = _display_name(model_path)
    others: dict[str, nn.Module] = {}
    if args.compare_to:
        name_b = _display_name(args.compare_to)
        if name_b == name_a:
            name_b = f"{name_b} (B)"
        others[name_b] = load_vssl_model(args.compare_to)
    for path in checkpoints:
        others[path.name] = load_vssl_model(path)

    local_a = Path(model_path).is_dir()
    if args.output_dir:
        output_dir = Path(args.output_dir)
    else:
        output_dir = Path(model_path) if local_a else Path("outputs") / "cka" / name_a.replace("/", "--")
        if args.compare_to:
            output_dir = output_dir / f"cka-vs-{next(iter(others)).replace('/', '--').replace(' ', '')}"
    loader = _build_loader(args, args.num_frames or model_a.config.num_frames,
                           args.image_size or model_a.config.image_size)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    maps = compare_models(model_a, loader, others, name_a=name_a, device=device, kernel=args.kernel,
                          threshold=args.rbf_threshold,
                          autocast_dtype=torch.bfloat16 if args.bf16 else None)
    if not checkpoints:
        (cka_map,) = maps.values()
        json_path, png_path = cka_map.save(output_dir)
        logger.info("wrote %s and %s", json_path, png_path)
        return output_dir
    summary = {"model_a": name_a, "layers": maps[checkpoints[0].name].layers_a, "checkpoints": []}
    for path in checkpoints:
        cka_map = maps[path.name]
        stem = f"cka_{path.name}"
        cka_map.save(output_dir, stem, title=f"CKA: {name_a} (y) vs {path.name} (x)")
        summary["checkpoints"].append({"name": path.name, "step": _step_key(path)[0], "file": f"{stem}.json",
                                       "diagonal": cka_map.diagonal})
    (output_dir / "cka_checkpoints.json").write_text(json.dumps(summary, indent=2))
    _plot_sweep(summary, output_dir / "cka_checkpoints.png")
    return output_dir


def _plot_sweep(summary: dict, path: Path) -> Path:
    """One line per stage: CKA between the stage at each checkpoint and the same stage of model A."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    steps = [entry["step"] for entry in summary["checkpoints"]]
    for index, layer in enumerate(summary["layers"]):
        axes.plot(steps, [entry["diagonal"][index] for entry in summary["checkpoints"]], marker="o", label=layer)
    axes.set_xlabel("checkpoint step")
    axes.set_ylabel(f"CKA with {summary['model_a']}")
    axes.set_ylim(0, 1.05)
    axes.set_title("Stage similarity across training")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path
