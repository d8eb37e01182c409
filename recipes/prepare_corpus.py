"""Prepare a corpus for streaming and the Hub: an official layout on disk -> re-encoded WebDataset
shards with nested class-balanced subsets, optional noisy variants and a dataset card
(docs/preparing_corpora.md).

    python recipes/prepare_corpus.py --dataset ucf101 --dataset_root data/UCF101 --output_dir shards/ucf101 \\
        --noise gaussian shot --severities 1 3 5 --push_to_hub --hub_dataset_id org/ucf101-shards
    python recipes/prepare_corpus.py --dataset kinetics400 --dataset_root data/kinetics400 \\
        --output_dir shards/k400 --subset_sizes 10000 30000 50000 100000

The same flags as ``python -m hf_vssl.data.prepare``, plus ``--push_to_hub``. Run the same
command again after an interruption: finished shards are kept. All flags: ``--help``.
"""

from dataclasses import dataclass, field

from hf_vssl.data.prepare import PrepareArguments, prepare_corpus
from hf_vssl.hub import publish_dataset
from hf_vssl.training.cli import run_recipe

PROGRAM = "python recipes/prepare_corpus.py"


@dataclass
class PrepareCorpusArguments(PrepareArguments):
    push_to_hub: bool = field(
        default=False, metadata={"help": "upload the prepared folder to --hub_dataset_id"}
    )
    hub_dataset_id: str | None = field(default=None, metadata={"help": "the dataset repo, org/name"})
    hub_private: bool = field(default=False, metadata={"help": "create the repo private"})

    def __post_init__(self):
        super().__post_init__()
        if self.push_to_hub and not self.hub_dataset_id:
            raise ValueError("--push_to_hub needs --hub_dataset_id org/name")


def _run(args: PrepareCorpusArguments):
    report = prepare_corpus(args, PROGRAM, hub_dataset_id=args.hub_dataset_id)
    print(report.summary())
    if args.push_to_hub:
        url = publish_dataset(report.output_dir, args.hub_dataset_id, private=args.hub_private)
        print(f"pushed to {url}")
    return report


def main(argv=None):
    return run_recipe(_run, PrepareCorpusArguments, argv)


if __name__ == "__main__":
    main()
