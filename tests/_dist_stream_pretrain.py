"""One rank of a streamed pretraining for tests/test_stream_training.py, recording what it trains on.

    [accelerate launch ...] tests/_dist_stream_pretrain.py RECORD_DIR [pretraining flags ...]

Runs the pretraining recipe (``run_pretraining``) with the given flags and writes
``RECORD_DIR/rank<r>.json``: the video ids of every micro-batch this rank trained on, in order
(recorded in the step function, i.e. after the recipe's loader, its DataLoader workers and its
split by rank).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from accelerate import PartialState

from hf_vssl.training import pretraining
from hf_vssl.training.arguments import parse_args


def main() -> None:
    record_dir, flags = Path(sys.argv[1]), sys.argv[2:]
    batches: list[list[str]] = []
    step = pretraining._pretext_step

    def recording_step(model, batch, generator):
        batches.append(list(batch["video_ids"]))
        return step(model, batch, generator)

    pretraining._pretext_step = recording_step
    pretraining.run_pretraining(parse_args(pretraining.PretrainingArguments, flags))
    record_dir.mkdir(parents=True, exist_ok=True)
    (record_dir / f"rank{PartialState().process_index}.json").write_text(json.dumps(batches))


if __name__ == "__main__":
    main()
