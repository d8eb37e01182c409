"""Export a foundation model's vision tower (X-CLIP, CLIP, SigLIP) as an hf_vssl backbone checkpoint.

    python recipes/export_vision_tower.py --model_name_or_path openai/clip-vit-base-patch32 \
        --output_dir outputs/clip-vit-base-patch32-vision --num_frames 8
    accelerate launch recipes/finetune.py --model_name_or_path outputs/clip-vit-base-patch32-vision \
        --mode linear_probe --dataset ucf101 --dataset_root data/UCF101

The folder (config.json + weights + video processor) goes wherever a self-supervised backbone
goes: ``recipes/finetune.py`` (finetune, linear probe, retrieval) and ``recipes/cka.py``.
"""

import argparse

from hf_vssl.foundation.vision import export_vision_backbone


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name_or_path", required=True, help="X-CLIP, CLIP or SigLIP Hub id or folder")
    parser.add_argument("--output_dir", required=True, help="folder of the exported backbone")
    parser.add_argument(
        "--num_frames",
        type=int,
        default=None,
        help="frames per clip (X-CLIP: fixed by the model; image models: default 8)",
    )
    args = parser.parse_args(argv)
    output_dir = export_vision_backbone(args.model_name_or_path, args.output_dir, num_frames=args.num_frames)
    print(f"exported the vision tower of {args.model_name_or_path} to {output_dir}")
    return output_dir


if __name__ == "__main__":
    main()
