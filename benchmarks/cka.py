"""Minibatch CKA map: hf_vssl's vectorised path against a per-layer-pair reference.

Workload: two 12-stage networks (different seeds) compared on 1024 inputs fed in minibatches of
128, giving a 12 x 12 minibatch-CKA map (unbiased HSIC accumulated over batches, Nguyen et al.
2021). Stage widths range from 128 to 2048 features, the size of pooled-to-mid video CNN stages.

- reference: the usual recipe of public CKA libraries (e.g. torch_cka): forward hooks keep every
  stage's activation for the batch, then a double loop over layer pairs rebuilds both Gram
  matrices per pair and evaluates Song et al.'s unbiased HSIC with ``n x n`` matrix products.
- hf_vssl: ``LayerGramCapture`` turns each activation into its Gram matrix inside the hook (the
  activation is freed right away) and ``MinibatchCKA.update_grams`` scores all 144 pairs with one
  matrix product of the stacked, U-centred Gram matrices.

Both run in float64 and must agree to 1e-4. Each method runs in a fresh subprocess so that its
memory peak is its own:

- CUDA: ``torch.cuda.max_memory_allocated`` minus the memory allocated before the run.
- CPU: the growth of the process's peak resident set (``VmHWM``, reset through
  ``/proc/self/clear_refs`` right before the run) over the resident set at that moment. The
  worker sets ``MALLOC_MMAP_THRESHOLD_`` so that tensors above 64 KiB are mmapped and handed back
  to the kernel when freed; glibc's default would otherwise keep freed chunks resident and the
  RSS would reflect the allocator's history instead of the live tensors.

Usage: ``python benchmarks/cka.py [--device cuda]``. Prints the two maps' max difference, each
method's time and peak, and the ``RESULT`` lines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_vssl.analysis.capture import LayerGramCapture
from hf_vssl.analysis.cka import MinibatchCKA

WIDTHS = (128, 192, 256, 384, 512, 768, 1024, 1024, 1536, 2048, 2048, 1024)
NUM_INPUTS, BATCH_SIZE, INPUT_DIM, RANK = 1024, 128, 64, 32


class StageNet(nn.Module):
    """A chain of stages ``Linear(d_prev, RANK) -> LayerNorm -> Linear(RANK, d) -> ReLU``.

    The rank-32 bottleneck keeps the forward pass cheap next to the CKA work being measured,
    while each stage still emits a realistically wide activation that the next stage consumes;
    the LayerNorm keeps the signal from fading with depth (else deep stages are near-constant).
    """

    def __init__(self, widths=WIDTHS, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        stages, previous = [], INPUT_DIM
        for width in widths:
            stages.append(
                nn.Sequential(
                    nn.Linear(previous, RANK), nn.LayerNorm(RANK), nn.Linear(RANK, width), nn.ReLU()
                )
            )
            previous = width
        self.stages = nn.ModuleList(stages)
        self.cka_layer_names = [f"stages.{i}" for i in range(len(widths))]

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


def _reference_hsic(gram_k: torch.Tensor, gram_l: torch.Tensor) -> torch.Tensor:
    """Song et al.'s unbiased HSIC of zero-diagonal Grams, as public implementations write it."""
    n = gram_k.shape[0]
    ones = torch.ones(n, 1, dtype=gram_k.dtype, device=gram_k.device)
    kl = gram_k @ gram_l
    value = torch.trace(kl) + (ones.T @ gram_k @ ones) * (ones.T @ gram_l @ ones) / ((n - 1) * (n - 2))
    value = value - 2.0 / (n - 2) * (ones.T @ kl @ ones)
    return value.reshape(()) / (n * (n - 3))


def run_reference(model_a, model_b, batches) -> torch.Tensor:
    """Per-pair loop: store activations via hooks, rebuild both Grams for every layer pair."""
    stored = {"a": {}, "b": {}}
    handles = []
    for key, model in (("a", model_a), ("b", model_b)):
        for name in model.cka_layer_names:
            module = model.get_submodule(name)
            handles.append(
                module.register_forward_hook(
                    lambda m, i, out, key=key, name=name: stored[key].__setitem__(name, out.detach())
                )
            )
    la, lb = len(model_a.cka_layer_names), len(model_b.cka_layer_names)
    device = batches[0].device
    hsic_xy, hsic_xx, hsic_yy = (torch.zeros(la, lb, dtype=torch.float64, device=device) for _ in range(3))
    for batch in batches:
        model_a(batch)
        model_b(batch)
        for i, feat_a in enumerate(stored["a"].values()):
            for j, feat_b in enumerate(stored["b"].values()):
                x = feat_a.flatten(1).double()
                y = feat_b.flatten(1).double()
                gram_k = (x @ x.T).fill_diagonal_(0)
                gram_l = (y @ y.T).fill_diagonal_(0)
                hsic_xy[i, j] += _reference_hsic(gram_k, gram_l)
                hsic_xx[i, j] += _reference_hsic(gram_k, gram_k)
                hsic_yy[i, j] += _reference_hsic(gram_l, gram_l)
    for handle in handles:
        handle.remove()
    return hsic_xy / torch.sqrt(hsic_xx * hsic_yy)


def run_hf_vssl(model_a, model_b, batches) -> torch.Tensor:
    """Grams inside the hooks, one stacked product per batch for all layer pairs."""
    cka = MinibatchCKA(len(model_a.cka_layer_names), len(model_b.cka_layer_names), device=batches[0].device)
    with LayerGramCapture(model_a) as capture_a, LayerGramCapture(model_b) as capture_b:
        for batch in batches:
            model_a(batch)
            model_b(batch)
            cka.update_grams(capture_a.grams(), capture_b.grams())
    return cka.compute()


METHODS = {"reference": run_reference, "hf_vssl": run_hf_vssl}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(method: str, device: str, out_path: str) -> None:
    """Run one method once in this (fresh) process; write its map and its time/peak as JSON."""
    device = torch.device(device)
    model_a, model_b = StageNet(seed=0).to(device).eval(), StageNet(seed=1).to(device).eval()
    inputs = torch.randn(NUM_INPUTS, INPUT_DIM, generator=torch.Generator().manual_seed(2)).to(device)
    batches = list(inputs.split(BATCH_SIZE))
    fn = METHODS[method]
    with torch.no_grad():
        fn(model_a, model_b, [inputs[:16]])  # warm-up: library initialisation, kernel selection
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
            base = _status_kib("VmRSS") * 1024
        start = time.perf_counter()
        cka_map = fn(model_a, model_b, batches)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated() - base
        else:
            peak = _status_kib("VmHWM") * 1024 - base
    torch.save(cka_map.cpu(), out_path)
    print(json.dumps({"method": method, "seconds": seconds, "peak_bytes": peak}))


def _spawn(method: str, device: str, out_path: str) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    command = [sys.executable, __file__, "--worker", method, "--device", device, "--out", out_path]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{method} worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--worker", choices=sorted(METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.device, args.out)
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")

    print(f"device={args.device} inputs={NUM_INPUTS} batch={BATCH_SIZE} layers=12x12 widths={WIDTHS}")
    with tempfile.TemporaryDirectory() as tmp:
        stats, maps = {}, {}
        for method in ("reference", "hf_vssl"):
            path = str(Path(tmp) / f"{method}.pt")
            stats[method] = _spawn(method, args.device, path)
            maps[method] = torch.load(path)
            print(
                f"{method:>9}: {stats[method]['seconds']:.3f} s, "
                f"peak +{stats[method]['peak_bytes'] / 2**20:.1f} MiB"
            )
    diff = float((maps["reference"] - maps["hf_vssl"]).abs().max())
    print(f"max |reference - hf_vssl| = {diff:.2e}")
    if not diff < 1e-4:
        raise SystemExit(f"maps disagree: max abs difference {diff:.3e} >= 1e-4")
    speed = stats["reference"]["seconds"] / stats["hf_vssl"]["seconds"]
    memory = stats["reference"]["peak_bytes"] / max(stats["hf_vssl"]["peak_bytes"], 1)
    print(f"RESULT cka_speed: {speed:.1f}x faster than per-pair reference")
    print(f"RESULT cka_memory: {memory:.1f}x lower peak memory than per-pair reference")


if __name__ == "__main__":
    main()
