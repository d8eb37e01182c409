"""Run by tests/test_pretrain_multiprocess.py under `accelerate launch --multi_gpu --num_processes 2`.

Pretrains every task for two steps on two gloo ranks, recording which videos each rank read
(through the recipe's own collate function) and the feature-queue pointers of the saved models.
"""

import json
import sys
from pathlib import Path

from accelerate import PartialState
from safetensors.torch import load_file

from hf_vssl.pretext.registry import list_pretext_tasks
from hf_vssl.training import pretraining
from hf_vssl.training.arguments import parse_args

corpus, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
read: dict[str, list[int]] = {}
collate = pretraining.collate_clips


def recording_collate(samples):
    batch = collate(samples)
    read.setdefault(current, []).extend(batch["index"].tolist())
    return batch


pretraining.collate_clips = recording_collate
report = {"tasks": {}}
for current in list_pretext_tasks():
    args = parse_args(
        pretraining.PretrainingArguments,
        [
            "--pretext_task",
            current,
            "--backbone",
            "r21d",
            "--width_multiplier",
            "0.125",
            "--num_frames",
            "8",
            "--image_size",
            "32",
            "--per_device_train_batch_size",
            "4",
            "--dataloader_num_workers",
            "0",
            "--report_to",
            "none",
            "--max_steps",
            "2",
            "--save_steps",
            "2",
            "--logging_steps",
            "1",
            "--dataset_root",
            str(corpus),
            "--output_dir",
            str(out_dir / current),
            # an explicit queue (the default one would be capped to the 24-video corpus and wrap)
            *(["--pretext_config", '{"queue_size": 64}'] if current in ("tdl", "rspnet") else []),
        ],
    )
    output = pretraining.run_pretraining(args)
    state = PartialState()  # the recipe's Accelerator initialised the shared state (gloo, 2 ranks)
    assert state.num_processes == 2, f"expected 2 processes, got {state.num_processes}"
    state.wait_for_everyone()
    weights = load_file(output / "model.safetensors")
    pointers = {k: int(v) for k, v in weights.items() if k.endswith("pointer")}
    report["tasks"][current] = {"read": read.get(current, []), "pointers": pointers}
report["rank"] = state.process_index
(out_dir / f"rank{state.process_index}.json").write_text(json.dumps(report))
