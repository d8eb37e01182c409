"""Downstream evaluation of a (self-supervised) backbone: finetune, linear probe or retrieval.

    accelerate launch recipes/finetune.py --model_name_or_path outputs/rspnet-r21d-synthetic
    accelerate launch recipes/finetune.py --model_name_or_path outputs/rspnet-r21d-synthetic --mode linear_probe
    accelerate launch recipes/finetune.py --model_name_or_path outputs/rspnet-r21d-synthetic --mode retrieval
    accelerate launch recipes/finetune.py --init random --backbone r21d          # the from-scratch baseline
    accelerate launch recipes/finetune.py --config recipes/configs/finetune_ucf101.yaml

Writes the classifier checkpoint, metrics.json (clip/video top-1/top-5, optional retrieval) and
log_history.jsonl into --output_dir. All flags: ``python recipes/finetune.py --help``.
"""

from hf_vssl.training.cli import run_recipe
from hf_vssl.training.finetuning import FinetuningArguments, run_finetuning


def main(argv=None):
    return run_recipe(run_finetuning, FinetuningArguments, argv)


if __name__ == "__main__":
    main()
