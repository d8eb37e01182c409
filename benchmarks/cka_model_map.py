"""Time of a layer x layer CKA map of a real backbone, against plain inference of the same clips.

The map hooks the backbone's stages (Gram matrices built inside the forward hooks), accumulates
unbiased HSIC for every layer pair with ``MinibatchCKA`` and normalises at the end. The baseline
is the same forward passes without hooks, in the same run, so the ratio is the cost CKA adds:

    RESULT cka_model_map_<backbone>: <ratio>x of plain inference time

Study size on a GPU: ``--device cuda --backbone r21d --clips 1024 --frames 16 --size 112``.
The CPU default is small (r21d at 1/4 width, 8x56x56, 128 clips).
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch

from hf_vssl import VSSLConfig, VSSLModel
from hf_vssl.analysis.capture import LayerGramCapture
from hf_vssl.analysis.cka import MinibatchCKA


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="r21d")
    parser.add_argument("--width", type=float, default=None)
    parser.add_argument("--clips", type=int, default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--bf16", action="store_true", default=True)
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    width = args.width or (1.0 if gpu else 0.25)
    clips, frames, size = (
        args.clips or (1024 if gpu else 128),
        args.frames or (16 if gpu else 8),
        args.size or (112 if gpu else 56),
    )

    model = (
        VSSLModel(
            VSSLConfig(backbone=args.backbone, width_multiplier=width, num_frames=frames, image_size=size)
        )
        .to(device)
        .eval()
    )
    if gpu:
        torch.backends.cudnn.benchmark = True
        model.to(memory_format=torch.channels_last_3d)
    layers = ["backbone.stem"] + [f"backbone.{name}" for name in model.backbone.stage_names]
    layers = [name for name in layers if name in dict(model.named_modules())]
    batches = [torch.randn(args.batch, frames, 3, size, size, device=device) for _ in range(2)]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else nullcontext()
    steps = clips // args.batch

    def plain() -> float:
        synchronize(device)
        start = time.perf_counter()
        with torch.no_grad(), autocast:
            for i in range(steps):
                model(batches[i % 2])
        synchronize(device)
        return time.perf_counter() - start

    def mapped() -> tuple[float, torch.Tensor]:
        cka = MinibatchCKA(len(layers), device=device)
        synchronize(device)
        start = time.perf_counter()
        with torch.no_grad(), autocast, LayerGramCapture(model, layers) as capture:
            for i in range(steps):
                model(batches[i % 2])
                grams = capture.grams()
                cka.update_grams(grams, grams)
        result = cka.compute()
        synchronize(device)
        return time.perf_counter() - start, result

    plain(), mapped()  # warm-up: cuDNN autotune, allocator
    plain_s = min(plain() for _ in range(2))
    map_runs = [mapped() for _ in range(2)]
    map_s, matrix = min(map_runs, key=lambda r: r[0])
    print(
        f"device={device} backbone={args.backbone} width={width} clips={clips} clip={frames}x{size}x{size} "
        f"batch={args.batch} layers={layers}"
    )
    print(f"plain inference {plain_s:.2f} s, CKA map {map_s:.2f} s ({clips / map_s:.0f} clips/s)")
    print("diagonal:", [round(float(v), 4) for v in matrix.diagonal()])
    print(
        f"RESULT cka_model_map_{args.backbone}: {map_s / plain_s:.2f}x of plain inference time "
        f"({map_s:.2f} s for {len(layers)}x{len(layers)} layers over {clips} clips)"
    )


if __name__ == "__main__":
    main()
