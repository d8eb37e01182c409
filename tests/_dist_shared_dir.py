"""Run by tests/test_scaling.py as one "machine" of a two-machine run on one host,
``accelerate launch --num_machines 2 --machine_rank R --main_process_ip 127.0.0.1 ...``, or as a
whole one-machine run of two processes.

``argv``: corpus, this machine's ``--output_dir``, report folder. A tiny pretraining step; each
rank R writes ``machine<R>.json`` with ``{"trained": bool, "error": <the refusal or null>}``.
Machines given different output folders stand for machines without a shared filesystem.
"""

import json
import sys
from pathlib import Path

from _tiny_runs import tiny_pretraining
from accelerate import PartialState

from hf_vssl.training.checkpointing import SharedOutputDirError

corpus, output_dir, report_dir = (Path(arg) for arg in sys.argv[1:4])
report = {"trained": False, "error": None}
try:
    tiny_pretraining(output_dir, corpus, "--save_steps", "1", max_steps=1)
    report["trained"] = True
except SharedOutputDirError as error:
    report["error"] = str(error)
state = PartialState()
report.update(rank=state.process_index, num_processes=state.num_processes)
(report_dir / f"machine{state.process_index}.json").write_text(json.dumps(report))
