"""Helper for tests/test_eval_wiring.py: one rank of a two-process evaluation.

Launched as ``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2
tests/_dist_evaluate.py OUT_FILE MODEL_DIR DATASET_ROOT NUM_VIDEOS`` (two gloo ranks): evaluates the
classifier at MODEL_DIR on the first NUM_VIDEOS test videos of the UCF101-layout corpus (or, when
DATASET_ROOT is a shard folder, on its whole streamed test split; NUM_VIDEOS unused) and, on rank 0,
writes the number of videos scored, the skipped ones, the video ids and the video scores as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from accelerate import Accelerator

    from hf_vssl.data.eval_data import load_eval_videos
    from hf_vssl.data.loading import load_records
    from hf_vssl.evaluation import build_eval_dataset, evaluate_classifier
    from hf_vssl.models import VSSLForVideoClassification

    out_file, model_dir, root, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    accelerator = Accelerator()
    assert accelerator.num_processes == 2, f"expected 2 processes, got {accelerator.num_processes}"
    if os.path.isfile(os.path.join(root, "manifest.json")):
        records = load_eval_videos(root, split="test")[0]
    else:
        records = load_records("ucf101", root, "test")[:count]
    model = VSSLForVideoClassification.from_pretrained(model_dir).eval()
    dataset = build_eval_dataset(records, 8, 32, num_clips=1, max_bad_fraction=0.5)
    result = evaluate_classifier(model, dataset, batch_size=2, accelerator=accelerator)
    one = None
    if not isinstance(records, list):  # a stream of one video: one rank reads nothing
        single = dataclasses.replace(records, limit=1, num_videos=1)
        one = evaluate_classifier(
            model, build_eval_dataset(single, 8, 32, num_clips=1), accelerator=accelerator
        )
    if accelerator.is_main_process:
        with open(out_file, "w") as handle:
            json.dump(
                {
                    "one_video": None if one is None else one.video_ids,
                    "num_videos": result.num_videos,
                    "skipped": result.skipped_videos,
                    "video_ids": result.video_ids,
                    "scores": result.video_scores.tolist(),
                },
                handle,
            )
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
