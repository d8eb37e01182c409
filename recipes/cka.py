"""CKA maps between the stages of video models (the study's representation analysis).

    python recipes/cka.py --model_name_or_path outputs/rspnet-r21d-synthetic            # within one model
    python recipes/cka.py --model_name_or_path A --compare_to B                          # A's stages vs B's
    python recipes/cka.py --checkpoints outputs/rspnet-r21d-synthetic                    # across a run's checkpoints
    python recipes/cka.py --model_name_or_path A --dataset ucf101 --dataset_root data/UCF101 --num_videos 1000

Writes ``cka.json`` + ``cka.png`` (checkpoint sweeps: ``cka_<checkpoint>.json/png`` and
``cka_checkpoints.json/png``) into ``--output_dir`` (default: model A's folder). All flags:
``python recipes/cka.py --help``.
"""

from hf_vssl.analysis.cka_recipe import CKAArguments, run_cka
from hf_vssl.training.cli import run_recipe


def _run(args: CKAArguments):
    output_dir = run_cka(args)
    print(f"CKA maps written to {output_dir}")
    return output_dir


def main(argv=None):
    return run_recipe(_run, CKAArguments, argv)


if __name__ == "__main__":
    main()
