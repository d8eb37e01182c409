"""The Hub side of hf_vssl: model cards, reports, publishing and repo naming.

- :func:`write_model_card` / :func:`build_model_card`: a ``huggingface_hub.ModelCard`` with a
  ``model-index`` of every result the recipes measured, from the reports in a checkpoint folder;
- :func:`assemble_reports`: copy metrics / robustness / CKA / run files into the folder, then
  write the card;
- :func:`publish` / :func:`publish_dataset`: one-commit uploads with clear errors
  (:class:`HubPublishError`) that never modify the local folder on failure; only what belongs
  to the model goes up (:func:`model_files`), with local paths redacted
  (:func:`redact_local_paths`);
- ``python -m hf_vssl.hub.space --repo_id org/name`` (:mod:`hf_vssl.hub.space`, not imported
  here so that ``-m`` runs it cleanly): the Gradio Space (``spaces/``) with hf_vssl vendored;
- :func:`repo_name`: ``{task}-{backbone}-{dataset}-{subset}``, e.g. ``rspnet-r21d-k400-50k``;
  :func:`hub_dataset_id`: the Hub dataset a built-in dataset name stands for, if any.

Loading by id needs nothing from here: ``import hf_vssl`` then
``AutoModel.from_pretrained("org/rspnet-r21d-k400-50k")`` (cached; works with
``HF_HUB_OFFLINE=1`` after the first download).
"""

from hf_vssl.hub.cards import assemble_reports, build_model_card, eval_results, write_model_card
from hf_vssl.hub.naming import hub_dataset_id, repo_name
from hf_vssl.hub.publish import (
    DEFAULT_IGNORE_PATTERNS,
    HubPublishError,
    model_files,
    publish,
    publish_dataset,
)
from hf_vssl.hub.reports import place_reports, read_provenance, read_reports, redact_local_paths

__all__ = [
    "DEFAULT_IGNORE_PATTERNS",
    "HubPublishError",
    "assemble_reports",
    "build_model_card",
    "eval_results",
    "hub_dataset_id",
    "model_files",
    "place_reports",
    "publish",
    "publish_dataset",
    "read_provenance",
    "read_reports",
    "redact_local_paths",
    "repo_name",
    "write_model_card",
]
