"""Data pipeline throughput: the full clip pipeline against raw torchcodec decoding of the same frames.

Generates short-GOP H.264 videos (128x170, like re-encoded shards), then measures, in one run:

- raw: ``VideoDecoder(path, seek_mode="approximate").get_frames_at(sorted unique indices)`` for
  exactly the frames the pipeline's clip plans read, nothing else (the floor for the pipeline);
- pipeline: ``VideoClipDataset`` (open + validate, plan, union decode, augment with
  ``build_transform("vcop", 112)``) through a ``DataLoader`` with ``collate_clips``;

each with one worker (in process) and with all cores (2 worker processes; the raw baseline
uses a 2-process pool). Then the per-video cost of the real multi-clip plans of RSPNet (query
clip + same-speed key + other-speed key from one start: 3 clips) and CVRL (two clips at a
random, linearly-decreasing distance) against the one-clip ``UniformClipSampler(16)`` plan, all
at stride 1 as the tasks sample by default (decode only, so the number isolates union decoding;
the same with each task's augmentation preset is printed for information), and the per-clip
cost of every ``build_transform`` preset on a 16x3x128x171 clip.

Last, random clip access on 256x340 GOP-250 originals against their ``build_shards`` re-encode
(short side 128, GOP 16).

The streamed path: the same videos written as WebDataset shards (``build_shards``, original
bytes, 8 shards), read with ``load_video_dataset`` + ``StreamingClipDataset`` (device
augmentation's loader part, as above) from the local shard folder and from a dataset repo
published with ``publish_dataset`` to the tests' Hub-compatible server (``tests/_local_hub.py``,
in this process, HTTP on 127.0.0.1), with one worker and with two. Each is compared with raw
decoding of the same frames (a stream draws each video's clip from its key) and with the local
map-style path, and once more on a first read of every video (cached header facts cleared).

Also: the loader part of the device-augmentation path (``build_loader_transform("vcop", 112)``:
uint8 crop with rotation context + uint8 resize, then collate; BatchAugment runs on the training
device) through the same DataLoader; ``BatchAugment`` itself per clip on a (32, 16, 3, L, L)
uint8 batch, on the CPU and on CUDA when available; and the multi-clip costs again on videos
with a long GOP (250, as Kinetics files are distributed).

Prints ``RESULT data_pipeline: <min over worker settings>x of raw decode rate`` with device
augmentation (the loader decodes, crops/resizes in uint8 and collates; target >= 0.8),
``RESULT data_pipeline_loader_augment: <x>x`` with the augmentation in the loader (the
CPU-training path), ``RESULT batch_augment_<device>: <ms> per clip``,
``RESULT two_clip_cost_rspnet[_gop250]: <x>x one-clip cost per video`` and
``RESULT two_clip_cost_cvrl[_gop250]: <x>x one-clip cost per video`` (target < 1.3; each line
also gives the floor: how many more frames the codec must decode for the plan, key frame to last
wanted frame in every GOP touched) and
``RESULT reencode_clip_access: <x>x faster random clip access after re-encode``,
``RESULT data_pipeline_streamed[_http]: <x>x of the map-style path`` (min over worker settings;
target >= 0.8; the line also gives the ratio to raw decode of the same frames) and
``RESULT two_clip_vs_floor_<task>[_gop250]: <x>x the codec's decode floor`` (the measured
multi-clip cost over the one-clip cost, divided by the frames the codec must decode for the plan
over those of one clip; target <= 1.1 at the shards' GOP, 16).

    .venv/bin/python benchmarks/data_pipeline.py [--videos 64] [--frames 96] [--repeats 2] [--augment-only] [--no-stream]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HEIGHT, WIDTH, GOP = 128, 170, 16  # 171 in the study's resize; H.264 4:2:0 needs even sizes
LONG_GOP = 250  # as Kinetics files are distributed
SEED = 0
HUB_TOKEN = "hf_bench"


def make_videos(root: str, count: int, num_frames: int, gop: int = GOP, prefix: str = "v") -> list:
    """Smooth panning textures (natural-video-like compressibility), GOP ``gop``."""
    from hf_vssl.data.records import VideoRecord
    from hf_vssl.data.video_io import encode_video

    generator = torch.Generator().manual_seed(SEED)
    records = []
    for i in range(count):
        coarse = torch.rand(1, 3, HEIGHT // 8, (WIDTH + 2 * num_frames) // 8 + 1, generator=generator)
        texture = F.interpolate(coarse, scale_factor=8, mode="bicubic", align_corners=False)[0]
        texture = (texture.clamp(0, 1) * 255).to(torch.uint8)
        frames = torch.stack([texture[:, :HEIGHT, 2 * t : 2 * t + WIDTH] for t in range(num_frames)])
        path = os.path.join(root, f"{prefix}{i:03d}.mp4")
        encode_video(frames, path, gop_size=gop)
        records.append(
            VideoRecord(path=path, label=i % 10, label_name=f"c{i % 10}", video_id=f"{prefix}{i:03d}")
        )
    return records


def planned_indices(records, sampler, num_frames) -> list[np.ndarray]:
    """The frames VideoClipDataset will read for each index at epoch 0 (same generators)."""
    out = []
    for i in range(len(records)):
        plan = sampler.plan(num_frames, np.random.default_rng([SEED, 0, i]))
        out.append(np.unique(np.concatenate(plan.indices)))
    return out


def _raw_one(task) -> int:
    from torchcodec.decoders import VideoDecoder

    path, indices = task
    decoder = VideoDecoder(path, seek_mode="approximate", num_ffmpeg_threads=1)
    return decoder.get_frames_at(indices.tolist()).data.shape[0]


def _pool_init() -> None:
    torch.set_num_threads(1)


def time_raw(records, indices, workers: int) -> float:
    tasks = [(r.path, ix) for r, ix in zip(records, indices)]
    start = time.perf_counter()
    if workers == 1:
        for task in tasks:
            _raw_one(task)
    else:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_pool_init) as pool:
            pool.map(_raw_one, tasks, chunksize=4)
    return time.perf_counter() - start


def time_pipeline(records, sampler, transform, workers: int, batch_size: int = 8) -> float:
    from hf_vssl.data.datasets import VideoClipDataset, collate_clips

    dataset = VideoClipDataset(records, sampler, transform=transform, seed=SEED)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=0 if workers == 1 else workers,
        collate_fn=collate_clips,
    )
    start = time.perf_counter()
    clips = sum(batch["pixel_values"].shape[0] for batch in loader)
    assert clips == len(records)
    return time.perf_counter() - start


def stream_indices(records, sampler, num_frames) -> list[np.ndarray]:
    """The frames ``StreamingClipDataset`` reads for each record at epoch 0 (its per-key generators)."""
    from hf_vssl.data.datasets import stable_key_seed

    out = []
    for record in records:
        plan = sampler.plan(num_frames, np.random.default_rng([SEED, 0, stable_key_seed(record.video_id)]))
        out.append(np.unique(np.concatenate(plan.indices)))
    return out


def start_local_hub():
    """The tests' Hub-compatible server on 127.0.0.1, with ``HF_ENDPOINT`` pointing at it.

    Called before anything imports ``huggingface_hub`` (it reads the endpoint once, at import).
    """
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _local_hub import LocalHub

    hub = LocalHub(tokens={HUB_TOKEN: "bench"}).start()
    os.environ["HF_ENDPOINT"] = hub.url
    os.environ["HF_HUB_OFFLINE"] = "0"  # this process talks to 127.0.0.1 only
    return hub


def publish_shards(root: str, records, hub) -> dict[str, str]:
    """``records`` as 8 shards (original bytes) in ``root``, also published to ``hub``;
    returns ``{"local": folder, "http": repo id}``."""
    from hf_vssl.data.shards import build_shards
    from hf_vssl.hub.publish import publish_dataset

    folder = os.path.join(root, "stream_shards")
    build_shards(records, folder, shard_size=max(1, len(records) // 8), split="train", num_workers=1)
    publish_dataset(folder, "bench/video-shards", token=HUB_TOKEN, endpoint=hub.url)
    return {"local": folder, "http": "bench/video-shards"}


def time_streamed(base: str, sampler, transform, workers: int, expected: int, batch_size: int = 8) -> float:
    """One epoch of ``StreamingClipDataset`` over the shards at ``base`` through a ``DataLoader``."""
    from hf_vssl.data.datasets import collate_clips
    from hf_vssl.data.streaming import StreamingClipDataset, load_video_dataset

    dataset = StreamingClipDataset(
        load_video_dataset(base, split="train"),
        sampler,
        transform=transform,
        seed=SEED,
        rank=0,
        world_size=1,
        shuffle=False,
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=0 if workers == 1 else workers, collate_fn=collate_clips
    )
    start = time.perf_counter()
    clips = sum(batch["pixel_values"].shape[0] for batch in loader)
    assert clips == expected, f"streamed {clips} clips, expected {expected}"
    return time.perf_counter() - start


def cold(run):
    """``run`` after forgetting every video's cached header facts (a first read of each video)."""
    from hf_vssl.data import decoding

    def timed() -> float:
        decoding._cached_facts.cache_clear()
        decoding._bytes_facts.clear()
        return run()

    return timed


def get_transform():
    try:
        from hf_vssl.data.transforms import build_transform

        return build_transform("vcop", 112), "build_transform('vcop', 112)"
    except ImportError:  # transforms not available: resize + random crop, like the preset's geometry

        def resize_crop(clip):
            clip = F.interpolate(clip.float(), size=(128, 170), mode="bilinear", antialias=True)
            top, left = torch.randint(0, 17, ()).item(), torch.randint(0, 59, ()).item()
            return clip[:, :, top : top + 112, left : left + 112] / 255

        return resize_crop, "resize+crop fallback"


def task_samplers(num_frames: int = 16) -> dict:
    """The real clip samplers of the multi-clip tasks (stride 1, the tasks' default)."""
    from hf_vssl.pretext.registry import build_pretext_task

    tasks = {name: build_pretext_task(name, num_features=64) for name in ("rspnet", "cvrl")}
    return {name: task.sampler(num_frames=num_frames) for name, task in tasks.items()}


def describe_plans(sampler, num_video_frames: int, count: int) -> str:
    """Clips per plan and frames read per video (all clips, and their union), on average."""
    plans = [sampler.plan(num_video_frames, np.random.default_rng([SEED, 0, i])) for i in range(count)]
    clips = np.mean([p.num_clips for p in plans])
    total = np.mean([sum(len(ix) for ix in p.indices) for p in plans])
    union = np.mean([len(np.unique(np.concatenate(p.indices))) for p in plans])
    span = np.mean([np.ptp(np.concatenate(p.indices)) + 1 for p in plans])
    return f"{clips:.0f} clips, {total:.0f} frames, {union:.1f} unique, spanning {span:.1f} frames"


def frames_to_decode(indices: np.ndarray, gop: int) -> int:
    """Frames an inter-frame decoder must decode to output ``indices``: in every GOP touched, from
    its key frame up to the last frame wanted there (P frames depend on all earlier ones)."""
    unique = np.unique(indices)
    gops = unique // gop
    last = unique[np.r_[gops[1:] != gops[:-1], True]]  # the last wanted frame of each GOP touched
    return int((last % gop + 1).sum())


def decode_floor(sampler, num_video_frames: int, count: int, gop: int) -> float:
    """Mean :func:`frames_to_decode` per video of ``sampler``'s plans (same generators as the timing)."""
    plans = [sampler.plan(num_video_frames, np.random.default_rng([SEED, 0, i])) for i in range(count)]
    return float(np.mean([frames_to_decode(np.concatenate(p.indices), gop) for p in plans]))


def time_transforms(repeats: int) -> dict[str, float]:
    """ms per clip of every preset on a 16x3x128x171 uint8 clip (median, interleaved)."""
    from hf_vssl.data.transforms import TRANSFORM_PRESETS, build_transform

    generator = torch.Generator().manual_seed(SEED)
    clip = torch.randint(0, 256, (16, 3, 128, 171), dtype=torch.uint8, generator=generator)
    transforms = {name: build_transform(name, 112) for name in TRANSFORM_PRESETS}
    times: dict[str, list[float]] = {name: [] for name in transforms}
    torch.manual_seed(SEED)
    for _ in range(repeats):
        for name, transform in transforms.items():
            start = time.perf_counter()
            transform(clip)
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * float(np.median(t)) for name, t in times.items()}


def time_separate_clips(records, sampler, num_video_frames: int) -> float:
    """Naive baseline: open and decode each clip of the plan on its own."""
    from hf_vssl.data.clips import ClipPlan, decode_plan

    start = time.perf_counter()
    for i, record in enumerate(records):
        plan = sampler.plan(num_video_frames, np.random.default_rng([SEED, 0, i]))
        for clip in plan.indices:
            decode_plan(record.path, ClipPlan([clip]))
    return time.perf_counter() - start


def time_batch_augment(device: str, repeats: int, batch: int = 32) -> dict[str, float]:
    """ms per clip of ``BatchAugment`` on a collated (batch, 16, 3, L, L) uint8 batch (L: the
    preset's loader size; 112 without rotation), best of ``repeats``."""
    from hf_vssl.data.batch_augment import build_batch_augment

    out = {}
    generator = torch.Generator().manual_seed(SEED)
    for preset in ("vcop", "cvrl"):
        augment = build_batch_augment(preset, 112)
        size = augment.input_size
        video = torch.randint(0, 256, (batch, 16, 3, size, size), dtype=torch.uint8, generator=generator).to(
            device
        )
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        augment(video)  # warm-up (allocator, constants)
        sync()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            augment(video)
            sync()
            best = min(best, time.perf_counter() - start)
        out[f"{preset} ({batch}, 16, 3, {size}, {size})"] = 1000 * best / batch
    return out


def reencode_speedup(root: str, count: int, repeats: int) -> tuple[float, float, float]:
    """Random clip cost on camera-like originals (256x340, GOP 250) vs ``build_shards`` re-encodes.

    Returns ``(original ms, re-encoded ms, build seconds)`` per clip / for the build.
    """
    from hf_vssl.data.clips import UniformClipSampler
    from hf_vssl.data.decoding import open_video
    from hf_vssl.data.records import VideoRecord
    from hf_vssl.data.shards import ReencodeOptions, build_shards, iter_shard_samples
    from hf_vssl.data.video_io import encode_video

    generator = torch.Generator().manual_seed(SEED + 1)
    records, num_frames = [], 150
    for i in range(count):
        coarse = torch.rand(1, 3, 256 // 8, (340 + 2 * num_frames) // 8 + 1, generator=generator)
        texture = (F.interpolate(coarse, scale_factor=8, mode="bicubic").clamp(0, 1)[0] * 255).to(torch.uint8)
        frames = torch.stack([texture[:, :256, 2 * t : 2 * t + 340] for t in range(num_frames)])
        path = os.path.join(root, f"orig{i:03d}.mp4")
        encode_video(frames, path, gop_size=250)
        records.append(VideoRecord(path=path, label=0, label_name="c", video_id=f"orig{i:03d}"))
    started = time.perf_counter()
    build_shards(records, os.path.join(root, "shards"), reencode=ReencodeOptions(), num_workers=1)
    build_seconds = time.perf_counter() - started
    reencoded = [data for data, _ in iter_shard_samples(os.path.join(root, "shards"))]
    sampler = UniformClipSampler(16, stride=2)
    plans = [sampler.plan(num_frames, np.random.default_rng([SEED, 1, i])).indices[0] for i in range(count)]
    best = {"original": float("inf"), "reencoded": float("inf")}
    for _ in range(repeats):
        for name, sources in (("original", [r.path for r in records]), ("reencoded", reencoded)):
            start = time.perf_counter()
            for source, indices in zip(sources, plans):
                open_video(source).get_frames_at(indices.tolist())
            best[name] = min(best[name], time.perf_counter() - start)
    return 1000 * best["original"] / count, 1000 * best["reencoded"] / count, build_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5, help="best of N interleaved timings per setting")
    parser.add_argument("--reencode-videos", type=int, default=12)
    parser.add_argument(
        "--augment-only",
        action="store_true",
        help="only time BatchAugment (CPU, and CUDA when available); needs no torchcodec",
    )
    parser.add_argument("--no-stream", action="store_true", help="skip the streamed path (shards, HTTP)")
    args = parser.parse_args()
    hub = None if args.augment_only or args.no_stream else start_local_hub()
    torch.set_num_threads(1)  # one core per worker, as in DataLoader workers

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.augment_only:
        for device in devices:
            for name, value in time_batch_augment(device, max(3, args.repeats)).items():
                print(f"RESULT batch_augment_{device}: {value:.3f} ms per clip, BatchAugment('{name}')")
        return

    from hf_vssl.data.clips import UniformClipSampler
    from hf_vssl.data.transforms import build_loader_transform

    transform, transform_name = get_transform()
    loader_transform = build_loader_transform("vcop", 112)
    one_clip = UniformClipSampler(16, stride=2)
    one_clip_s1 = UniformClipSampler(16)
    multi = task_samplers(16)
    with tempfile.TemporaryDirectory(prefix="hf_vssl_bench_") as root:
        started = time.perf_counter()
        records = make_videos(root, args.videos, args.frames)
        long_gop = make_videos(root, args.videos, args.frames, gop=LONG_GOP, prefix="g")
        print(
            f"generated 2 x {args.videos} videos of {args.frames} frames {HEIGHT}x{WIDTH}, GOP {GOP} and "
            f"{LONG_GOP} in {time.perf_counter() - started:.1f}s; transform: {transform_name}"
        )
        for name, sampler in {"one clip (UniformClipSampler(16))": one_clip_s1, **multi}.items():
            print(f"plan {name}: {describe_plans(sampler, args.frames, args.videos)}")
        indices = planned_indices(records, one_clip, args.frames)
        streams = publish_shards(root, records, hub) if hub is not None else {}
        try:
            from hf_vssl.data.transforms import build_transform

            task_transforms = {name: build_transform(name, 112) for name in multi}
        except ImportError:
            task_transforms = dict.fromkeys(multi)
        settings = {
            "raw_1": lambda: time_raw(records, indices, 1),
            "full_1": lambda: time_pipeline(records, one_clip, transform, 1),
            "dev_1": lambda: time_pipeline(records, one_clip, loader_transform, 1),
            "raw_2": lambda: time_raw(records, indices, 2),
            "full_2": lambda: time_pipeline(records, one_clip, transform, 2),
            "dev_2": lambda: time_pipeline(records, one_clip, loader_transform, 2),
            "noaug_1": lambda: time_pipeline(records, one_clip, None, 1),
            "one_s1": lambda: time_pipeline(records, one_clip_s1, None, 1),
            "one_s1_g250": lambda: time_pipeline(long_gop, one_clip_s1, None, 1),
        }
        if streams:
            same_frames = stream_indices(records, one_clip, args.frames)
            for w in (1, 2):
                settings[f"rawstream_{w}"] = lambda w=w: time_raw(records, same_frames, w)
                for where, base in streams.items():
                    settings[f"stream_{where}_{w}"] = lambda w=w, base=base: time_streamed(
                        base, one_clip, loader_transform, w, len(records)
                    )
            settings["dev_cold_1"] = cold(settings["dev_1"])
            settings["stream_local_cold_1"] = cold(settings["stream_local_1"])
        for name, sampler in multi.items():
            settings[name] = lambda sampler=sampler: time_pipeline(records, sampler, None, 1)
            settings[f"{name}_separate"] = lambda sampler=sampler: time_separate_clips(
                records, sampler, args.frames
            )
            settings[f"{name}_g250"] = lambda sampler=sampler: time_pipeline(long_gop, sampler, None, 1)
            settings[f"{name}_g250_separate"] = lambda sampler=sampler: time_separate_clips(
                long_gop, sampler, args.frames
            )
            settings[f"{name}_aug"] = lambda name=name, sampler=sampler: time_pipeline(
                records, sampler, task_transforms[name], 1
            )
            settings[f"one_s1_{name}_aug"] = lambda name=name: time_pipeline(
                records, one_clip_s1, task_transforms[name], 1
            )
        # Interleave repeats so that load from other processes hits every setting alike.
        best = {name: float("inf") for name in settings}
        for _ in range(args.repeats):
            for name, run in settings.items():
                best[name] = min(best[name], run())
        try:
            transform_ms = time_transforms(max(10, 4 * args.repeats))
        except ImportError:
            transform_ms = {}
        augment_ms = {device: time_batch_augment(device, max(3, args.repeats)) for device in devices}
        original_ms, reencoded_ms, build_s = reencode_speedup(root, args.reencode_videos, args.repeats)

    n = args.videos
    ratios = {w: best[f"raw_{w}"] / best[f"full_{w}"] for w in (1, 2)}
    dev_ratios = {w: best[f"raw_{w}"] / best[f"dev_{w}"] for w in (1, 2)}
    for w in (1, 2):
        print(
            f"workers={w}: raw decode {n / best[f'raw_{w}']:7.1f} clips/s | full pipeline, augmentation in the "
            f"loader {n / best[f'full_{w}']:7.1f} clips/s (ratio {ratios[w]:.2f}) | loader part only "
            f"(device augmentation) {n / best[f'dev_{w}']:7.1f} clips/s (ratio {dev_ratios[w]:.2f})"
        )
    stream_ratios = {}
    for where in ("local", "http") if hub is not None else ():
        for w in (1, 2):
            key = f"stream_{where}_{w}"
            stream_ratios[where, w] = (best[f"dev_{w}"] / best[key], best[f"rawstream_{w}"] / best[key])
            print(
                f"workers={w}: streamed ({where} shards) {n / best[key]:7.1f} clips/s | ratio "
                f"{stream_ratios[where, w][0]:.2f} to the map-style loader part, {stream_ratios[where, w][1]:.2f} "
                f"to raw decode of the same frames ({n / best[f'rawstream_{w}']:7.1f} clips/s)"
            )
    if stream_ratios:
        print(
            f"workers=1, first read of every video (header facts not cached): streamed (local shards) "
            f"{n / best['stream_local_cold_1']:7.1f} clips/s, map-style {n / best['dev_cold_1']:7.1f} clips/s (ratio "
            f"{best['dev_cold_1'] / best['stream_local_cold_1']:.2f})"
        )
    print(
        f"workers=1 without augmentation: {n / best['noaug_1']:7.1f} clips/s | ratio "
        f"{best['raw_1'] / best['noaug_1']:.2f} (augmentation in the loader costs "
        f"{1000 * (best['full_1'] - best['noaug_1']) / n:.2f} ms/clip, its loader part "
        f"{1000 * (best['dev_1'] - best['noaug_1']) / n:.2f} ms/clip)"
    )
    ms = {name: 1000 * best[name] / n for name in best}
    for suffix, gop in (("", GOP), ("_g250", LONG_GOP)):
        print(
            f"GOP {gop}: per video, decode only: one clip (UniformClipSampler(16)) {ms['one_s1' + suffix]:.2f} ms"
        )
        for name in multi:
            key = name + suffix
            print(
                f"GOP {gop}: per video, decode only: {name} {ms[key]:.2f} ms "
                f"({ms[key] / ms['one_s1' + suffix]:.2f}x one clip); each clip opened and decoded alone "
                f"{ms[key + '_separate']:.2f} ms ({ms[key + '_separate'] / ms['one_s1' + suffix]:.2f}x)"
            )
    for name in multi:
        print(
            f"per video with the '{name}' preset: {name} {ms[f'{name}_aug']:.2f} ms, one clip "
            f"{ms[f'one_s1_{name}_aug']:.2f} ms ({ms[f'{name}_aug'] / ms[f'one_s1_{name}_aug']:.2f}x)"
        )
    if transform_ms:
        print(
            "per-clip transform (loader augmentation) per 16x3x128x171 clip (median ms): "
            + ", ".join(f"{name} {value:.2f}" for name, value in transform_ms.items())
        )
    for device, values in augment_ms.items():
        print(
            f"BatchAugment on {device}, 1 thread, best ms per clip: "
            + ", ".join(f"{name} {value:.3f}" for name, value in values.items())
        )
    print(
        f"random 16x2 clip, {args.reencode_videos} videos 256x340 GOP 250: {original_ms:.2f} ms; after build_shards "
        f"re-encode (short side 128, GOP 16; {build_s:.1f}s to build): {reencoded_ms:.2f} ms"
    )
    print(
        f"RESULT data_pipeline: {min(dev_ratios.values()):.2f}x of raw decode rate (device augmentation: loader "
        f"does decode+uint8 crop/resize+collate; 1 worker {dev_ratios[1]:.2f}, 2 workers {dev_ratios[2]:.2f})"
    )
    print(
        f"RESULT data_pipeline_loader_augment: {min(ratios.values()):.2f}x of raw decode rate (augmentation in "
        f"the loader, the CPU-training path; 1 worker {ratios[1]:.2f}, 2 workers {ratios[2]:.2f})"
    )
    for device, values in augment_ms.items():
        for name, value in values.items():
            print(f"RESULT batch_augment_{device}: {value:.3f} ms per clip, BatchAugment('{name}')")
    for suffix, gop in (("", GOP), ("_gop250", LONG_GOP)):
        key_suffix = "_g250" if suffix else ""
        one_floor = decode_floor(one_clip_s1, args.frames, args.videos, gop)
        for name in multi:
            clips = describe_plans(multi[name], args.frames, args.videos).split(",")[0]
            key = name + key_suffix
            floor = decode_floor(multi[name], args.frames, args.videos, gop) / one_floor
            cost = ms[key] / ms["one_s1" + key_suffix]
            print(
                f"RESULT two_clip_cost_{name}{suffix}: {cost:.2f}x one-clip cost per "
                f"video (GOP {gop}, {clips} per plan, union decode; "
                f"{ms[key + '_separate'] / ms['one_s1' + key_suffix]:.2f}x when decoded separately; the codec must "
                f"decode {floor:.2f}x the frames of one clip)"
            )
            print(
                f"RESULT two_clip_vs_floor_{name}{suffix}: {cost / floor:.2f}x the codec's decode floor (GOP {gop})"
            )
    print(
        f"RESULT reencode_clip_access: {original_ms / reencoded_ms:.2f}x faster random clip access after re-encode"
    )
    for where, label in (("local", ""), ("http", "_http")):
        if (where, 1) in stream_ratios:
            to_map = {w: stream_ratios[where, w][0] for w in (1, 2)}
            to_raw = {w: stream_ratios[where, w][1] for w in (1, 2)}
            print(
                f"RESULT data_pipeline_streamed{label}: {min(to_map.values()):.2f}x of the map-style path ({where} "
                f"shards; 1 worker {to_map[1]:.2f}, 2 workers {to_map[2]:.2f}); {min(to_raw.values()):.2f}x of raw "
                f"decode of the same frames (1 worker {to_raw[1]:.2f}, 2 workers {to_raw[2]:.2f})"
            )
    if stream_ratios:
        print(
            f"RESULT data_pipeline_streamed_cold: {best['dev_cold_1'] / best['stream_local_cold_1']:.2f}x of the "
            "map-style path, 1 worker, every video read for the first time (no cached header facts)"
        )
    if hub is not None:
        hub.stop()


if __name__ == "__main__":
    main()
