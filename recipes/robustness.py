"""Robustness to input noise of a finetuned classifier or of a zero-shot foundation model
(docs/study_settings.md#noise).

    python recipes/robustness.py --model_name_or_path outputs/rspnet-r21d-synthetic-finetune-synthetic
    python recipes/robustness.py --model_name_or_path ... --noises gaussian impulse --preset imagenet-c
    python recipes/robustness.py --model_name_or_path ... --noises reversal jumbled --severities 1 3 5
    python recipes/robustness.py --model_name_or_path microsoft/xclip-base-patch32 --dataset ucf101 \
        --dataset_root data/UCF101 --output_dir <a recipes/zero_shot.py run folder>   # zero-shot model

Writes robustness.json / .md / .png into the model's folder (or --output_dir), using the same
evaluation as the finetuning recipe's final test. All flags: ``python recipes/robustness.py --help``.
"""

from hf_vssl.analysis.robustness import RobustnessArguments, run_robustness
from hf_vssl.foundation.card import refresh_zero_shot_card
from hf_vssl.training.cli import run_recipe


def _run(args: RobustnessArguments):
    output_dir = run_robustness(args)
    refresh_zero_shot_card(output_dir)  # a zero-shot run folder's card gains the robustness results
    return output_dir


def main(argv=None):
    return run_recipe(_run, RobustnessArguments, argv)


if __name__ == "__main__":
    main()
