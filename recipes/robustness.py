"""Robustness of a finetuned classifier to input noise (the study's noise kinds and severities).

    python recipes/robustness.py --model_name_or_path outputs/rspnet-r21d-synthetic-finetune-synthetic
    python recipes/robustness.py --model_name_or_path ... --noises gaussian impulse --preset imagenet-c
    python recipes/robustness.py --model_name_or_path ... --noises reversal jumbled --severities 1 3 5

Writes robustness.json / .md / .png into the model's folder (or --output_dir), using the same
evaluation as the finetuning recipe's final test. All flags: ``python recipes/robustness.py --help``.
"""

from hf_vssl.analysis.robustness import RobustnessArguments, run_robustness
from hf_vssl.training.cli import run_recipe


def main(argv=None):
    return run_recipe(run_robustness, RobustnessArguments, argv)


if __name__ == "__main__":
    main()
