"""Distil several self-supervised teachers into one student (the study's knowledge distillation).

    accelerate launch recipes/distill.py --teachers outputs/rspnet-shufflenet-synthetic outputs/rspnet-r21d-synthetic \
        --backbone shufflenet
    accelerate launch recipes/distill.py --config recipes/configs/distill_two_backbones.yaml \
        --teachers path/to/teacher1 path/to/teacher2      # the study's set-ups; teacher paths are placeholders
    accelerate launch recipes/distill.py --config ... --resume_from_checkpoint latest   # after an interruption

The output folder is a student checkpoint for ``recipes/finetune.py --model_name_or_path``.
All flags: ``python recipes/distill.py --help``.
"""

from hf_vssl.training.cli import run_recipe
from hf_vssl.training.distillation import DistillationArguments, run_distillation


def main(argv=None):
    return run_recipe(run_distillation, DistillationArguments, argv)


if __name__ == "__main__":
    main()
