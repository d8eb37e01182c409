"""Pretrain a backbone with a pretext task.

    accelerate launch recipes/pretrain.py                       # RSPNet, 1/4-width R21D, synthetic corpus
    accelerate launch recipes/pretrain.py --pretext_task vcop --backbone r3d --max_steps 200
    accelerate launch recipes/pretrain.py --config recipes/configs/rspnet_r21d_k400.yaml
    accelerate launch recipes/pretrain.py --resume_from_checkpoint latest   # after an interruption

All flags: ``python recipes/pretrain.py --help``.
"""

from hf_vssl.training.cli import run_recipe
from hf_vssl.training.pretraining import PretrainingArguments, run_pretraining


def main(argv=None):
    return run_recipe(run_pretraining, PretrainingArguments, argv)


if __name__ == "__main__":
    main()
