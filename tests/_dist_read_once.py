"""Helper for tests/test_streaming.py: one rank of a multi-process streaming run.

Launched as ``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2
tests/_dist_read_once.py OUT_DIR SHARD_DIR [SHARD_DIR ...]`` (two gloo ranks). For every shard
directory and epochs 0 and 1, each rank streams it through ``StreamingClipDataset`` with 2
DataLoader workers and writes the video ids it read to
``OUT_DIR/<shard dir name>.epoch<e>.rank<r>.json``.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main() -> None:
    import torch
    from accelerate import Accelerator

    from hf_vssl.data.clips import UniformClipSampler
    from hf_vssl.data.datasets import collate_clips
    from hf_vssl.data.streaming import StreamingClipDataset, load_video_dataset

    out_dir, shard_dirs = sys.argv[1], sys.argv[2:]
    state = Accelerator()  # as a recipe would; reads ACCELERATE_USE_CPU -> gloo ranks on CPU
    assert state.num_processes == 2, f"expected 2 processes, got {state.num_processes}"
    for shard_dir in shard_dirs:
        stream = StreamingClipDataset(
            load_video_dataset(shard_dir, split="train"),
            UniformClipSampler(num_frames=2),
            seed=7,
            rank=state.process_index,
            world_size=state.num_processes,
        )
        # Deliberately NOT accelerator.prepare(loader): that would shard a second time.
        loader = torch.utils.data.DataLoader(stream, batch_size=2, num_workers=2, collate_fn=collate_clips)
        for epoch in (0, 1):
            stream.set_epoch(epoch)
            ids = [video_id for batch in loader for video_id in batch["video_ids"]]
            name = f"{os.path.basename(shard_dir.rstrip('/'))}.epoch{epoch}.rank{state.process_index}.json"
            with open(os.path.join(out_dir, name), "w") as handle:
                json.dump(ids, handle)
    state.wait_for_everyone()


if __name__ == "__main__":
    main()
