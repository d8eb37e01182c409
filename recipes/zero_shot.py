"""Zero-shot video classification with a foundation model (X-CLIP, CLIP, SigLIP) under the study's protocol.

    python recipes/zero_shot.py --model_name_or_path microsoft/xclip-base-patch32 --dataset ucf101 \
        --dataset_root data/UCF101
    python recipes/zero_shot.py --model_name_or_path openai/clip-vit-base-patch32 --dataset hmdb51 \
        --dataset_root data/HMDB51 --prompt_ensemble
    python recipes/zero_shot.py --model_name_or_path path/to/model --prompt_templates "a video of {}." "{}"

Writes metrics.json (clip/video top-1/top-5, mode zero_shot), predictions.json, zero_shot_args.yaml
and a card (README.md) into a new --output_dir. Robustness and CKA of the same model:
``recipes/robustness.py`` / ``recipes/cka.py`` with the same --model_name_or_path; see
docs/foundation_models.md. All flags: ``python recipes/zero_shot.py --help``.
"""

from accelerate import PartialState

from hf_vssl.foundation.run import ZeroShotArguments, run_zero_shot
from hf_vssl.training.arguments import parse_args


def main(argv=None):
    try:
        return run_zero_shot(parse_args(ZeroShotArguments, argv))
    finally:
        PartialState().destroy_process_group()


if __name__ == "__main__":
    main()
